//! The store traits on PostgreSQL: a read is one statement on a pooled connection (one
//! snapshot); a write is one transaction, run again when PostgreSQL aborts it to keep
//! concurrent ones apart.

use crate::store::{in_transaction, plan_for_now};
use crate::{
    Db, PgStore, conversations, export, import, inbound, keys, messages, outbox, schema, webhooks,
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
use std::time::Instant;
use tokio::sync::mpsc;

#[async_trait]
impl KeyStore for PgStore {
    async fn key_is_live(&self, key_id: i64) -> Result<bool, StoreError> {
        keys::key_is_live(&self.client().await?, key_id).await
    }

    async fn access(
        &self,
        key_id: i64,
        subdomain: &str,
        location_id: i64,
    ) -> Result<Result<TenantCtx, Denied>, StoreError> {
        keys::access(&self.client().await?, key_id, subdomain, location_id).await
    }

    async fn authenticate_key(&self, raw_key: &str) -> Result<Option<i64>, StoreError> {
        keys::authenticate(&self.client().await?, &keys::hash_key(raw_key)).await
    }

    async fn jwt_secret(&self) -> Result<Vec<u8>, StoreError> {
        keys::jwt_secret(&self.client().await?).await
    }

    async fn create_api_key(&self, subdomains: &[String]) -> Result<NewApiKey, StoreError> {
        in_transaction!(self, |tx| keys::create(&tx, subdomains).await?)
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        keys::list(&self.client().await?).await
    }

    async fn revoke_api_key(&self, key_id: i64) -> Result<bool, StoreError> {
        keys::revoke(&self.client().await?, key_id).await
    }
}

#[async_trait]
impl ConversationStore for PgStore {
    async fn list_conversations(
        &self,
        tenant: &TenantCtx,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError> {
        let scope = (tenant.institution_id(), tenant.location_id());
        conversations::page(&self.client().await?, scope, query).await
    }

    async fn list_for_key(
        &self,
        key_id: i64,
        scope: (&str, i64),
        query: &ListQuery,
    ) -> Result<Result<(TenantCtx, ConversationPage), Denied>, StoreError> {
        // One checkout, two statements: the key's institution (from the small tables), then
        // the page, which carries the location's zone (none: not the institution's location,
        // and the page, empty, is not returned).
        let client = self.client().await?;
        let (subdomain, location) = scope;
        let institution = match keys::institution_for(&client, key_id, subdomain).await? {
            Ok(i) => i,
            Err(denied) => return Ok(Err(denied)),
        };
        let (page, tz) =
            conversations::page_and_zone(&client, (institution, location), query).await?;
        Ok(keys::tenant(institution, location, tz)?.map(|tenant| (tenant, page)))
    }

    async fn get_conversation(
        &self,
        tenant: &TenantCtx,
        id: i64,
        messages: Option<&MessageQuery>,
    ) -> Result<Option<Conversation>, StoreError> {
        conversations::one(&self.client().await?, tenant, id, messages).await
    }

    async fn send_message(
        &self,
        tenant: &TenantCtx,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        in_transaction!(self, |tx| messages::send(
            &tx,
            tenant,
            &message,
            Millis::now()
        )
        .await?)
    }

    async fn mark_seen(
        &self,
        tenant: &TenantCtx,
        message_id: i64,
        user_id: i64,
    ) -> Result<Message, StoreError> {
        in_transaction!(self, |tx| messages::seen(
            &tx,
            tenant,
            message_id,
            user_id,
            Millis::now()
        )
        .await?)
    }

    async fn receive_sms(&self, sms: InboundSms) -> Result<InboundOutcome, StoreError> {
        in_transaction!(self, |tx| inbound::receive(&tx, &sms, Millis::now())
            .await?)
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn update_delivery(
        &self,
        delivery_id: Option<i64>,
        provider_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| outbox::update_status(
            &tx,
            delivery_id,
            provider_id,
            status,
            error.clone(),
            Millis::now(),
        )
        .await?)
    }

    async fn register_worker(&self) -> Result<i64, StoreError> {
        in_transaction!(self, |tx| outbox::register_worker(&tx, Millis::now())
            .await?)
    }

    async fn heartbeat_worker(&self, worker: i64) -> Result<(), StoreError> {
        outbox::heartbeat(&self.client().await?, worker, Millis::now()).await
    }

    async fn retire_worker(&self, worker: i64) -> Result<(), StoreError> {
        in_transaction!(self, |tx| outbox::retire(&tx, worker).await?)
    }

    async fn claim_deliveries(
        &self,
        worker: i64,
        now: Millis,
        stale_ms: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        in_transaction!(self, |tx| {
            plan_for_now(&tx).await?;
            outbox::claim(&tx, worker, now, stale_ms, limit).await?
        })
    }

    async fn finish_delivery(
        &self,
        worker: i64,
        id: i64,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        in_transaction!(self, |tx| outbox::finish(
            &tx,
            worker,
            id,
            attempt.clone(),
            Millis::now()
        )
        .await?)
    }

    async fn next_delivery_at(&self) -> Result<Option<Millis>, StoreError> {
        in_transaction!(self, |tx| {
            plan_for_now(&tx).await?;
            outbox::next_due(&tx).await?
        })
    }

    async fn outbox_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError> {
        in_transaction!(self, |tx| {
            plan_for_now(&tx).await?;
            outbox::stats(&tx, now, stale_ms).await?
        })
    }

    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        outbox::list(&self.client().await?, status, limit).await
    }

    async fn retry_delivery(&self, id: i64) -> Result<(), StoreError> {
        in_transaction!(self, |tx| outbox::retry(&tx, id, Millis::now()).await?)
    }
}

#[async_trait]
impl ImportSink for PgStore {
    /// One transaction, never rerun (the records come once); then fresh planner statistics
    /// and visibility maps, so the list stays an index-only scan after a bulk load.
    async fn import(
        &self,
        mut items: mpsc::Receiver<ImportBatch>,
    ) -> Result<ImportSummary, ImportError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.db()?;
        let summary = import::apply_all(&tx, &mut items).await?;
        let started = Instant::now();
        tx.commit().await.db()?;
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "import: committed"
        );
        let started = Instant::now();
        client
            .batch_execute(
                "VACUUM (ANALYZE) conversations, conversation_activity, messages, patients,
                 locations",
            )
            .await
            .db()?;
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "import: planner statistics and visibility maps refreshed"
        );
        Ok(summary)
    }

    async fn export(&self, out: mpsc::Sender<Vec<Record>>) -> Result<u64, StoreError> {
        export::run(&mut self.client().await?, &out).await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT NOT EXISTS (SELECT 1 FROM institutions)", &[])
            .await
            .db()?;
        Ok(row.get(0))
    }
}

