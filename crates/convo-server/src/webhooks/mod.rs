//! Message webhooks (CONTRACT §8): what a delivery is signed with, where it may go, the client
//! that takes it there, when a failed one is tried again, and the worker that makes the
//! attempts. The management routes are in `routes::webhooks`; events and deliveries are the
//! store's.

pub mod address;
pub mod attempt;
pub mod client;
pub mod listen;
pub mod payload;
pub mod schedule;
pub mod sign;
pub mod worker;
