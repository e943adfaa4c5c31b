//! The store traits on SQLite: each method is one trip to a pool (the writer for writes, a
//! reader for reads) running the engine's function for it.

use super::backup::backup_to;
use super::{
    Db, SqliteStore, conversations, export, import, inbound, keys, messages, outbox, schema,
    snapshot, webhooks,
};
use async_trait::async_trait;
use convo_core::import::{ImportBatch, ImportError, ImportSummary, Record};
use convo_core::outbox::{Attempt, Delivery, DeliveryRecord, DeliveryStatus, OutboxStats};
use convo_core::webhook::{
    AttemptRecord, Claim, ClaimAsk, Endpoint, EndpointPatch, Finished, Subscription,
    SubscriptionFilter, SubscriptionPatch, WebhookEvent, WebhookStatus,
};
use convo_core::write::{InboundOutcome, InboundSms, NewMessage};
use convo_core::{
    ApiKeyInfo, Conversation, ConversationPage, ConversationStore, Denied, ImportSink, KeyStore,
    ListQuery, Maintenance, Message, MessageQuery, Millis, NewApiKey, OutboxStore, Refusal,
    StoreError, TenantCtx, WebhookStore,
};
use std::path::Path;
use tokio::sync::mpsc;

#[async_trait]
impl KeyStore for SqliteStore {
    async fn key_is_live(&self, key_id: i64) -> Result<bool, StoreError> {
        self.read_here(|conn| keys::key_is_live(conn, key_id)).await
    }

    async fn access(
        &self,
        key_id: i64,
        subdomain: &str,
        location_id: i64,
    ) -> Result<Result<TenantCtx, Denied>, StoreError> {
        self.read_here(|conn| keys::access(conn, key_id, subdomain, location_id))
            .await
    }

    async fn authenticate_key(&self, raw_key: &str) -> Result<Option<i64>, StoreError> {
        let hash = keys::hash_key(raw_key);
        self.read_here(|conn| keys::authenticate(conn, &hash)).await
    }

    async fn jwt_secret(&self) -> Result<Vec<u8>, StoreError> {
        self.write(keys::jwt_secret).await
    }

    async fn create_api_key(&self, subdomains: &[String]) -> Result<NewApiKey, StoreError> {
        let subdomains = subdomains.to_vec();
        self.write(move |conn| keys::create(conn, &subdomains))
            .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.read(keys::list).await
    }

