//! The NDJSON import format (CONTRACT §5 and §7): one record per line, `type` first.
//!
//! This module turns a line into a typed record or a reason, and names what an import wrote or
//! why it was refused; the store checks references and integrity rules against what is already
//! written (`store::ImportSink`).

mod record;

pub use record::*;

use crate::error::StoreError;

/// What the reader hands the store, in file order.
// Nearly every item is a record; boxing it would add an allocation per line for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ImportItem {
    Record {
        line: u64,
        record: Record,
    },
    /// The whole input was read and parsed: commit.
    Commit,
}

/// Items travel to the store in batches: one channel hand-off (and thread wake-up) per item
/// was most of a big import's system time.
pub type ImportBatch = Vec<ImportItem>;

/// Items per batch: big enough to amortise the hand-off, small enough to keep memory flat.
pub const BATCH: usize = 512;

/// What an import wrote, by record type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub institutions: u64,
    pub locations: u64,
    pub patients: u64,
    pub users: u64,
    pub conversations: u64,
    pub messages: u64,
}

/// Why an import was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("the input ended before the import was committed")]
    Aborted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One line of an import file as the store wants it: `None` for a blank line, the record, or
/// `line N: reason`.
pub fn parse_numbered(line: u64, text: &str) -> Option<Result<ImportItem, ImportError>> {
    if text.trim().is_empty() {
        return None;
    }
    Some(
        Record::parse_line(text)
            .map(|record| ImportItem::Record { line, record })
            .map_err(|reason| ImportError::Line { line, reason }),
    )
}

#[cfg(test)]
mod tests;
