//! The SQLite engine of `convo`, behind `convo_core`'s store traits: the embedded default.

pub mod sqlite;

pub use sqlite::{SqliteOptions, SqliteStore};

/// Parses `--database-url`: `sqlite://PATH`, `sqlite:PATH` or a plain path.
/// Returns `None` for URLs of other engines.
pub fn sqlite_path(url: &str) -> Option<&str> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        Some(rest)
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        Some(rest)
    } else if url.contains("://") {
        None
    } else {
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn database_urls() {
        assert_eq!(sqlite_path("sqlite://./convo.db"), Some("./convo.db"));
        assert_eq!(
            sqlite_path("sqlite:///var/lib/convo.db"),
            Some("/var/lib/convo.db")
        );
        assert_eq!(sqlite_path("sqlite:convo.db"), Some("convo.db"));
        assert_eq!(sqlite_path("/tmp/x.db"), Some("/tmp/x.db"));
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }
}
