//! The outbox: claims with owners that renew them, attempts, provider callbacks, operators' view.

use crate::error::StoreError;
use crate::outbox::{Attempt, Delivery, DeliveryRecord, DeliveryStatus, OutboxStats};
use crate::time::Millis;
use async_trait::async_trait;

#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Applies a provider status callback to delivery `delivery_id` when the callback names it,
    /// else to the delivery with that provider id; `false` when there is none.
    async fn update_delivery(
        &self,
        delivery_id: Option<i64>,
        provider_id: &str,
        status: DeliveryStatus,
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

    /// Delivery records, newest first, of one status or all (operators' view).
    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Queues a `failed` or `undelivered` delivery again, from its first attempt. `NotFound`
    /// for no such delivery; `Refused` for another status or a patient who has unsubscribed.
    async fn retry_delivery(&self, id: i64) -> Result<(), StoreError>;
}
