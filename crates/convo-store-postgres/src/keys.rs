//! API keys (stored as SHA-256 hashes), the JWT signing secret, and per-request access checks.

use crate::Db;
use convo_core::tz::Zone;
use convo_core::{ApiKeyInfo, Denied, Millis, NewApiKey, Refusal, StoreError, TenantCtx};
use deadpool_postgres::GenericClient;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// Raw keys look like `cvk_<64 hex digits>`: 256 random bits, so a fast hash is enough.
const KEY_PREFIX: &str = "cvk_";

pub(crate) fn hash_key(raw: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, raw.as_bytes())
        .as_ref()
        .to_vec()
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| StoreError::broken("the system random source failed"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The key and the institution it may use, from the small tables alone (reference tables on
/// a distributed database); the location is then one key lookup inside that institution, so
/// every statement after this one names the institution as a constant and can be routed.
pub(crate) const KEY_SCOPE_SQL: &str = "
SELECT k.revoked_at, i.id
  FROM api_keys k
  LEFT JOIN institutions i
         ON lower(i.subdomain) = lower($2::text)
        AND EXISTS (SELECT 1 FROM api_key_institutions ki
                     WHERE ki.key_id = k.id AND ki.institution_id = i.id)
 WHERE k.id = $1::bigint";

const LOCATION_SQL: &str = "SELECT tz FROM locations WHERE institution_id = $1 AND id = $2";

/// The institution key `key_id` may use by `subdomain`: 401 and 403 decided.
pub(crate) async fn institution_for(
    client: &impl GenericClient,
    key_id: i64,
    subdomain: &str,
) -> Result<Result<i64, Denied>, StoreError> {
    let stmt = client.prepare_cached(KEY_SCOPE_SQL).await.db()?;
    let row = client.query_opt(&stmt, &[&key_id, &subdomain]).await.db()?;
    let Some(row) = row else {
        return Ok(Err(Denied::Revoked));
    };
    let revoked: Option<i64> = row.try_get(0).map_err(StoreError::fault)?;
    if revoked.is_some() {
        return Ok(Err(Denied::Revoked));
    }
    let institution: Option<i64> = row.try_get(1).map_err(StoreError::fault)?;
    Ok(institution.ok_or_else(|| Denied::Forbidden {
        subdomain: subdomain.to_string(),
    }))
}

/// The time zone of the institution's location, if it is one of the institution's.
pub(crate) async fn location_zone(
    client: &impl GenericClient,
    institution: i64,
    location_id: i64,
) -> Result<Option<String>, StoreError> {
    let stmt = client.prepare_cached(LOCATION_SQL).await.db()?;
    Ok(client
        .query_opt(&stmt, &[&institution, &location_id])
        .await
        .db()?
        .map(|r| r.get(0)))
}

/// The tenant, once the location's zone is known (`None`: not the institution's: 404).
pub(crate) fn tenant(
    institution: i64,
    location_id: i64,
    tz: Option<String>,
) -> Result<Result<TenantCtx, Denied>, StoreError> {
    let Some(tz) = tz else {
        return Ok(Err(Denied::NoLocation { location_id }));
    };
    let zone = Zone::get(&tz)
        .ok_or_else(|| StoreError::broken(format!("location {location_id} has unknown tz")))?;
    Ok(Ok(TenantCtx::resolved(institution, location_id, zone)))
}

pub(crate) async fn access(
    client: &impl GenericClient,
    key_id: i64,
    subdomain: &str,
    location_id: i64,
) -> Result<Result<TenantCtx, Denied>, StoreError> {
    let institution = match institution_for(client, key_id, subdomain).await? {
        Ok(i) => i,
        Err(denied) => return Ok(Err(denied)),
    };
    let tz = location_zone(client, institution, location_id).await?;
    tenant(institution, location_id, tz)
}

pub(crate) async fn key_is_live(
    client: &impl GenericClient,
    key_id: i64,
) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL)",
        )
        .await
        .db()?;
    Ok(client.query_one(&stmt, &[&key_id]).await.db()?.get(0))
}

pub(crate) async fn authenticate(
    client: &impl GenericClient,
    hash: &[u8],
) -> Result<Option<i64>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
        .await
        .db()?;
    Ok(client
        .query_opt(&stmt, &[&hash])
        .await
        .db()?
        .map(|r| r.get(0)))
}

/// The secret every process signs tokens with: the first process to ask stores one, and every
/// other reads that one. Two statements, not one: a read in the inserting statement would use
/// the snapshot taken before it waited on a concurrent first insert, and miss it.
pub(crate) async fn jwt_secret(client: &impl GenericClient) -> Result<Vec<u8>, StoreError> {
    let fresh = random_hex(32)?;
    client
        .execute(
            "INSERT INTO settings (key, value) VALUES ('jwt_secret', $1)
             ON CONFLICT (key) DO NOTHING",
            &[&fresh],
        )
        .await
        .db()?;
    let row = client
        .query_one("SELECT value FROM settings WHERE key = 'jwt_secret'", &[])
        .await
        .db()?;
    let secret: String = row.get(0);
    Ok(secret.into_bytes())
}

pub(crate) async fn create(
    tx: &deadpool_postgres::Transaction<'_>,
    subdomains: &[String],
) -> Result<NewApiKey, StoreError> {
    if subdomains.is_empty() {
        return Err(Refusal::NoSubdomains.into());
    }
    let mut institutions = Vec::new();
    for sub in subdomains {
        let row = tx
            .query_opt(
                "SELECT id FROM institutions WHERE lower(subdomain) = lower($1)",
                &[sub],
            )
            .await
            .db()?;
        match row {
            Some(r) => institutions.push(r.get::<_, i64>(0)),
            None => return Err(Refusal::UnknownSubdomain(sub.clone()).into()),
        }
    }
    let raw = format!("{KEY_PREFIX}{}", random_hex(32)?);
    let id: i64 = tx
        .query_one(
            "INSERT INTO api_keys (key_hash, created_at) VALUES ($1, $2) RETURNING id",
            &[&hash_key(&raw), &Millis::now().0],
        )
        .await
        .db()?
        .get(0);
    for inst in institutions {
        tx.execute(
            "INSERT INTO api_key_institutions (key_id, institution_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&id, &inst],
        )
        .await
        .db()?;
    }
    Ok(NewApiKey { id, raw })
}

pub(crate) async fn list(client: &impl GenericClient) -> Result<Vec<ApiKeyInfo>, StoreError> {
    let rows = client
        .query(
            "SELECT k.id, k.created_at, k.revoked_at,
                    coalesce((SELECT array_agg(i.subdomain ORDER BY ki.institution_id)
                                FROM api_key_institutions ki
                                JOIN institutions i ON i.id = ki.institution_id
                               WHERE ki.key_id = k.id), '{}')
               FROM api_keys k ORDER BY k.id",
            &[],
        )
        .await
        .db()?;
    rows.iter()
        .map(|r| {
            Ok(ApiKeyInfo {
                id: r.try_get(0).map_err(StoreError::fault)?,
                created_at: Millis(r.try_get(1).map_err(StoreError::fault)?),
                revoked_at: r
                    .try_get::<_, Option<i64>>(2)
                    .map_err(StoreError::fault)?
                    .map(Millis),
                subdomains: r.try_get(3).map_err(StoreError::fault)?,
            })
        })
        .collect()
}

pub(crate) async fn revoke(client: &impl GenericClient, key_id: i64) -> Result<bool, StoreError> {
    let n = client
        .execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
            &[&key_id, &Millis::now().0],
        )
        .await
        .db()?;
    Ok(n > 0)
}