/// The kept counts' stripes summed into stripe 0, slices that count nothing dropped.
const FOLD_SQL: &str = "
    LOCK TABLE conversation_activity, conversation_counts IN EXCLUSIVE MODE;
    WITH f AS (DELETE FROM conversation_activity WHERE stripe <> 0
               RETURNING institution_id, location_id, shift, slice, n)
    INSERT INTO conversation_activity (institution_id, location_id, shift, slice, stripe, n)
         SELECT institution_id, location_id, shift, slice, 0, sum(n) FROM f GROUP BY 1, 2, 3, 4
    ON CONFLICT (institution_id, location_id, shift, slice, stripe)
    DO UPDATE SET n = conversation_activity.n + excluded.n;
    DELETE FROM conversation_activity WHERE n = 0;
    WITH f AS (DELETE FROM conversation_counts WHERE stripe <> 0
               RETURNING institution_id, location_id, n)
    INSERT INTO conversation_counts (institution_id, location_id, stripe, n)
         SELECT institution_id, location_id, 0, sum(n) FROM f GROUP BY 1, 2
    ON CONFLICT (institution_id, location_id, stripe)
    DO UPDATE SET n = conversation_counts.n + excluded.n;";

#[async_trait]
impl Maintenance for PgStore {
    async fn check_ready(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let found = schema::version(&client).await?;
        let expected = schema::SCHEMA_VERSION;
        if found == expected {
            Ok(())
        } else {
            Err(Refusal::SchemaMismatch { found, expected }.into())
        }
    }

    /// Fresh planner statistics, and the kept counts folded: each slice's and location's
    /// stripes summed into one row, and slices that count nothing dropped (fewer rows for a
    /// deep page to add up). Writers wait for the fold, which takes milliseconds.
    async fn optimize(&self) -> Result<(), StoreError> {
        in_transaction!(self, |tx| tx.batch_execute(FOLD_SQL).await.db()?)?;
        let client = self.client().await?;
        client.batch_execute("ANALYZE").await.db()?;
        // Every message moves its conversation in the list index; without vacuum the list's
        // index-only scans turn into heap fetches of dead rows as writes accumulate (seen:
        // page 500 at half its rate, 502 against 994 req/s before and after a VACUUM, after
        // 90 k sends on a server with it off).
        let autovacuum: String = client.query_one("SHOW autovacuum", &[]).await.db()?.get(0);
        if autovacuum != "on" {
            tracing::warn!(
                "autovacuum is off on this PostgreSQL server: the list slows down as writes \
                 accumulate unless the tables are vacuumed (turn it on, or run VACUUM often)"
            );
        }
        Ok(())
    }

    async fn backup(&self, _dest: &Path) -> Result<u64, StoreError> {
        Err(Refusal::BackupByEngineTools("pg_dump --format=custom").into())
    }

