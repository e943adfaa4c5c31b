//! The storage seam: one method per use case, each owning its transaction, tenant first.

use crate::import::ImportBatch;
use crate::model::{ApiKeyInfo, Conversation, ConversationPage, Message, NewApiKey};
use crate::time::Millis;
use crate::tz::Zone;
use crate::write::{Attempt, Delivery, DeliveryRecord, InboundOutcome, InboundSms, NewMessage};
use async_trait::async_trait;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A fault of the engine or the disk; details are for the log, never for a client.
    #[error("storage fault: {0}")]
    Internal(String),
    /// The request names something wrong (a 400, said in the message).
    #[error("{0}")]
    Invalid(String),
    /// A resource in the path does not exist for this tenant (a 404).
    #[error("{0}")]
    NotFound(String),
}

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
    /// institution and the location belongs to it.
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

/// What a bearer may do, decided in one lookup (CONTRACT §7's precedence: 401, then 403, then 404).
#[derive(Clone, Debug)]
pub enum Access {
    /// Unknown or revoked key: 401.
    Revoked,
    /// The key is live; no scope was asked for.
    Live,
    /// The key may not use that subdomain, or it does not exist: 403.
    Forbidden,
    /// The location is not one of that institution's: 404.
    NoLocation,
    Granted(TenantCtx),
}

/// One page of the list, in store terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: i64,
    /// Page-number paging: how many to skip (ignored when `cursor` is set).
    pub offset: i64,
    /// Cursor paging (the v20240412 variant): `page_info` instead of `count`.
    pub cursor: Option<crate::cursor::CursorPaging>,
    /// `updated_at >= updated_since` for conversations (and messages, via `MessageQuery`).
    pub updated_since: Option<Millis>,
    /// `None`: messages are not included.
    pub messages: Option<MessageQuery>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageQuery {
    /// Newest this many per conversation (0..=100).
    pub limit: i64,
    pub created_since: Option<Millis>,
    pub updated_since: Option<Millis>,
}

/// The outbox in numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Waiting to go out: due now or scheduled for a retry, claimed or not.
    pub pending: i64,
    /// Due now and not claimed by a live worker.
    pub due: i64,
    /// Claimed by a worker (being handed to the provider).
    pub claimed: i64,
    /// How long the oldest due, unclaimed entry has waited.
    pub oldest_due_ms: i64,
}

/// What an import wrote, by record type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub institutions: u64,
    pub locations: u64,
    pub patients: u64,
    pub users: u64,
    pub conversations: u64,
    pub messages: u64,
}

