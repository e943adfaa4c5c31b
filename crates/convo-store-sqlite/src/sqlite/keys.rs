//! API keys (stored as SHA-256 hashes), the JWT signing secret, and per-request access checks.

use super::Db;
use convo_core::tz::Zone;
use convo_core::{ApiKeyInfo, Denied, Millis, NewApiKey, Refusal, StoreError, TenantCtx};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension, params};

/// Raw keys look like `cvk_<64 hex digits>`: 256 random bits, so a fast hash is enough.
const KEY_PREFIX: &str = "cvk_";

pub(crate) fn hash_key(raw: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, raw.as_bytes())
        .as_ref()
        .to_vec()
}

pub(crate) fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| StoreError::broken("the system random source failed"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn access(
    conn: &Connection,
    key_id: i64,
    subdomain: &str,
    location_id: i64,
) -> Result<Result<TenantCtx, Denied>, StoreError> {
    let mut stmt = conn.prepare_cached(ACCESS_SQL).db()?;
    let row = stmt
        .query_row(params![key_id, subdomain, location_id], |r| {
            Ok((
                r.get::<_, Option<i64>>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .optional()
        .db()?;
    let Some((None, institution, location, tz)) = row else {
        return Ok(Err(Denied::Revoked));
    };
    let Some(institution) = institution else {
        return Ok(Err(Denied::Forbidden {
            subdomain: subdomain.to_string(),
        }));
    };
    let (Some(location), Some(tz)) = (location, tz) else {
        return Ok(Err(Denied::NoLocation { location_id }));
    };
    let zone = Zone::get(&tz)
        .ok_or_else(|| StoreError::broken(format!("location {location} has unknown tz")))?;
    Ok(Ok(TenantCtx::resolved(institution, location, zone)))
}

pub(crate) fn key_is_live(conn: &mut Connection, key_id: i64) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = ?1 AND revoked_at IS NULL)",
    )
    .db()?
    .query_row([key_id], |r| r.get(0))
    .db()
}

/// One statement decides the key, the institution it may use and the location.
pub(crate) const ACCESS_SQL: &str = "
SELECT k.revoked_at, i.id, l.id, l.tz
FROM api_keys k
LEFT JOIN institutions i
       ON i.subdomain = ?2 COLLATE NOCASE
      AND EXISTS (SELECT 1 FROM api_key_institutions ki
                  WHERE ki.key_id = k.id AND ki.institution_id = i.id)
LEFT JOIN locations l ON l.id = ?3 AND l.institution_id = i.id
WHERE k.id = ?1";

pub(crate) fn authenticate(conn: &mut Connection, hash: &[u8]) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT id FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL")
        .db()?
        .query_row([hash], |r| r.get(0))
        .optional()
        .db()
}

pub(crate) fn jwt_secret(conn: &mut Connection) -> Result<Vec<u8>, StoreError> {
    let fresh = random_hex(32)?;
    conn.execute(
        "INSERT OR IGNORE INTO settings (key, value) VALUES ('jwt_secret', ?1)",
        [&fresh],
    )
    .db()?;
    let secret: String = conn
        .query_row(
            "SELECT value FROM settings WHERE key = 'jwt_secret'",
            [],
            |r| r.get(0),
        )
        .db()?;
    Ok(secret.into_bytes())
}

pub(crate) fn create(
    conn: &mut Connection,
    subdomains: &[String],
) -> Result<NewApiKey, StoreError> {
    if subdomains.is_empty() {
        return Err(Refusal::NoSubdomains.into());
    }
    // Immediate: a deferred transaction's insert finds the snapshot of its check stale once
    // another process has committed meanwhile, and SQLite fails it at once ("database is
    // locked") instead of waiting for the lock.
    let tx = super::immediate(conn)?;
    let mut institutions = Vec::new();
    for sub in subdomains {
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM institutions WHERE subdomain = ?1 COLLATE NOCASE",
                [sub],
                |r| r.get(0),
            )
            .optional()
            .db()?;
        match id {
            Some(id) => institutions.push(id),
            None => {
                return Err(Refusal::UnknownSubdomain(sub.clone()).into());
            }
        }
    }
    let raw = format!("{KEY_PREFIX}{}", random_hex(32)?);
    tx.execute(
        "INSERT INTO api_keys (key_hash, created_at) VALUES (?1, ?2)",
        params![hash_key(&raw), Millis::now().0],
    )
    .db()?;
    let id = tx.last_insert_rowid();
    for inst in institutions {
        tx.execute(
            "INSERT OR IGNORE INTO api_key_institutions (key_id, institution_id) VALUES (?1, ?2)",
            params![id, inst],
        )
        .db()?;
    }
    tx.commit().db()?;
    Ok(NewApiKey { id, raw })
}

pub(crate) fn list(conn: &mut Connection) -> Result<Vec<ApiKeyInfo>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT k.id, k.created_at, k.revoked_at,
                    (SELECT json_group_array(i.subdomain) FROM api_key_institutions ki
                     JOIN institutions i ON i.id = ki.institution_id WHERE ki.key_id = k.id)
             FROM api_keys k ORDER BY k.id",
        )
        .db()?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .db()?;
    let mut out = Vec::new();
    for row in rows {
        let (id, created_at, revoked_at, subs) = row.db()?;
        let subdomains: Vec<String> = serde_json::from_str(&subs)
            .map_err(|e| StoreError::broken(format!("api key subdomains: {e}")))?;
        out.push(ApiKeyInfo {
            id,
            subdomains,
            created_at: Millis(created_at),
            revoked_at: revoked_at.map(Millis),
        });
    }
    Ok(out)
}

pub(crate) fn revoke(conn: &mut Connection, key_id: i64) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
            params![key_id, Millis::now().0],
        )
        .db()?;
    Ok(n > 0)
}
