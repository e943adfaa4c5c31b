//! Bulk loading and unloading: an engine applies a stream of parsed records in one
//! transaction, and writes its whole database back out as the same records.

use crate::error::StoreError;
use crate::import::{ImportBatch, ImportError, ImportItem, ImportSummary, Record, parse_numbered};
use async_trait::async_trait;
use tokio::sync::mpsc;

#[async_trait]
pub trait ImportSink: Send + Sync + 'static {
    /// Applies the items in one transaction; commits only on `ImportItem::Commit`, so a reader
    /// that fails or stops half-way leaves nothing behind (`ImportError::Aborted`).
    async fn import(
        &self,
        items: mpsc::Receiver<ImportBatch>,
    ) -> Result<ImportSummary, ImportError>;

    /// True when no institution exists yet (the demo fills only an empty database).
    async fn is_empty(&self) -> Result<bool, StoreError>;

    /// Every record of the database, as an import file holds them (CONTRACT §5), from one
    /// snapshot, in an order an import accepts (institutions, locations, users, patients,
    /// conversations, messages; each by id), in batches to `out`; how many records. API keys,
    /// delivery records and idempotency keys have no record type and stay behind.
    async fn export(&self, out: mpsc::Sender<Vec<Record>>) -> Result<u64, StoreError>;
}

/// Imports records already in memory (the demo, tests): one transaction, committed at the end.
pub async fn import_records(
    sink: &dyn ImportSink,
    records: Vec<Record>,
) -> Result<ImportSummary, ImportError> {
    let mut items: Vec<ImportItem> = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| ImportItem::Record {
            line: u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1),
            record,
        })
        .collect();
    items.push(ImportItem::Commit);
    import_items(sink, items).await
}

/// Imports NDJSON text held in memory, with the file's line numbers in errors.
pub async fn import_text(sink: &dyn ImportSink, text: &str) -> Result<ImportSummary, ImportError> {
    let mut items = Vec::new();
    for (i, line_text) in text.lines().enumerate() {
        let line = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
        if let Some(item) = parse_numbered(line, line_text) {
            items.push(item?);
        }
    }
    items.push(ImportItem::Commit);
    import_items(sink, items).await
}

/// Hands items already in memory to the engine as one batch.
async fn import_items(
    sink: &dyn ImportSink,
    items: Vec<ImportItem>,
) -> Result<ImportSummary, ImportError> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(items);
    drop(tx);
    sink.import(rx).await
}

/// An export's records in batches of `BATCH`: `push` hands back a full batch to send.
#[derive(Default)]
pub struct RecordBatches {
    batch: Vec<Record>,
    count: u64,
}

impl RecordBatches {
    pub fn push(&mut self, record: Record) -> Option<Vec<Record>> {
        self.batch.push(record);
        self.count += 1;
        (self.batch.len() >= crate::import::BATCH).then(|| std::mem::take(&mut self.batch))
    }

    /// The last, partial batch and how many records there were in all.
    pub fn finish(self) -> (Vec<Record>, u64) {
        (self.batch, self.count)
    }
}

/// What an export's `out` closing early means.
pub fn export_closed() -> StoreError {
    StoreError::broken("the export's output closed before the end")
}
