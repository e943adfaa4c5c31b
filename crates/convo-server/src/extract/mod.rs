//! Everything a handler needs checked before its own logic, as extractors in the contract's
//! order: the API version (404), the bearer token (401, 429), the body (415, 413, 408), the
//! parameters and the body's rules (400), the subdomain (403) and the location (404); and for
//! Twilio's webhooks, a signed form.

mod bearer;
mod body;
mod scoped;
mod twilio_form;
mod version;

pub use bearer::{BAD_TOKEN, BearerKey};
pub use body::json_body;
pub use scoped::{Checked, Scoped, ScopedJson};
pub use twilio_form::SignedForm;
pub use version::ApiVersion;
