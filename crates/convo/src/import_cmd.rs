//! `convo import FILE|-`: a reader thread parses lines and streams records to the store, which
//! applies them in one transaction. Memory stays flat whatever the file's size: a bounded
//! channel sits between the two.

use crate::CliError;
use convo_core::import::{BATCH, ImportBatch, ImportItem, parse_numbered};
use convo_core::import::{ImportError, ImportSummary};
use convo_core::store::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Parses `input` line by line into `tx`; the first bad line stops it with `line N: reason`.
pub fn read_records(
    input: impl Read,
    tx: &mpsc::Sender<ImportBatch>,
    progress: &ProgressBar,
) -> Result<(), ImportError> {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut buf = Vec::with_capacity(1024);
    let mut line = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| ImportError::Line {
                line: line + 1,
                reason: format!("cannot read: {e}"),
            })?;
        if n == 0 {
            break;
        }
        line += 1;
        progress.inc(n as u64);
        let text = std::str::from_utf8(&buf).map_err(|_| ImportError::Line {
            line,
            reason: "not valid UTF-8".into(),
        })?;
        let Some(item) = parse_numbered(line, text) else {
            continue;
        };
        batch.push(item?);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.blocking_send(full).is_err() {
                // The store stopped (it refused a record); its error is the one to report.
                return Ok(());
            }
        }
    }
    batch.push(ImportItem::Commit);
    let _ = tx.blocking_send(batch);
    Ok(())
}

fn progress_bar(len: Option<u64>) -> ProgressBar {
    // indicatif draws only when stderr is a terminal, so logs and CI output stay clean.
    match len {
        Some(len) => {
            let bar = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta})",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => ProgressBar::new_spinner(),
    }
}

/// Runs a whole import from `source` (a reader) and reports its summary or first error.
pub async fn import_from(
    store: Arc<dyn Store>,
    source: Box<dyn Read + Send>,
    progress: ProgressBar,
) -> Result<ImportSummary, ImportError> {
    let (tx, rx) = mpsc::channel(8);
    let bar = progress.clone();
    let reader = tokio::task::spawn_blocking(move || read_records(source, &tx, &bar));
    let stored = store.import(rx).await;
    let read = reader.await.unwrap_or(Err(ImportError::Aborted));
    progress.finish_and_clear();
    // A parse error explains an aborted store import better than "aborted" does.
    read?;
    stored
}

pub async fn run(store: Arc<dyn Store>, file: &Path) -> Result<(), CliError> {
    let started = Instant::now();
    let (source, len): (Box<dyn Read + Send>, Option<u64>) = if file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let summary = import_from(store, source, progress_bar(len)).await?;
    println!(
        "imported {} institutions, {} locations, {} patients, {} users, {} conversations, {} messages in {:.2} s",
        summary.institutions,
        summary.locations,
        summary.patients,
        summary.users,
        summary.conversations,
        summary.messages,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
