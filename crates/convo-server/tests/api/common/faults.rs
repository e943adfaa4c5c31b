//! A store that fails on command, around any engine's: the server's answers to a database
//! that breaks (readiness, a worker that cannot record an attempt) are the server's behaviour,
//! tested without reaching into an engine's files.

use async_trait::async_trait;
use convo_core::import::{ImportBatch, ImportError, ImportSummary, Record};
use convo_core::outbox::{Attempt, Delivery, DeliveryRecord, DeliveryStatus, OutboxStats};
use convo_core::store::prelude::*;
use convo_core::webhook::{
    AttemptRecord, Claim, ClaimAsk, Endpoint, EndpointPatch, Finished, Subscription,
    SubscriptionFilter, SubscriptionPatch, WebhookEvent, WebhookStatus,
};
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

/// Impls of a store trait for `Faulty` whose listed methods hand the call to the wrapped store;
/// methods written out after the list are the ones that can fail on command.
macro_rules! delegate {
    ($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* } $($own:tt)*) => {
        #[async_trait]
        impl $trait for Faulty {
            $(async fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.inner.$name($($arg),*).await
            })*
            $($own)*
        }
    };
}

delegate!(KeyStore {
    fn key_is_live(&self, key_id: i64) -> Result<bool, StoreError>;
    fn access(&self, key_id: i64, subdomain: &str, location_id: i64)
        -> Result<Result<TenantCtx, Denied>, StoreError>;
    fn authenticate_key(&self, raw_key: &str) -> Result<Option<i64>, StoreError>;
    fn jwt_secret(&self) -> Result<Vec<u8>, StoreError>;
    fn create_api_key(&self, subdomains: &[String]) -> Result<NewApiKey, StoreError>;
    fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError>;
    fn revoke_api_key(&self, key_id: i64) -> Result<bool, StoreError>;
});

delegate!(ConversationStore {
    fn list_conversations(&self, tenant: &TenantCtx, query: &ListQuery)
        -> Result<ConversationPage, StoreError>;
    fn get_conversation(&self, tenant: &TenantCtx, id: i64, messages: Option<&MessageQuery>)
        -> Result<Option<Conversation>, StoreError>;
    fn send_message(&self, tenant: &TenantCtx, message: NewMessage) -> Result<Message, StoreError>;
    fn mark_seen(&self, tenant: &TenantCtx, message_id: i64, user_id: i64)
        -> Result<Message, StoreError>;
    fn receive_sms(&self, sms: InboundSms) -> Result<InboundOutcome, StoreError>;
});

delegate!(ImportSink {
    fn import(&self, items: mpsc::Receiver<ImportBatch>) -> Result<ImportSummary, ImportError>;
    fn is_empty(&self) -> Result<bool, StoreError>;
    fn export(&self, out: mpsc::Sender<Vec<Record>>) -> Result<u64, StoreError>;
});

delegate!(OutboxStore {
    fn update_delivery(&self, delivery_id: Option<i64>, provider_id: &str,
        status: DeliveryStatus, error: Option<String>) -> Result<bool, StoreError>;
    fn register_worker(&self) -> Result<i64, StoreError>;
    fn heartbeat_worker(&self, worker: i64) -> Result<(), StoreError>;
    fn retire_worker(&self, worker: i64) -> Result<(), StoreError>;
    fn claim_deliveries(&self, worker: i64, now: Millis, stale_ms: i64, limit: i64)
        -> Result<Vec<Delivery>, StoreError>;
    fn next_delivery_at(&self) -> Result<Option<Millis>, StoreError>;
    fn outbox_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError>;
    fn list_deliveries(&self, status: Option<DeliveryStatus>, limit: i64)
        -> Result<Vec<DeliveryRecord>, StoreError>;
    fn retry_delivery(&self, id: i64) -> Result<(), StoreError>;
}
    // Recording an attempt can be made to fail.
    async fn finish_delivery(&self, worker: i64, id: i64, attempt: Attempt) -> Result<(), StoreError> {
        if self.faults.finish.load(Ordering::SeqCst) {
            return Err(StoreError::broken("disk full"));
        }
        self.inner.finish_delivery(worker, id, attempt).await
    }
);

delegate!(WebhookStore {
    fn institution_for_key(&self, key_id: i64, subdomain: &str)
        -> Result<Result<i64, Denied>, StoreError>;
    fn create_endpoint(&self, key_id: i64, target_url: &str, secret_key: &str, active: bool)
        -> Result<Endpoint, StoreError>;
    fn list_endpoints(&self, key_id: i64, active: Option<bool>)
        -> Result<Vec<Endpoint>, StoreError>;
    fn update_endpoint(&self, key_id: i64, endpoint_id: i64, patch: &EndpointPatch)
        -> Result<Option<Endpoint>, StoreError>;
    fn delete_endpoint(&self, key_id: i64, endpoint_id: i64) -> Result<bool, StoreError>;
    fn list_subscriptions(&self, key_id: i64, endpoint_id: i64, filter: &SubscriptionFilter)
        -> Result<Option<Vec<Subscription>>, StoreError>;
    fn create_subscription(&self, key_id: i64, endpoint_id: i64, institution_id: i64,
        event: WebhookEvent, active: bool) -> Result<Option<Subscription>, StoreError>;
    fn update_subscription(&self, key_id: i64, endpoint_id: i64, subscription_id: i64,
        institution_id: i64, patch: &SubscriptionPatch)
        -> Result<Option<Subscription>, StoreError>;
    fn delete_subscription(&self, key_id: i64, endpoint_id: i64, subscription_id: i64)
        -> Result<bool, StoreError>;
    fn claim_webhooks(&self, worker: i64, ask: ClaimAsk<'_>, now: Millis, stale_ms: i64)
        -> Result<Claim, StoreError>;
    fn finish_webhooks(&self, worker: i64, results: &[Finished], now: Millis)
        -> Result<(), StoreError>;
    fn next_webhook_at(&self) -> Result<Option<Millis>, StoreError>;
    fn webhook_stats(&self, now: Millis, stale_ms: i64) -> Result<OutboxStats, StoreError>;
    fn list_webhook_attempts(&self, endpoint_id: Option<i64>, outcome: Option<WebhookStatus>,
        limit: i64) -> Result<Vec<AttemptRecord>, StoreError>;
    fn replay_webhooks(&self, endpoint_id: i64, since: Millis, now: Millis)
        -> Result<Option<i64>, StoreError>;
    fn purge_webhooks(&self, before: Millis) -> Result<i64, StoreError>;
});

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
