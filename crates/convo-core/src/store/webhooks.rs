//! Message webhooks (CONTRACT §8): an API key's endpoints and their subscriptions, the
//! deliveries the worker claims (owners and renewals as the SMS outbox's), what each attempt
//! came to, and the operators' view. Events are written by the message writes themselves, in
//! their transactions: nothing here creates one.

use crate::error::{Denied, StoreError};
use crate::outbox::OutboxStats;
use crate::time::Millis;
use crate::webhook::{
    AttemptRecord, Claim, ClaimAsk, Endpoint, EndpointPatch, Finished, Subscription,
    SubscriptionFilter, SubscriptionPatch, WebhookEvent, WebhookStatus,
};
use async_trait::async_trait;

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// The institution `subdomain` names, when live key `key_id` may use it (401, then 403).
    async fn institution_for_key(
        &self,
        key_id: i64,
        subdomain: &str,
    ) -> Result<Result<i64, Denied>, StoreError>;

    async fn create_endpoint(
        &self,
        key_id: i64,
        target_url: &str,
        secret_key: &str,
        active: bool,
    ) -> Result<Endpoint, StoreError>;

    /// The key's endpoints, oldest first, optionally only active or inactive ones.
    async fn list_endpoints(
        &self,
        key_id: i64,
        active: Option<bool>,
    ) -> Result<Vec<Endpoint>, StoreError>;

    /// `None` when the key has no such endpoint.
    async fn update_endpoint(
        &self,
        key_id: i64,
        endpoint_id: i64,
        patch: &EndpointPatch,
    ) -> Result<Option<Endpoint>, StoreError>;

    /// Its subscriptions and pending deliveries go with it; `false` when the key has no such
    /// endpoint.
    async fn delete_endpoint(&self, key_id: i64, endpoint_id: i64) -> Result<bool, StoreError>;

    /// `None` when the key has no such endpoint.
    async fn list_subscriptions(
        &self,
        key_id: i64,
        endpoint_id: i64,
        filter: &SubscriptionFilter,
    ) -> Result<Option<Vec<Subscription>>, StoreError>;

    /// `None` when the key has no such endpoint. The same (endpoint, institution, event) twice
    /// is one subscription: the second request answers with the first, `active` as asked.
    async fn create_subscription(
        &self,
        key_id: i64,
        endpoint_id: i64,
        institution_id: i64,
        event: WebhookEvent,
        active: bool,
    ) -> Result<Option<Subscription>, StoreError>;

    /// `None` when the key has no such endpoint, the endpoint no such subscription of
    /// `institution_id`, or `new_endpoint_id` is not the key's.
    async fn update_subscription(
        &self,
        key_id: i64,
        endpoint_id: i64,
        subscription_id: i64,
        institution_id: i64,
        patch: &SubscriptionPatch,
    ) -> Result<Option<Subscription>, StoreError>;

    /// Its pending deliveries stop at once; `false` when there is no such subscription.
    async fn delete_subscription(
        &self,
        key_id: i64,
        endpoint_id: i64,
        subscription_id: i64,
    ) -> Result<bool, StoreError>;

    /// Records `ask.finished` as `finish_webhooks` does, rechecks `ask.recheck`, then claims
    /// for `worker` (an owner from `OutboxStore::register_worker`) up to `ask.limit`
    /// deliveries due at `now` of active subscriptions of endpoints it leases (taking the lease
    /// of every active endpoint with something due that no live worker holds), never more than
    /// `ask.ahead` held by `worker` per endpoint; then gives back the leases of endpoints where
    /// it holds no claim. One transaction. Claims and leases of owners whose heartbeat is older
    /// than `stale_ms` are taken over.
    async fn claim_webhooks(
        &self,
        worker: i64,
        ask: ClaimAsk<'_>,
        now: Millis,
        stale_ms: i64,
    ) -> Result<Claim, StoreError>;

    /// Records how `worker`'s attempts went, all in one transaction: each counts one attempt
    /// of its delivery (the first sets when its schedule began) and releases its claim. A
    /// delivery claimed by another worker since keeps its new state (the attempt is recorded);
    /// one deleted meanwhile (its subscription or endpoint went) is left gone. Leases of
    /// endpoints where `worker` holds no claim any more are given back.
    async fn finish_webhooks(
        &self,
        worker: i64,
        results: &[Finished],
        now: Millis,
    ) -> Result<(), StoreError>;

    /// When the next unclaimed delivery is due, if any is pending for an active endpoint.
    async fn next_webhook_at(&self) -> Result<Option<Millis>, StoreError>;

    /// The queue's shape for `/metrics`, as `OutboxStore::outbox_stats`.
    async fn webhook_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError>;

    /// Attempts, newest first, optionally of one endpoint and one outcome (operators' view).
    async fn list_webhook_attempts(
        &self,
        endpoint_id: Option<i64>,
        outcome: Option<WebhookStatus>,
        limit: i64,
    ) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Queues again, for endpoint `endpoint_id`, every stored event since `since` that one of
    /// its subscriptions matches and that has no pending delivery to it: the number queued;
    /// `None` for no such endpoint.
    async fn replay_webhooks(
        &self,
        endpoint_id: i64,
        since: Millis,
        now: Millis,
    ) -> Result<Option<i64>, StoreError>;

    /// Deletes events, settled deliveries and attempts older than `before` (an event with a
    /// pending delivery stays): how many events went.
    async fn purge_webhooks(&self, before: Millis) -> Result<i64, StoreError>;
}
