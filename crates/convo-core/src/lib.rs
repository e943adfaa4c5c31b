//! The pure heart of `convo`: domain types, the contract's rules (parameter parsing, date formats,
//! time-zone rendering, names) and the `Store` trait every storage engine implements. No I/O.

pub mod cursor;
pub mod dataset;
pub mod import;
pub mod model;
pub mod params;
pub mod phone;
pub mod store;
pub mod time;
pub mod tz;
pub mod write;

pub use model::*;
pub use store::{Access, ListQuery, MessageQuery, Store, StoreError, TenantCtx};
pub use time::{Instant, Millis};
