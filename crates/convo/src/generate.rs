//! `convo generate`: writes the benchmark's practice group as import NDJSON, streaming, with a
//! progress bar on a terminal.

use crate::CliError;
use crate::cli::GenerateArgs;
use convo_core::dataset::{Plan, Spec};
use convo_core::time::{OffsetRule, parse_datetime};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufWriter, Write};
use std::time::Instant;

pub fn run(args: &GenerateArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let until = parse_datetime(&args.until, OffsetRule::Required)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--until `{}` is not an RFC 3339 timestamp",
                args.until
            ))
        })?
        .floor_millis();
    let plan = Plan::new(Spec {
        conversations: args.conversations,
        seed: args.seed,
        until,
        days: args.days,
    });
    let sink: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(&args.out)
            .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", args.out.display())))?;
        Box::new(file)
    };
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    let bar = ProgressBar::new(plan.record_count() as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} records ({eta})",
    ) {
        bar.set_style(style);
    }
    let mut written = 0u64;
    plan.emit(|record| {
        serde_json::to_writer(&mut out, &record).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        written += 1;
        if written.is_multiple_of(16_384) {
            bar.set_position(written);
        }
        Ok::<_, std::io::Error>(())
    })?;
    out.flush()?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {written} records ({} conversations, {} messages) in {:.2} s",
        args.conversations,
        plan.message_count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
