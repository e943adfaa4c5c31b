//! The PostgreSQL engine of `convo`, behind `convo_core`'s store traits: several server
//! processes on one database, a schema keyed by institution so that it can be distributed later.
//!
//! tokio-postgres with a deadpool pool (the notes measured it at half sqlx's cost per statement,
//! and it pipelines); every statement is prepared once per connection (`prepare_cached`). Writes
//! run in READ COMMITTED transactions that are safe by construction (`ON CONFLICT`
//! find-or-create, `FOR UPDATE SKIP LOCKED` claims, advisory locks where a row to lock does not
//! exist yet) and are rerun on serialization failures and deadlocks.

mod bulk;
mod conversations;
mod copy;
mod cursors;
mod export;
mod import;
mod inbound;
mod keys;
mod messages;
mod outbox;
mod phones;
mod pipeline;
mod rows;
mod schema;
pub mod scratch;
mod store;
mod traits;
mod webhooks;

/// The migrations' SQL, in order (for tests that build a variant of the schema).
pub fn migrations() -> &'static [&'static str] {
    schema::MIGRATIONS
}
pub use store::{PgOptions, PgStore};

use convo_core::StoreError;

/// Whether `--database-url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Maps the driver's errors into the store's: a unique violation is a conflict (a write that
/// lost a race); everything else is a fault that keeps its source for the log. The driver's
/// errors never carry the connection's password.
pub(crate) fn db_error(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error()
        && *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
    {
        let what = db.table().unwrap_or("a unique key");
        return StoreError::Conflict(what.to_string());
    }
    StoreError::fault(PgFault(e))
}

/// The driver's error as the log reads it: tokio-postgres says only "db error" and keeps the
/// server's words in its source, so an operator saw "storage fault: db error" and nothing
/// more. This names the code and the message, and leaves out the DETAIL, which can quote a
/// row's values (a message body, a phone number) that have no place in a log.
#[derive(Debug)]
pub(crate) struct PgFault(pub(crate) tokio_postgres::Error);

impl std::fmt::Display for PgFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(
                f,
                "PostgreSQL {} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            ),
            None => match std::error::Error::source(&self.0) {
                Some(cause) => write!(f, "{}: {cause}", self.0),
                None => write!(f, "{}", self.0),
            },
        }
    }
}

impl std::error::Error for PgFault {}

/// The SQLSTATE of a fault that came from PostgreSQL.
pub(crate) fn sqlstate(e: &StoreError) -> Option<&tokio_postgres::error::SqlState> {
    let StoreError::Fault(source) = e else {
        return None;
    };
    source.downcast_ref::<PgFault>()?.0.code()
}

/// A fault worth running the whole transaction again for: PostgreSQL gave up on it to keep
/// transactions apart (a serialization failure or a deadlock), not because it was wrong.
pub(crate) fn is_transient(e: &StoreError) -> bool {
    use tokio_postgres::error::SqlState;
    sqlstate(e).is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

pub(crate) trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for Result<T, tokio_postgres::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use super::is_postgres_url;

    #[test]
    fn database_urls() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url(
            "postgresql://u:p@h:5433/db?sslmode=disable"
        ));
        assert!(!is_postgres_url("sqlite://convo.db"));
        assert!(!is_postgres_url("/tmp/postgres.db"));
    }
}
