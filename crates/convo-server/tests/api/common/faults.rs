//! A store that fails on command, around any engine's: the server's answers to a database
//! that breaks (readiness, a worker that cannot record an attempt) are the server's behaviour,
//! tested without reaching into an engine's files.

use async_trait::async_trait;
use convo_core::import::{ImportBatch, ImportError, ImportSummary};
use convo_core::outbox::{Attempt, Delivery, DeliveryRecord, DeliveryStatus, OutboxStats};
use convo_core::store::prelude::*;
use convo_core::write::{InboundOutcome, InboundSms, NewMessage};
use convo_core::{
    ApiKeyInfo, Conversation, ConversationPage, Denied, ListQuery, Message, MessageQuery, Millis,
    NewApiKey, StoreError, TenantCtx,
};
use convo_store_tests::Db;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What the wrapped store is to fail, set while the test runs.
#[derive(Default)]
pub struct Faults {
    /// `check_ready` answers this instead of asking the database.
    pub ready: Mutex<Option<fn() -> StoreError>>,
    /// `finish_delivery` fails (as on a full disk).
    pub finish: AtomicBool,
}

impl Faults {
    pub fn fail_ready(&self, error: fn() -> StoreError) {
        *self.ready.lock().expect("lock") = Some(error);
    }

    pub fn fail_finish(&self, on: bool) {
        self.finish.store(on, Ordering::SeqCst);
    }
}

pub struct Faulty {
    inner: Arc<dyn Store>,
    faults: Arc<Faults>,
}

/// `db` with its store wrapped, and the switches.
pub fn wrap(db: Db) -> (Db, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let store = Arc::new(Faulty {
        inner: db.store.clone(),
        faults: faults.clone(),
    });
    (Db::new(store, db), faults)
}

#[async_trait]
impl KeyStore for Faulty {
    async fn key_is_live(&self, key_id: i64) -> Result<bool, StoreError> {
        self.inner.key_is_live(key_id).await
    }
    async fn access(
        &self,
        key_id: i64,
        subdomain: &str,
        location_id: i64,
    ) -> Result<Result<TenantCtx, Denied>, StoreError> {
        self.inner.access(key_id, subdomain, location_id).await
    }
    async fn authenticate_key(&self, raw_key: &str) -> Result<Option<i64>, StoreError> {
        self.inner.authenticate_key(raw_key).await
    }
    async fn jwt_secret(&self) -> Result<Vec<u8>, StoreError> {
        self.inner.jwt_secret().await
    }
    async fn create_api_key(&self, subdomains: &[String]) -> Result<NewApiKey, StoreError> {
        self.inner.create_api_key(subdomains).await
    }
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.inner.list_api_keys().await
    }
    async fn revoke_api_key(&self, key_id: i64) -> Result<bool, StoreError> {
        self.inner.revoke_api_key(key_id).await
    }
}

#[async_trait]
impl ConversationStore for Faulty {
    async fn list_conversations(
        &self,
        tenant: &TenantCtx,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError> {
        self.inner.list_conversations(tenant, query).await
    }
    async fn get_conversation(
        &self,
        tenant: &TenantCtx,
        id: i64,
        messages: Option<&MessageQuery>,
    ) -> Result<Option<Conversation>, StoreError> {
        self.inner.get_conversation(tenant, id, messages).await
    }
    async fn send_message(
        &self,
        tenant: &TenantCtx,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        self.inner.send_message(tenant, message).await
    }
    async fn mark_seen(
        &self,
        tenant: &TenantCtx,
        message_id: i64,
        user_id: i64,
    ) -> Result<Message, StoreError> {
        self.inner.mark_seen(tenant, message_id, user_id).await
    }
    async fn receive_sms(&self, sms: InboundSms) -> Result<InboundOutcome, StoreError> {
        self.inner.receive_sms(sms).await
    }
}

#[async_trait]
impl OutboxStore for Faulty {
    async fn update_delivery(
        &self,
        delivery_id: Option<i64>,
        provider_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        self.inner
            .update_delivery(delivery_id, provider_id, status, error)
            .await
    }
    async fn register_worker(&self) -> Result<i64, StoreError> {
        self.inner.register_worker().await
    }
    async fn heartbeat_worker(&self, worker: i64) -> Result<(), StoreError> {
        self.inner.heartbeat_worker(worker).await
    }
    async fn retire_worker(&self, worker: i64) -> Result<(), StoreError> {
        self.inner.retire_worker(worker).await
    }
    async fn claim_deliveries(
        &self,
        worker: i64,
        now: Millis,
        stale_ms: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.inner
            .claim_deliveries(worker, now, stale_ms, limit)
            .await
    }
    async fn finish_delivery(
        &self,
        worker: i64,
        id: i64,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        if self.faults.finish.load(Ordering::SeqCst) {
            return Err(StoreError::broken("disk full"));
        }
        self.inner.finish_delivery(worker, id, attempt).await
    }
    async fn next_delivery_at(&self) -> Result<Option<Millis>, StoreError> {
        self.inner.next_delivery_at().await
    }
    async fn outbox_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError> {
        self.inner.outbox_stats(now, stale_ms).await
    }
    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.list_deliveries(status, limit).await
    }
    async fn retry_delivery(&self, id: i64) -> Result<(), StoreError> {
        self.inner.retry_delivery(id).await
    }
}

#[async_trait]
impl ImportSink for Faulty {
    async fn import(
        &self,
        items: mpsc::Receiver<ImportBatch>,
    ) -> Result<ImportSummary, ImportError> {
        self.inner.import(items).await
    }
    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.inner.is_empty().await
    }
}

#[async_trait]
impl Maintenance for Faulty {
    async fn check_ready(&self) -> Result<(), StoreError> {
        let fail = *self.faults.ready.lock().expect("lock");
        match fail {
            Some(error) => Err(error()),
            None => self.inner.check_ready().await,
        }
    }
    async fn optimize(&self) -> Result<(), StoreError> {
        self.inner.optimize().await
    }
    async fn backup(&self, dest: &Path) -> Result<u64, StoreError> {
        self.inner.backup(dest).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