    async fn revoke_api_key(&self, key_id: i64) -> Result<bool, StoreError> {
        self.write(move |conn| keys::revoke(conn, key_id)).await
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn list_conversations(
        &self,
        tenant: &TenantCtx,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.read_sized(query.rows_at_most(), move |conn| {
            conversations::page(conn, &tenant, &query)
        })
        .await
    }

    async fn list_for_key(
        &self,
        key_id: i64,
        scope: (&str, i64),
        query: &ListQuery,
    ) -> Result<Result<(TenantCtx, ConversationPage), Denied>, StoreError> {
        let (subdomain, location_id, query) = (scope.0.to_string(), scope.1, query.clone());
        // One read transaction: the access check and the page see the same snapshot.
        self.read_sized(query.rows_at_most(), move |conn| {
            snapshot(conn, |conn| {
                let tenant = match keys::access(conn, key_id, &subdomain, location_id)? {
                    Ok(tenant) => tenant,
                    Err(denied) => return Ok(Err(denied)),
                };
                let page = conversations::read_page(conn, &tenant, &query)?;
                Ok(Ok((tenant, page)))
            })
        })
        .await
    }

    async fn get_conversation(
        &self,
        tenant: &TenantCtx,
        id: i64,
        messages: Option<&MessageQuery>,
    ) -> Result<Option<Conversation>, StoreError> {
        let rows = 1 + messages.map_or(0, |m| m.limit);
        let (tenant, messages) = (tenant.clone(), messages.cloned());
        self.read_sized(rows, move |conn| {
            conversations::one(conn, &tenant, id, messages.as_ref())
        })
        .await
    }

    async fn send_message(
        &self,
        tenant: &TenantCtx,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        let tenant = tenant.clone();
        self.write(move |conn| messages::send(conn, &tenant, message, Millis::now()))
            .await
    }

    async fn mark_seen(
        &self,
        tenant: &TenantCtx,
        message_id: i64,
        user_id: i64,
    ) -> Result<Message, StoreError> {
        let tenant = tenant.clone();
        self.write(move |conn| messages::seen(conn, &tenant, message_id, user_id, Millis::now()))
            .await
    }

    async fn receive_sms(&self, sms: InboundSms) -> Result<InboundOutcome, StoreError> {
        self.write(move |conn| inbound::receive(conn, sms, Millis::now()))
            .await
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn update_delivery(
        &self,
        delivery_id: Option<i64>,
        provider_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        let provider_id = provider_id.to_string();
        self.write(move |conn| {
            outbox::update_status(
                conn,
                delivery_id,
                &provider_id,
                status,
                error,
                Millis::now(),
            )
        })
        .await
    }

    async fn register_worker(&self) -> Result<i64, StoreError> {
        self.own()?;
        self.write(|conn| outbox::register_worker(conn, Millis::now()))
            .await
    }

    async fn heartbeat_worker(&self, worker: i64) -> Result<(), StoreError> {
        self.write(move |conn| outbox::heartbeat(conn, worker, Millis::now()))
            .await
    }

    async fn retire_worker(&self, worker: i64) -> Result<(), StoreError> {
        self.write(move |conn| outbox::retire(conn, worker)).await
    }

    async fn claim_deliveries(
        &self,
        worker: i64,
        now: Millis,
        stale_ms: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.write(move |conn| outbox::claim(conn, worker, now, stale_ms, limit))
            .await
    }

    async fn finish_delivery(
        &self,
        worker: i64,
        id: i64,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        self.write(move |conn| outbox::finish(conn, worker, id, attempt, Millis::now()))
            .await
    }

    async fn next_delivery_at(&self) -> Result<Option<Millis>, StoreError> {
        self.read(outbox::next_due).await
    }

    async fn outbox_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError> {
        self.read(move |conn| outbox::stats(conn, now, stale_ms))
            .await
    }

    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.read(move |conn| outbox::list(conn, status, limit))
            .await
    }

    async fn retry_delivery(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |conn| outbox::retry(conn, id, Millis::now()))
            .await
    }
}

#[async_trait]
impl ImportSink for SqliteStore {
    async fn import(
        &self,
        items: mpsc::Receiver<ImportBatch>,
    ) -> Result<ImportSummary, ImportError> {
        self.write(move |conn| Ok(import::run(conn, items))).await?
    }

