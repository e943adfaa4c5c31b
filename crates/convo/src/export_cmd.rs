//! `convo export [--out FILE|-]`: the whole database as import NDJSON (CONTRACT §5 and §9), the
//! way to move a practice from SQLite to PostgreSQL. The store reads one snapshot and streams
//! batches through a bounded channel, so memory stays flat; a file appears only once complete
//! (written beside it, synced, renamed), and an existing one is never overwritten.

use crate::CliError;
use convo_core::store::prelude::*;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

pub async fn run(store: Arc<dyn Store>, out: &Path) -> Result<(), CliError> {
    let to_stdout = out == Path::new("-");
    if !to_stdout && out.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists; an export never overwrites",
            out.display()
        )));
    }
    let partial = {
        let mut p = out.as_os_str().to_owned();
        p.push(".partial");
        PathBuf::from(p)
    };
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel(4);
    let exporting = tokio::spawn({
        let store = store.clone();
        async move { store.export(tx).await }
    });
    let mut writer: BufWriter<Box<dyn Write + Send>> = BufWriter::with_capacity(
        1 << 16,
        if to_stdout {
            Box::new(std::io::stdout())
        } else {
            Box::new(File::create(&partial)?)
        },
    );
    let written = async {
        while let Some(batch) = rx.recv().await {
            for record in batch {
                serde_json::to_writer(&mut writer, &record).map_err(std::io::Error::other)?;
                writer.write_all(b"\n")?;
            }
        }
        writer.flush()
    }
    .await;
    // A failed write closes the channel, which stops the export: report the write first.
    let read = exporting
        .await
        .map_err(|e| CliError::Usage(format!("the export stopped: {e}")))?;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    let count = match read {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    drop(writer);
    if !to_stdout {
        File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, out)?;
    }
    eprintln!(
        "exported {count} records from {} in {:.1} s{}",
        store.describe(),
        started.elapsed().as_secs_f64(),
        if to_stdout {
            String::new()
        } else {
            format!(" to {}", out.display())
        }
    );
    Ok(())
}
