//! Message webhooks (CONTRACT §8): what a delivery is signed with and where it may go. The
//! management routes, the store's events and deliveries, and the delivery worker build on
//! these.

pub mod address;
pub mod sign;
