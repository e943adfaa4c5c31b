//! The pure heart of `convo`: domain types, the contract's rules (parameter parsing, date formats,
//! time-zone rendering, names, message bodies) and the store traits every storage engine
//! implements. No I/O.

pub mod cursor;
pub mod dataset;
pub mod error;
pub mod import;
pub mod model;
pub mod outbox;
pub mod params;
pub mod phone;
pub mod secret;
pub mod store;
pub mod time;
pub mod tz;
pub mod webhook;
pub mod write;

pub use model::*;
pub use secret::Secret;
pub use store::{
    ConversationStore, Denied, ImportSink, KeyStore, ListQuery, Maintenance, MessageQuery, Missing,
    OutboxStore, Refusal, Store, StoreError, TenantCtx, WebhookStore,
};
pub use time::{Instant, Millis};
