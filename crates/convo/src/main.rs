//! `convo`: the binary. Parses the command line, sets up logging, opens the store and runs the
//! subcommand; everything else lives in the library crates.

mod cli;
mod demo;
mod export_cmd;
mod generate;
mod import_cmd;
mod serve;
mod sms_cmd;

use clap::Parser;
use cli::{ApiKeyCommand, Cli, Command, DeliveriesCommand, LogFormat};
use convo::db::{ConnectError, connect_with};
use convo_core::StoreError;
use convo_core::store::prelude::*;
use std::process::ExitCode;

/// A server allocates and frees a few hundred small buffers per request (rows, strings, the
/// body); mimalloc's per-thread free lists do that without glibc's locking and consolidation,
/// which stood at ~15 % of the server's profile (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] convo_core::StoreError),
    #[error(transparent)]
    Import(#[from] convo_core::import::ImportError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<ConnectError> for CliError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Url(m) => CliError::Usage(m.into()),
            ConnectError::Store(e) => CliError::Store(e),
        }
    }
}

impl From<convo_server::RunError> for CliError {
    fn from(e: convo_server::RunError) -> Self {
        match e {
            convo_server::RunError::Store(e) => usage(e),
            convo_server::RunError::Io(e) => CliError::Io(e),
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let database = cli.database();
    match cli.command {
        Command::Serve(args) => serve::run(&cli.database_url, &database, args).await,
        Command::Demo(args) => {
            let store = connect_with(&cli.database_url, &database).await?;
            demo::seed_and_print(store, &args.listen, &args.tokens).await
        }
        Command::Import { file } => {
            let store = connect_with(&cli.database_url, &database).await?;
            import_cmd::run(store, &file).await
        }
        Command::Export { out } => {
            let store = connect_with(&cli.database_url, &database).await?;
            export_cmd::run(store, &out).await
        }
        Command::Generate(args) => generate::run(&args),
        Command::Sms(cli::SmsCommand::Inbound(args)) => sms_cmd::inbound(&args).await,
        Command::ApiKey(cmd) => {
            let store = connect_with(&cli.database_url, &database).await?;
            api_key(store.as_ref(), cmd).await
        }
        Command::Deliveries(cmd) => {
            let store = connect_with(&cli.database_url, &database).await?;
            deliveries(store.as_ref(), cmd).await
        }
        Command::Backup { file } => {
            let store = connect_with(&cli.database_url, &database).await?;
            let started = std::time::Instant::now();
            eprintln!("backing up {} to {}", store.describe(), file.display());
            let bytes = store.backup(&file).await.map_err(usage)?;
            eprintln!(
                "backup written: {} ({:.1} MB in {:.1} s, integrity checked)",
                file.display(),
                bytes as f64 / 1_048_576.0,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Webhooks(cli::WebhooksCommand::Listen { port, secret }) => {
            webhooks_listen(port, secret).await
        }
        Command::Webhooks(cmd) => {
            let store = connect_with(&cli.database_url, &database).await?;
            webhooks(store.as_ref(), cmd).await
        }
        Command::Migrate => {
            connect_with(&cli.database_url, &database).await?;
            eprintln!("database is up to date");
            Ok(())
        }
    }
}

/// `convo webhooks listen`: lines on stdout until interrupted.
async fn webhooks_listen(port: u16, secret: String) -> Result<(), CliError> {
    use convo_server::webhooks::listen;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let at = listener.local_addr()?;
    eprintln!("listening for webhook deliveries on http://{at}/ (Ctrl-C stops)");
    let server = tokio::spawn(listen::serve(listener, listen::router(secret, tx)));
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => println!("{line}"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    server.abort();
    Ok(())
}

async fn webhooks(store: &dyn WebhookStore, cmd: cli::WebhooksCommand) -> Result<(), CliError> {
    match cmd {
        cli::WebhooksCommand::Deliveries {
            endpoint,
            status,
            limit,
        } => {
            let attempts = store.list_webhook_attempts(endpoint, status, limit).await?;
            println!(
                "{:<8} {:<24} {:<8} {:<8} {:<12} {:<16} {:<9} {:<6} {:<7} error",
                "attempt",
                "at",
                "endpoint",
                "delivery",
                "event_id",
                "event",
                "outcome",
                "http",
                "ms"
            );
            for a in attempts {
                println!(
                    "{:<8} {:<24} {:<8} {:<8} {:<12} {:<16} {:<9} {:<6} {:<7} {}",
                    a.id,
                    a.at.to_utc_string(),
                    a.endpoint_id,
                    a.delivery_id,
                    format!("evt_{}", a.event_id),
                    a.event.as_str(),
                    a.outcome.as_str(),
                    a.http_status.map_or_else(|| "-".into(), |s| s.to_string()),
                    a.took_ms,
                    a.error.as_deref().unwrap_or("-")
                );
            }
        }
        cli::WebhooksCommand::Replay { endpoint, since } => {
            let at =
                convo_core::time::parse_datetime(&since, convo_core::time::OffsetRule::Required)
                    .ok_or_else(|| {
                        CliError::Usage(format!(
                            "--since {since} is not an RFC 3339 time such as 2026-12-01T00:00:00Z"
                        ))
                    })?;
            let now = convo_core::Millis::now();
            let Some(queued) = store
                .replay_webhooks(endpoint, at.ceil_millis(), now)
                .await?
            else {
                return Err(CliError::Usage(format!(
                    "no webhook endpoint has id {endpoint}"
                )));
            };
            eprintln!("queued {queued} events again for endpoint {endpoint}");
        }
        cli::WebhooksCommand::Listen { .. } => {}
    }
    Ok(())
}

async fn api_key(store: &dyn KeyStore, cmd: ApiKeyCommand) -> Result<(), CliError> {
    match cmd {
        ApiKeyCommand::Create { subdomains } => {
            let key = store.create_api_key(&subdomains).await.map_err(usage)?;
            println!("{}", key.raw);
            eprintln!("created API key {} for {}", key.id, subdomains.join(", "));
        }
        ApiKeyCommand::List => {
            println!(
                "{:<6} {:<24} {:<8} subdomains",
                "id", "created_at", "revoked"
            );
            for k in store.list_api_keys().await? {
                println!(
                    "{:<6} {:<24} {:<8} {}",
                    k.id,
                    k.created_at.to_utc_string(),
                    if k.revoked_at.is_some() { "yes" } else { "no" },
                    k.subdomains.join(",")
                );
            }
        }
        ApiKeyCommand::Revoke { key_id } => {
            if !store.revoke_api_key(key_id).await? {
                return Err(CliError::Usage(format!("no API key has id {key_id}")));
            }
            eprintln!("revoked API key {key_id}");
        }
    }
    Ok(())
}

async fn deliveries(store: &dyn OutboxStore, cmd: DeliveriesCommand) -> Result<(), CliError> {
    match cmd {
        DeliveriesCommand::List { status, limit } => {
            let records = store.list_deliveries(status, limit).await?;
            println!(
                "id\tmessage_id\tinstitution_id\tlocation_id\tstatus\tattempts\tnext_attempt_at\tprovider_id\terror"
            );
            for d in records {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    d.id,
                    d.message_id,
                    d.institution_id,
                    d.location_id,
                    d.status.as_str(),
                    d.attempts,
                    d.next_attempt_at.map_or("-".into(), |t| t.to_utc_string()),
                    d.provider_id.as_deref().unwrap_or("-"),
                    d.error.as_deref().unwrap_or("-"),
                );
            }
        }
        DeliveriesCommand::Retry { id } => {
            store.retry_delivery(id).await.map_err(usage)?;
            eprintln!("delivery {id} is queued again");
        }
    }
    Ok(())
}

/// An operator's mistake (a refusal, something missing) is a usage error with the store's
/// sentence; a fault stays a fault.
fn usage(e: StoreError) -> CliError {
    match e {
        StoreError::Refused(r) => CliError::Usage(r.to_string()),
        StoreError::NotFound(m) => CliError::Usage(m.to_string()),
        other => other.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
