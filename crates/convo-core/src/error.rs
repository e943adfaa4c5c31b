//! How a store call can fail, in terms every engine shares: the contract's client-facing
//! sentences are worded here once, so a second engine cannot drift from the first.

use crate::outbox::DeliveryStatus;
use std::fmt;

/// Boxed so an engine's own error (rusqlite's, tokio-postgres's, an I/O error) keeps its chain
/// for the log without core knowing the engine.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A rule of the contract or of the operator's command refused the request (a 400 on the
    /// API). The wording is the contract's.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// Something the request names does not exist for this tenant (a 404).
    #[error("{0}")]
    NotFound(#[from] Missing),
    /// A write lost a race the engine could not settle by itself (a unique key taken by a
    /// concurrent write). Engines retry what they can; this reaches a client as a 409.
    #[error("a concurrent write conflicted on {0}; try again")]
    Conflict(String),
    /// A fault of the engine, the disk or the network; the source is for the log, never for a
    /// client.
    #[error("storage fault: {0}")]
    Fault(Source),
}

impl StoreError {
    /// A fault from anything that is an error.
    pub fn fault(e: impl Into<Source>) -> Self {
        StoreError::Fault(e.into())
    }

    /// A fault described in words (an invariant the engine found broken).
    pub fn broken(what: impl Into<String>) -> Self {
        StoreError::Fault(what.into().into())
    }
}

/// Why a store refused: one variant per sentence of the contract (CONTRACT §6) or of an
/// operator command. `Display` is the sentence a client or operator reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("patient_id {0} is not a patient of this institution")]
    PatientNotInInstitution(i64),
    #[error("user_id {0} is not a staff user of this institution")]
    UserNotStaff(i64),
    #[error("Patient has unsubscribed from SMS")]
    Unsubscribed,
    #[error("Patient has no phone number to text")]
    NoPatientPhone,
    #[error("Location has no phone number to text from")]
    NoLocationPhone,
    #[error("Idempotency-Key was already used for a different message")]
    IdempotencyKeyReused,
    /// An inbound SMS whose `From` is not a phone number.
    #[error("From is not a phone number")]
    FromNotAPhone,
    #[error("a key needs at least one subdomain")]
    NoSubdomains,
    #[error("no institution has the subdomain `{0}`")]
    UnknownSubdomain(String),
    #[error(
        "delivery {id} is {status}: only failed or undelivered deliveries can be retried",
        status = status.as_str()
    )]
    NotRetryable { id: i64, status: DeliveryStatus },
    #[error("delivery {0} is to a patient who has unsubscribed from SMS")]
    RetryUnsubscribed(i64),
    /// The database is owned by another server process (SQLite has one at a time).
    #[error(
        "another `convo serve` is running on {0}: a SQLite database has one server at a time \
         (use PostgreSQL for several)"
    )]
    DatabaseInUse(String),
    #[error("the database schema is version {found}, this server expects {expected}")]
    SchemaMismatch { found: i64, expected: i64 },
    #[error("{0} already exists; a backup never overwrites")]
    BackupExists(String),
    #[error("the backup path is not valid UTF-8")]
    BackupPathNotUtf8,
    #[error("cannot write the backup: {0}")]
    BackupFailed(String),
    /// Moving a subscription onto an endpoint that already has the same one.
    #[error("webhook endpoint {endpoint_id} already has this subscription (id {subscription_id})")]
    SubscriptionExists {
        endpoint_id: i64,
        subscription_id: i64,
    },
    /// An engine whose consistent copies are its own tools' job (PostgreSQL: `pg_dump`).
    #[error(
        "`convo backup` copies SQLite databases; back this database up with {0} (README: Backups)"
    )]
    BackupByEngineTools(&'static str),
}

/// What was not found, worded as the contract answers a 404.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("message {0} is not a message of this location")]
    Message(i64),
    /// An inbound SMS to a number no location has.
    #[error("To is not the number of any location")]
    LocationNumber,
    #[error("no delivery has id {0}")]
    Delivery(i64),
}

/// Why a bearer may not use a scope (CONTRACT §7's precedence: 401, then 403, then 404).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Unknown or revoked key: 401.
    Revoked,
    /// The key may not use that subdomain, or it does not exist: 403.
    Forbidden { subdomain: String },
    /// The location is not one of that institution's: 404.
    NoLocation { location_id: i64 },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Revoked => f.write_str("Bearer token is invalid, expired or revoked"),
            Denied::Forbidden { subdomain } => {
                write!(f, "This API key may not access subdomain {subdomain}")
            }
            Denied::NoLocation { location_id } => {
                write!(
                    f,
                    "location_id {location_id} is not a location of this institution"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_sentences() {
        assert_eq!(
            Refusal::PatientNotInInstitution(999).to_string(),
            "patient_id 999 is not a patient of this institution"
        );
        assert_eq!(
            StoreError::from(Refusal::Unsubscribed).to_string(),
            "Patient has unsubscribed from SMS"
        );
        assert_eq!(
            Refusal::NotRetryable {
                id: 4,
                status: DeliveryStatus::Sent
            }
            .to_string(),
            "delivery 4 is sent: only failed or undelivered deliveries can be retried"
        );
        assert_eq!(
            Denied::Forbidden {
                subdomain: "acme".into()
            }
            .to_string(),
            "This API key may not access subdomain acme"
        );
        assert_eq!(
            Missing::Message(7).to_string(),
            "message 7 is not a message of this location"
        );
    }
}
