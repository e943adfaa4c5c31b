//! API keys (CONTRACT §2 and §7): hashed secrets, scopes decided in the contract's order,
//! revocation that ends a key everywhere.

use crate::Db;
use crate::fixture::practice;
use convo_core::{Denied, Refusal, StoreError};

pub async fn keys_grant_scopes_in_the_contracts_order(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let key = store.create_api_key(&["acme".into()]).await.expect("key");
    assert_eq!(
        store.authenticate_key(&key.raw).await.expect("auth"),
        Some(key.id)
    );
    assert_eq!(
        store
            .authenticate_key(&format!("{}0", key.raw))
            .await
            .expect("auth"),
        None
    );
    let granted = store
        .access(key.id, "ACME", 10)
        .await
        .expect("access")
        .expect("granted");
    assert_eq!((granted.institution_id(), granted.location_id()), (1, 10));
    let la = convo_core::tz::Zone::get("America/Los_Angeles").expect("zone");
    let summer = convo_core::Millis(1_720_000_000_000);
    assert_eq!(granted.zone().offset_at(summer), la.offset_at(summer));
    let denied = |subdomain: &'static str, location: i64| async move {
        store
            .access(key.id, subdomain, location)
            .await
            .expect("access")
            .expect_err("denied")
    };
    assert_eq!(
        denied("other", 20).await,
        Denied::Forbidden {
            subdomain: "other".into()
        }
    );
    assert_eq!(
        denied("nowhere", 10).await,
        Denied::Forbidden {
            subdomain: "nowhere".into()
        }
    );
    assert_eq!(
        denied("acme", 20).await,
        Denied::NoLocation { location_id: 20 }
    );
    assert!(matches!(
        store.access(999, "acme", 10).await.expect("access"),
        Err(Denied::Revoked)
    ));
    // Keys are made only for institutions that exist.
    assert!(matches!(
        store.create_api_key(&["acme".into(), "ghost".into()]).await,
        Err(StoreError::Refused(Refusal::UnknownSubdomain(s))) if s == "ghost"
    ));
    assert!(matches!(
        store.create_api_key(&[]).await,
        Err(StoreError::Refused(Refusal::NoSubdomains))
    ));
    let both = store
        .create_api_key(&["acme".into(), "other".into()])
        .await
        .expect("key");
    assert!(
        store
            .access(both.id, "other", 20)
            .await
            .expect("access")
            .is_ok()
    );
    // One secret for tokens, kept: every process sharing the database signs alike.
    let secret = store.jwt_secret().await.expect("secret");
    assert!(secret.len() >= 32);
    assert_eq!(store.jwt_secret().await.expect("secret"), secret);
}

pub async fn revoking_a_key_ends_it_everywhere(db: Db) {
    practice(db.store.as_ref()).await;
    let store = db.store.as_ref();
    let key = store.create_api_key(&["acme".into()]).await.expect("key");
    let kept = store.create_api_key(&["acme".into()]).await.expect("key");
    assert!(store.key_is_live(key.id).await.expect("live"));
    assert!(store.revoke_api_key(key.id).await.expect("revoke"));
    assert!(!store.key_is_live(key.id).await.expect("live"));
    assert_eq!(store.authenticate_key(&key.raw).await.expect("auth"), None);
    assert!(matches!(
        store.access(key.id, "acme", 10).await.expect("access"),
        Err(Denied::Revoked)
    ));
    // Twice is fine; a key that never existed is said so.
    assert!(store.revoke_api_key(key.id).await.expect("revoke"));
    assert!(!store.revoke_api_key(9_999).await.expect("revoke"));
    assert!(!store.key_is_live(9_999).await.expect("live"));
    // Only that key.
    assert!(store.key_is_live(kept.id).await.expect("live"));
    let listed = store.list_api_keys().await.expect("list");
    let mine = listed.iter().find(|k| k.id == key.id).expect("listed");
    assert!(mine.revoked_at.is_some());
    assert_eq!(mine.subdomains, ["acme"]);
    let other = listed.iter().find(|k| k.id == kept.id).expect("listed");
    assert!(other.revoked_at.is_none());
}
