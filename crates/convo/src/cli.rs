//! The command line: one struct serves flags and `CONVO_*` environment variables.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub use convo_core::Secret;
use convo_core::outbox::DeliveryStatus;
use convo_core::webhook::WebhookStatus;

#[derive(Parser, Debug)]
#[command(
    name = "convo",
    version,
    about = "Self-hostable server for patient conversations that speaks NexHealth's API"
)]
pub struct Cli {
    /// Database: `sqlite://PATH`, `sqlite:PATH` or a plain file path (created and migrated on
    /// first use), or `postgres://USER:PASSWORD@HOST:PORT/DB` (also `postgresql://`; the
    /// schema is created on first use, once however many processes start together).
    #[arg(
        long,
        env = "CONVO_DATABASE_URL",
        default_value = "sqlite://./convo.db",
        global = true
    )]
    pub database_url: String,

    /// PostgreSQL: connections per process (0: four per core). Every process opens its own
    /// pool, so processes × pool size must stay below the server's `max_connections`.
    #[arg(
        long,
        env = "CONVO_DATABASE_POOL_SIZE",
        default_value_t = 0,
        global = true
    )]
    pub database_pool_size: usize,

    /// PostgreSQL: seconds a request waits for a free connection before it fails.
    #[arg(
        long,
        env = "CONVO_DATABASE_ACQUIRE_TIMEOUT",
        default_value_t = 10,
        global = true
    )]
    pub database_acquire_timeout: u64,

    /// PostgreSQL: the longest one statement may run, in seconds (0: the server's setting).
    #[arg(
        long,
        env = "CONVO_DATABASE_STATEMENT_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub database_statement_timeout: u64,

    /// Log format on stderr.
    #[arg(long, env = "CONVO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The database flags, for `convo::db::connect_with`.
    pub fn database(&self) -> convo::db::DbOptions {
        use std::time::Duration;
        convo::db::DbOptions {
            pool_size: self.database_pool_size,
            acquire_timeout: Duration::from_secs(self.database_acquire_timeout.max(1)),
            statement_timeout: (self.database_statement_timeout > 0)
                .then(|| Duration::from_secs(self.database_statement_timeout)),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API.
    Serve(ServeArgs),
    /// Fill an empty database with a demo practice and print a key and a ready curl line.
    Demo(DemoArgs),
    /// Load NDJSON records (see README) from FILE, or from stdin with `-`; all or nothing.
    Import {
        /// The NDJSON file, or `-` for standard input.
        file: PathBuf,
    },
    /// Write the whole database as import NDJSON (to move it to another engine: import the file
    /// into an empty database); API keys and delivery records stay behind.
    Export {
        /// Where to write it (it must not exist yet), or `-` for standard output.
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Write a practice group's dataset as import NDJSON (deterministic from the seed).
    Generate(GenerateArgs),
    /// Act as Twilio against a running server (try the write side without a phone).
    #[command(subcommand)]
    Sms(SmsCommand),
    /// Manage API keys.
    #[command(name = "api-key", subcommand)]
    ApiKey(ApiKeyCommand),
    /// Outgoing SMS: see their delivery records, send a failed one again.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Message webhooks: try them out.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Write a consistent copy of the (live) database to FILE: safe while a server writes.
    Backup {
        /// Where the copy goes; it must not exist yet.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum SmsCommand {
    /// Sign and post an inbound-SMS webhook, as Twilio would, with the configured auth token.
    Inbound(InboundArgs),
}

#[derive(Args, Debug)]
pub struct InboundArgs {
    /// The patient's number.
    #[arg(long)]
    pub from: String,
    /// The location's number.
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub body: String,
    /// The provider message id; a fresh one by default (repeat one to see idempotency).
    #[arg(long)]
    pub sid: Option<String>,
    /// The server to post to.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The server's public base URL, when it has one: the signature covers it.
    #[arg(long, env = "CONVO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Twilio's auth token, as the server is configured with.
    #[arg(long, env = "CONVO_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Secret,
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create a key; prints the raw key alone on stdout (shown once) and its id on stderr.
    Create {
        /// An institution's subdomain this key may use; repeat for several.
        #[arg(long = "subdomain", required = true)]
        subdomains: Vec<String>,
    },
    /// List keys: id, subdomains, creation time, revoked or not (never the key itself).
    List,
    /// Revoke a key: its tokens stop working at once.
    Revoke {
        /// The key's id (from `api-key list`).
        key_id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeliveriesCommand {
    /// Newest first: id (= the message's sms_msg_id), message, institution, location, status,
    /// attempts, next attempt, provider id, error. Never a body or a number.
    List {
        #[arg(long, value_parser = delivery_status())]
        status: Option<DeliveryStatus>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
    },
    /// Queue a failed or undelivered delivery again, from its first attempt (a running
    /// server's worker picks it up within seconds).
    Retry {
        /// The delivery's id (the message's `sms_msg_id`).
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// Receive deliveries on 127.0.0.1:PORT, check both signatures with the endpoint's secret,
    /// and print a line for each (204 when both verify, 401 otherwise).
    Listen {
        #[arg(long, default_value_t = 8089)]
        port: u16,
        /// The endpoint's `secret_key` (`whsec_…`), as its registration answered.
        #[arg(long, env = "CONVO_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// Delivery attempts, newest first: when, endpoint, delivery, event, outcome, HTTP status,
    /// time taken, error. Never a body or a secret.
    Deliveries {
        /// Only the attempts to this endpoint.
        #[arg(long)]
        endpoint: Option<i64>,
        /// Only attempts that delivered, or that failed.
        #[arg(long, value_parser = attempt_outcome())]
        status: Option<WebhookStatus>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
    },
    /// Queue the stored events since T (RFC 3339, such as 2026-12-01T00:00:00Z) again for an
    /// endpoint, with the same ids: every one its subscriptions match that is not pending for
    /// it already. A running server delivers them within seconds.
    Replay {
        #[arg(long)]
        endpoint: i64,
        #[arg(long)]
        since: String,
    },
}

/// `--status` of attempts: `delivered` or `failed`.
fn attempt_outcome() -> impl clap::builder::TypedValueParser<Value = WebhookStatus> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["delivered", "failed"])
        .try_map(|s| WebhookStatus::parse(&s).ok_or("not an attempt outcome"))
}

/// `--status`: one of core's stored names, listed in `--help`.
fn delivery_status() -> impl clap::builder::TypedValueParser<Value = DeliveryStatus> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(DeliveryStatus::ALL.map(DeliveryStatus::as_str))
        .try_map(|s| DeliveryStatus::parse(&s).ok_or("not a delivery status"))
}

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// JWT signing secret; by default one is generated once and kept in the database.
    #[arg(long, env = "CONVO_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Lifetime of issued tokens, in seconds.
    #[arg(long, env = "CONVO_TOKEN_TTL", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub token_ttl: u64,
}

/// The parsed `--rate-limit` (a newtype, so clap takes one value, not a list).
#[derive(Clone, Debug)]
pub struct RateLimits(pub Vec<convo_server::ratelimit::RateLimit>);

fn parse_rate_limit(spec: &str) -> Result<RateLimits, String> {
    convo_server::ratelimit::parse(spec).map(RateLimits)
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "CONVO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    #[command(flatten)]
    pub tokens: TokenArgs,

    /// Answer a missing or generic `Accept` header with 404, as NexHealth does.
    #[arg(long, env = "CONVO_STRICT_VERSION")]
    pub strict_version: bool,

    /// Where outgoing SMS go (used by the write side).
    #[arg(long, env = "CONVO_SMS_PROVIDER", value_enum, default_value_t = SmsProvider::Log)]
    pub sms_provider: SmsProvider,

    #[command(flatten)]
    pub twilio: TwilioArgs,

    /// Public base URL of this server, for webhook signatures behind a proxy.
    #[arg(long, env = "CONVO_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Requests allowed per API key: `off`, `nexhealth` (100/s,2000/min, NexHealth's default)
    /// or a list such as `100/s,2000/min` (units s, min, h). Over it: 429 with Retry-After.
    #[arg(long, env = "CONVO_RATE_LIMIT", default_value = "off", value_parser = parse_rate_limit)]
    pub rate_limit: RateLimits,

    /// Fill an empty database with the demo practice first and print a ready curl line.
    #[arg(long)]
    pub demo: bool,

    #[command(flatten)]
    pub front_door: FrontDoorArgs,

    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Where message webhooks may be delivered, and how long an attempt may take (CONTRACT §8).
#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// A network (CIDR, such as 127.0.0.1/32 or 10.0.0.0/8) that webhook targets may be in
    /// besides the public internet; repeat for several. Loopback, private and link-local
    /// addresses are refused otherwise, by name or by address.
    #[arg(long = "webhook-allow-net", env = "CONVO_WEBHOOK_ALLOW_NET", value_delimiter = ',', value_parser = parse_cidr)]
    pub allow_net: Vec<convo_server::webhooks::address::Cidr>,

    /// Allow plain http:// targets (for receivers on a private network or loopback).
    #[arg(long = "webhook-allow-http", env = "CONVO_WEBHOOK_ALLOW_HTTP")]
    pub allow_http: bool,

    /// Seconds one delivery attempt may take, to the receiver's whole answer.
    #[arg(long = "webhook-timeout", env = "CONVO_WEBHOOK_TIMEOUT", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,

    /// Days webhook events and attempts are kept; older ones are purged by the server.
    #[arg(long = "webhook-retention-days", env = "CONVO_WEBHOOK_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub retention_days: u64,
}

fn parse_cidr(s: &str) -> Result<convo_server::webhooks::address::Cidr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a network in CIDR notation (such as 127.0.0.1/32)"))
}

/// The connection layer's limits (CONTRACT §9).
#[derive(Args, Debug, Clone)]
pub struct FrontDoorArgs {
    /// Seconds a request's headers may take to arrive (from its first byte, or from the
    /// connection's opening); then 408 and the connection is closed.
    #[arg(long, env = "CONVO_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,

    /// Seconds a keep-alive connection may sit idle (or a response go unread) before it is closed.
    #[arg(long, env = "CONVO_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,

    /// Seconds a request body may take to arrive whole; then 408.
    #[arg(long, env = "CONVO_BODY_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,

    /// Connections open at once; past it a new one gets 503 and is closed.
    #[arg(long, env = "CONVO_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,

    /// Seconds SIGTERM waits for in-flight requests and for sends already with the provider.
    #[arg(long, env = "CONVO_SHUTDOWN_TIMEOUT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_timeout: u64,
}

#[derive(Args, Debug)]
pub struct TwilioArgs {
    #[arg(long, env = "CONVO_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    #[arg(long, env = "CONVO_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<Secret>,
    #[arg(
        long,
        env = "CONVO_TWILIO_BASE_URL",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_base_url: String,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The address the printed curl line points at.
    #[arg(long, env = "CONVO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    #[command(flatten)]
    pub tokens: TokenArgs,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Conversations (one patient each), spread 40/30/20/10 % over four locations.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub conversations: u32,

    /// The same seed (and `--until`) always writes the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Every message is before this instant (RFC 3339); the data spans `--days` before it.
    #[arg(long, default_value = "2026-11-01T00:00:00Z")]
    pub until: String,

    /// How many days of history.
    #[arg(long, default_value_t = 730, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,

    /// Output file, or `-` for standard output.
    #[arg(long, short, default_value = "-")]
    pub out: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmsProvider {
    Log,
    Twilio,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rate_limits_parse_or_say_why_not() {
        let cli =
            Cli::try_parse_from(["convo", "serve", "--rate-limit", "nexhealth"]).expect("parse");
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.rate_limit.0.len(), 2);
        let err = Cli::try_parse_from(["convo", "serve", "--rate-limit", "5/fortnight"])
            .expect_err("refused");
        assert!(err.to_string().contains("COUNT/UNIT"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let s: Secret = "hunter2".parse().expect("secret");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn defaults_follow_the_contract() {
        let cli = Cli::try_parse_from(["convo", "serve"]).expect("parse");
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.tokens.token_ttl, 3600);
        assert_eq!(s.sms_provider, SmsProvider::Log);
        assert!(!s.strict_version);
        assert!(s.rate_limit.0.is_empty(), "no limit unless asked");
        assert_eq!(s.twilio.twilio_base_url, "https://api.twilio.com");
        let door = &s.front_door;
        assert_eq!(
            (door.header_timeout, door.idle_timeout, door.max_connections),
            (10, 60, 10_000),
            "CONTRACT §9"
        );
        assert_eq!((door.body_timeout, door.shutdown_timeout), (10, 20));
    }
}
