//! The storage seam: small traits by concern, one method per use case, each owning its
//! transaction, tenant first. An engine implements every trait; `Store` is their sum, so the
//! server holds one `Arc<dyn Store>` and a test or a tool can ask for just the part it uses.

mod conversations;
mod import;
mod keys;
mod maintenance;
mod outbox;
mod webhooks;

pub use crate::error::{Denied, Missing, Refusal, StoreError};
pub use conversations::{ConversationStore, ListQuery, MessageQuery};
pub use import::{ImportSink, RecordBatches, export_closed, import_records, import_text};
pub use keys::{KeyStore, TenantCtx};
pub use maintenance::Maintenance;
pub use outbox::OutboxStore;
pub use webhooks::WebhookStore;

/// Everything an engine provides. Implemented for every type that implements the parts.
pub trait Store:
    KeyStore + ConversationStore + OutboxStore + WebhookStore + ImportSink + Maintenance
{
}

impl<T> Store for T where
    T: KeyStore + ConversationStore + OutboxStore + WebhookStore + ImportSink + Maintenance
{
}

/// The traits, for code that calls store methods through one `Store` value.
pub mod prelude {
    pub use super::{
        ConversationStore, ImportSink, KeyStore, Maintenance, OutboxStore, Store, WebhookStore,
    };
}
