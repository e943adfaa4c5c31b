//! API keys, the token secret, and the access check that turns a key and a scope into a tenant.

use crate::error::{Denied, StoreError};
use crate::model::{ApiKeyInfo, NewApiKey};
use crate::tz::Zone;
use async_trait::async_trait;

/// The institution and location a request is scoped to, as resolved by the store for a key that
/// may use them. Every tenant-scoped store method takes one and filters by both ids.
#[derive(Clone, Debug)]
pub struct TenantCtx {
    institution_id: i64,
    location_id: i64,
    zone: Zone,
}

impl TenantCtx {
    /// For storage engines: build a context only after checking the key may use the
    /// institution and the location belongs to it (`KeyStore::access`).
    pub fn resolved(institution_id: i64, location_id: i64, zone: Zone) -> Self {
        Self {
            institution_id,
            location_id,
            zone,
        }
    }

    pub fn institution_id(&self) -> i64 {
        self.institution_id
    }

    pub fn location_id(&self) -> i64 {
        self.location_id
    }

    /// The location's time zone, resolved once for the whole request.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }
}

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Whether key `key_id` exists and is not revoked.
    async fn key_is_live(&self, key_id: i64) -> Result<bool, StoreError>;

    /// Checks key `key_id` is live, may use `subdomain`, and that `location_id` is one of that
    /// institution's locations, in that order (401, 403, 404).
    async fn access(
        &self,
        key_id: i64,
        subdomain: &str,
        location_id: i64,
    ) -> Result<Result<TenantCtx, Denied>, StoreError>;

    /// The id of the live key whose raw secret this is.
    async fn authenticate_key(&self, raw_key: &str) -> Result<Option<i64>, StoreError>;

    /// The JWT signing secret, generated and kept on first use (one for every process that
    /// shares the database, so a token from one works on all).
    async fn jwt_secret(&self) -> Result<Vec<u8>, StoreError>;

    /// A new key for these institutions (by subdomain): `Refused` when the list is empty or
    /// names an institution that does not exist.
    async fn create_api_key(&self, subdomains: &[String]) -> Result<NewApiKey, StoreError>;

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError>;

    /// `false` when no such key exists. Revoking twice is not an error.
    async fn revoke_api_key(&self, key_id: i64) -> Result<bool, StoreError>;
}
