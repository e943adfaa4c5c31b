//! The HTTP suite, one binary (zero2prod's `tests/api/main.rs`): the real router and worker on
//! a fresh database of the engine under test, observed only through the API and the store
//! traits, so every engine answers the same suite.

mod common;
mod conversations;
mod errors_and_auth;
mod front_door;
mod ops;
mod outbox;
mod robustness;
mod webhooks;
mod write;