    async fn export(&self, out: mpsc::Sender<Vec<Record>>) -> Result<u64, StoreError> {
        self.read(move |conn| export::run(conn, &out)).await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM institutions)", [], |r| {
                r.get(0)
            })
            .db()
        })
        .await
    }
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn check_ready(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            let found: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .db()?;
            // A real read of a real table: a damaged or vanished file fails here.
            conn.query_row("SELECT count(*) FROM settings", [], |r| r.get::<_, i64>(0))
                .db()?;
            let expected = schema::SCHEMA_VERSION;
            if found == expected {
                Ok(())
            } else {
                Err(Refusal::SchemaMismatch { found, expected }.into())
            }
        })
        .await
    }

    /// Refreshes the planner's statistics (the server does it at start).
    async fn optimize(&self) -> Result<(), StoreError> {
        self.write(|conn| conn.execute_batch(super::OPTIMIZE_SQL).db())
            .await
    }

    /// Writes a consistent copy of the database to `dest` (which must not exist) while writers
    /// carry on: `VACUUM INTO` reads one snapshot (a WAL read transaction never blocks the
    /// writer), the copy is checked, synced and only then renamed into place, so `dest` is
    /// either absent or complete. Returns the copy's size in bytes.
    async fn backup(&self, dest: &Path) -> Result<u64, StoreError> {
        if dest.exists() {
            return Err(Refusal::BackupExists(dest.display().to_string()).into());
        }
        let source = self.path().to_path_buf();
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || backup_to(&source, &dest))
            .await
            .map_err(StoreError::fault)?
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn institution_for_key(
        &self,
        key_id: i64,
        subdomain: &str,
    ) -> Result<Result<i64, Denied>, StoreError> {
        self.read_here(|conn| webhooks::institution_for_key(conn, key_id, subdomain))
            .await
    }

    async fn create_endpoint(
        &self,
        key_id: i64,
        target_url: &str,
        secret_key: &str,
        active: bool,
    ) -> Result<Endpoint, StoreError> {
        let (url, secret) = (target_url.to_string(), secret_key.to_string());
        self.write(move |conn| {
            webhooks::create_endpoint(conn, key_id, &url, &secret, active, Millis::now())
        })
        .await
    }

    async fn list_endpoints(
        &self,
        key_id: i64,
        active: Option<bool>,
    ) -> Result<Vec<Endpoint>, StoreError> {
        self.read_here(|conn| webhooks::list_endpoints(conn, key_id, active))
            .await
    }

    async fn update_endpoint(
        &self,
        key_id: i64,
        endpoint_id: i64,
        patch: &EndpointPatch,
    ) -> Result<Option<Endpoint>, StoreError> {
        let patch = patch.clone();
        self.write(move |conn| {
            webhooks::update_endpoint(conn, key_id, endpoint_id, &patch, Millis::now())
        })
        .await
    }

    async fn delete_endpoint(&self, key_id: i64, endpoint_id: i64) -> Result<bool, StoreError> {
        self.write(move |conn| webhooks::delete_endpoint(conn, key_id, endpoint_id))
            .await
    }

    async fn list_subscriptions(
        &self,
        key_id: i64,
        endpoint_id: i64,
        filter: &SubscriptionFilter,
    ) -> Result<Option<Vec<Subscription>>, StoreError> {
        self.read_here(|conn| webhooks::list_subscriptions(conn, key_id, endpoint_id, filter))
            .await
    }

    async fn create_subscription(
        &self,
        key_id: i64,
        endpoint_id: i64,
        institution_id: i64,
        event: WebhookEvent,
        active: bool,
    ) -> Result<Option<Subscription>, StoreError> {
        self.write(move |conn| {
            webhooks::create_subscription(
                conn,
                key_id,
                endpoint_id,
                (institution_id, event),
                active,
                Millis::now(),
            )
        })
        .await
    }

    async fn update_subscription(
        &self,
        key_id: i64,
        endpoint_id: i64,
        subscription_id: i64,
        institution_id: i64,
        patch: &SubscriptionPatch,
    ) -> Result<Option<Subscription>, StoreError> {
        let patch = patch.clone();
        self.write(move |conn| {
            webhooks::update_subscription(
                conn,
                key_id,
                (endpoint_id, subscription_id, institution_id),
                &patch,
                Millis::now(),
            )
        })
        .await
    }

    async fn delete_subscription(
        &self,
        key_id: i64,
        endpoint_id: i64,
        subscription_id: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            webhooks::delete_subscription(conn, key_id, endpoint_id, subscription_id)
        })
        .await
    }

    async fn claim_webhooks(
        &self,
        worker: i64,
        ask: ClaimAsk<'_>,
        now: Millis,
        stale_ms: i64,
    ) -> Result<Claim, StoreError> {
        let ask = webhooks::OwnedAsk {
            finished: ask.finished.to_vec(),
            recheck: ask.recheck.to_vec(),
            limit: ask.limit,
            ahead: ask.ahead,
        };
        self.write(move |conn| webhooks::claim(conn, worker, &ask, now, stale_ms))
            .await
    }

    async fn finish_webhooks(
        &self,
        worker: i64,
        results: &[Finished],
        now: Millis,
    ) -> Result<(), StoreError> {
        let results = results.to_vec();
        self.write(move |conn| webhooks::finish(conn, worker, &results, now))
            .await
    }

    async fn next_webhook_at(&self) -> Result<Option<Millis>, StoreError> {
        self.read_here(|conn| webhooks::next_due(conn)).await
    }

    async fn webhook_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError> {
        self.read(move |conn| webhooks::stats(conn, now, stale_ms))
            .await
    }

    async fn list_webhook_attempts(
        &self,
        endpoint_id: Option<i64>,
        outcome: Option<WebhookStatus>,
        limit: i64,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read(move |conn| webhooks::attempts(conn, endpoint_id, outcome, limit))
            .await
    }

    async fn replay_webhooks(
        &self,
        endpoint_id: i64,
        since: Millis,
        now: Millis,
    ) -> Result<Option<i64>, StoreError> {
        self.write(move |conn| webhooks::replay(conn, endpoint_id, since, now))
            .await
    }

    async fn purge_webhooks(&self, before: Millis) -> Result<i64, StoreError> {
        self.write(move |conn| webhooks::purge(conn, before)).await
    }
}