/// Why an import was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("the input ended before the import was committed")]
    Aborted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks key `key_id` is live and, when asked, that it may use `subdomain` and that
    /// `location_id` is one of that institution's locations.
    async fn access(&self, key_id: i64, scope: Option<(&str, i64)>) -> Result<Access, StoreError>;

    /// One page of a location's conversations, newest activity first, with their messages.
    async fn list_conversations(
        &self,
        tenant: &TenantCtx,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError>;

    /// `access` and, when it grants, `list_conversations`: the API's hot path, which an engine
    /// can answer in one trip (one connection checkout, one thread hop).
    async fn list_for_key(
        &self,
        key_id: i64,
        scope: (&str, i64),
        query: &ListQuery,
    ) -> Result<(Access, Option<ConversationPage>), StoreError> {
        let access = self.access(key_id, Some(scope)).await?;
        let page = match &access {
            Access::Granted(tenant) => Some(self.list_conversations(tenant, query).await?),
            _ => None,
        };
        Ok((access, page))
    }

    /// One conversation of the tenant's location, with messages when asked.
    async fn get_conversation(
        &self,
        tenant: &TenantCtx,
        id: i64,
        messages: Option<&MessageQuery>,
    ) -> Result<Option<Conversation>, StoreError>;

    /// A staff message: the message, its conversation (created if absent), the conversation's
    /// activity and an outbox entry, in one transaction.
    async fn send_message(
        &self,
        tenant: &TenantCtx,
        message: NewMessage,
    ) -> Result<Message, StoreError>;

    /// Adds `user_id` to a message's `seen_by` (once), moving its and its conversation's
    /// `updated_at`. `NotFound` when the message is not of the tenant's location.
    async fn mark_seen(
        &self,
        tenant: &TenantCtx,
        message_id: i64,
        user_id: i64,
    ) -> Result<Message, StoreError>;

    /// A patient's SMS, routed by the location's number and the patient's; idempotent per
    /// provider message id. `NotFound` when no location has the `to` number.
    async fn receive_sms(&self, sms: InboundSms) -> Result<InboundOutcome, StoreError>;

    /// Applies a provider status callback to delivery `delivery_id` when the callback names it,
    /// else to the delivery with that provider id; `false` when there is none.
    async fn update_delivery(
        &self,
        delivery_id: Option<i64>,
        provider_id: &str,
        status: &'static str,
        error: Option<String>,
    ) -> Result<bool, StoreError>;

    /// A new owner for outbox claims (one per running worker). An engine that one process owns
    /// (SQLite) takes back every claim of earlier owners here, so a restart after a crash resends
    /// at once; it refuses when another process already owns the database.
    async fn register_worker(&self) -> Result<i64, StoreError>;

    /// Keeps `worker`'s claims alive: claims of an owner that stopped renewing are taken over.
    async fn heartbeat_worker(&self, worker: i64) -> Result<(), StoreError>;

    /// A worker that stops: its remaining claims go back to the queue, its row goes.
    async fn retire_worker(&self, worker: i64) -> Result<(), StoreError>;

    /// Claims for `worker` up to `limit` deliveries due at `now` that nobody holds, or whose
    /// owner's last heartbeat is older than `stale_ms`. A live owner keeps its claims however
    /// slow the provider is, so a slow send is never sent twice.
    async fn claim_deliveries(
        &self,
        worker: i64,
        now: Millis,
        stale_ms: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records how `worker`'s attempt went, and releases its claim.
    async fn finish_delivery(
        &self,
        worker: i64,
        id: i64,
        attempt: Attempt,
    ) -> Result<(), StoreError>;

    /// When the next unclaimed delivery is due, if any is pending.
    async fn next_delivery_at(&self) -> Result<Option<Millis>, StoreError>;

    /// The queue's shape for `/metrics` (counts only, nothing from the data).
    /// `stale_ms` as for `claim_deliveries`.
    async fn outbox_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError>;

    /// `Ok` when the database answers and its schema is the one this build expects;
    /// `Invalid` names a schema mismatch, `Internal` a database that cannot be read.
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Delivery records, newest first, of one status or all (operators' view).
    async fn list_deliveries(
        &self,
        status: Option<String>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Queues a `failed` or `undelivered` delivery again, from its first attempt. `NotFound`
    /// for no such delivery; `Invalid` for another status or a patient who has unsubscribed.
    async fn retry_delivery(&self, id: i64) -> Result<(), StoreError>;

    /// The id of the live key whose raw secret this is.
    async fn authenticate_key(&self, raw_key: &str) -> Result<Option<i64>, StoreError>;

    /// The JWT signing secret, generated and kept on first use.
    async fn jwt_secret(&self) -> Result<Vec<u8>, StoreError>;

    /// A new key for these institutions (by subdomain); `Invalid` if one does not exist.
    async fn create_api_key(&self, subdomains: &[String]) -> Result<NewApiKey, StoreError>;

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError>;

    /// `false` when no such key exists. Revoking twice is not an error.
    async fn revoke_api_key(&self, key_id: i64) -> Result<bool, StoreError>;

    /// Applies the items in one transaction; commits only on `ImportItem::Commit`.
    async fn import(
        &self,
        items: mpsc::Receiver<ImportBatch>,
    ) -> Result<ImportSummary, ImportError>;

    /// True when no institution exists yet (the demo fills only an empty database).
    async fn is_empty(&self) -> Result<bool, StoreError>;
}