    fn describe(&self) -> String {
        self.described().to_string()
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn institution_for_key(
        &self,
        key_id: i64,
        subdomain: &str,
    ) -> Result<Result<i64, Denied>, StoreError> {
        keys::institution_for(&self.client().await?, key_id, subdomain).await
    }

    async fn create_endpoint(
        &self,
        key_id: i64,
        target_url: &str,
        secret_key: &str,
        active: bool,
    ) -> Result<Endpoint, StoreError> {
        webhooks::create_endpoint(
            &self.client().await?,
            key_id,
            (target_url, secret_key, active),
            Millis::now(),
        )
        .await
    }

    async fn list_endpoints(
        &self,
        key_id: i64,
        active: Option<bool>,
    ) -> Result<Vec<Endpoint>, StoreError> {
        webhooks::list_endpoints(&self.client().await?, key_id, active).await
    }

    async fn update_endpoint(
        &self,
        key_id: i64,
        endpoint_id: i64,
        patch: &EndpointPatch,
    ) -> Result<Option<Endpoint>, StoreError> {
        webhooks::update_endpoint(
            &self.client().await?,
            (key_id, endpoint_id),
            patch,
            Millis::now(),
        )
        .await
    }

    async fn delete_endpoint(&self, key_id: i64, endpoint_id: i64) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| webhooks::delete_endpoint(
            &tx,
            key_id,
            endpoint_id
        )
        .await?)
    }

    async fn list_subscriptions(
        &self,
        key_id: i64,
        endpoint_id: i64,
        filter: &SubscriptionFilter,
    ) -> Result<Option<Vec<Subscription>>, StoreError> {
        in_transaction!(self, |tx| webhooks::list_subscriptions(
            &tx,
            (key_id, endpoint_id),
            filter
        )
        .await?)
    }

    async fn create_subscription(
        &self,
        key_id: i64,
        endpoint_id: i64,
        institution_id: i64,
        event: WebhookEvent,
        active: bool,
    ) -> Result<Option<Subscription>, StoreError> {
        in_transaction!(self, |tx| webhooks::create_subscription(
            &tx,
            (key_id, endpoint_id),
            (institution_id, event),
            active,
            Millis::now()
        )
        .await?)
    }

    async fn update_subscription(
        &self,
        key_id: i64,
        endpoint_id: i64,
        subscription_id: i64,
        institution_id: i64,
        patch: &SubscriptionPatch,
    ) -> Result<Option<Subscription>, StoreError> {
        in_transaction!(self, |tx| webhooks::update_subscription(
            &tx,
            key_id,
            (endpoint_id, subscription_id, institution_id),
            patch,
            Millis::now()
        )
        .await?)
    }

    async fn delete_subscription(
        &self,
        key_id: i64,
        endpoint_id: i64,
        subscription_id: i64,
    ) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| webhooks::delete_subscription(
            &tx,
            key_id,
            (endpoint_id, subscription_id)
        )
        .await?)
    }

    async fn claim_webhooks(
        &self,
        worker: i64,
        ask: ClaimAsk<'_>,
        now: Millis,
        stale_ms: i64,
    ) -> Result<Claim, StoreError> {
        in_transaction!(self, |tx| {
            webhooks::record_and_claim(&tx, worker, ask, now, stale_ms).await?
        })
    }

    async fn finish_webhooks(
        &self,
        worker: i64,
        results: &[Finished],
        now: Millis,
    ) -> Result<(), StoreError> {
        let ask = ClaimAsk {
            finished: results,
            ..ClaimAsk::default()
        };
        in_transaction!(self, |tx| {
            webhooks::record_and_claim(&tx, worker, ask, now, 0).await?;
        })
    }

    async fn next_webhook_at(&self) -> Result<Option<Millis>, StoreError> {
        in_transaction!(self, |tx| {
            plan_for_now(&tx).await?;
            webhooks::next_due(&tx).await?
        })
    }

    async fn webhook_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError> {
        in_transaction!(self, |tx| {
            plan_for_now(&tx).await?;
            webhooks::stats(&tx, now, stale_ms).await?
        })
    }

    async fn list_webhook_attempts(
        &self,
        endpoint_id: Option<i64>,
        outcome: Option<WebhookStatus>,
        limit: i64,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        webhooks::attempts(&self.client().await?, endpoint_id, outcome, limit).await
    }

    async fn replay_webhooks(
        &self,
        endpoint_id: i64,
        since: Millis,
        now: Millis,
    ) -> Result<Option<i64>, StoreError> {
        in_transaction!(self, |tx| webhooks::replay(&tx, endpoint_id, since, now)
            .await?)
    }

    async fn purge_webhooks(&self, before: Millis) -> Result<i64, StoreError> {
        in_transaction!(self, |tx| webhooks::purge(&tx, before).await?)
    }
}
