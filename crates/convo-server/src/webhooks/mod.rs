//! Message webhooks (CONTRACT §8): what a delivery is signed with, where it may go, the client
//! that takes it there and when a failed one is tried again. The management routes, the
//! store's events and deliveries, and the delivery worker build on these.

pub mod address;
pub mod attempt;
pub mod client;
pub mod inflight;
pub mod listen;
pub mod payload;
pub mod schedule;
pub mod sign;
