//! `convo serve`: open the store, build the state, bind, serve until SIGTERM or Ctrl-C.

use crate::cli::{ServeArgs, SmsProvider as Provider};
use crate::{CliError, demo};
use convo::db::{DbOptions, connect_with};
use convo_core::{Millis, Store};
use convo_server::outbox::{LogProvider, RetryPolicy, SmsProvider, TwilioProvider};
use convo_server::webhooks::attempt::Rules;
use convo_server::webhooks::worker::WebhookPolicy;
use convo_server::{ApiConfig, AppState, FrontDoor, Server};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub async fn run(
    database_url: &str,
    database: &DbOptions,
    args: ServeArgs,
) -> Result<(), CliError> {
    if args.sms_provider == Provider::Twilio
        && (args.twilio.twilio_account_sid.is_none() || args.twilio.twilio_auth_token.is_none())
    {
        return Err(CliError::Usage(
            "--sms-provider twilio needs CONVO_TWILIO_ACCOUNT_SID and CONVO_TWILIO_AUTH_TOKEN"
                .into(),
        ));
    }
    let store = connect_with(database_url, database).await?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    if args.demo {
        demo::seed_and_print(store.clone(), &addr.to_string(), &args.tokens).await?;
    }
    // Fresh planner statistics keep the list on its indexes after large imports. Imports leave
    // them behind themselves, so this is upkeep and the start does not wait for it: on a SQLite
    // file without any it reads the whole file (1 M conversations: 0.6 s with the file cached).
    let upkeep = store.clone();
    tokio::spawn(async move {
        if let Err(e) = upkeep.optimize().await {
            tracing::warn!(error = %e, "could not refresh the planner's statistics");
        }
    });
    let public_url = args
        .public_url
        .as_ref()
        .map(|u| u.trim_end_matches('/').to_string());
    let auth_token = args.twilio.twilio_auth_token.clone();
    let door = &args.front_door;
    let shutdown_timeout = Duration::from_secs(door.shutdown_timeout);
    let policy = RetryPolicy {
        stop_grace_ms: door.shutdown_timeout.saturating_mul(1000),
        ..RetryPolicy::default()
    };
    let front_door = FrontDoor {
        header_timeout: Duration::from_secs(door.header_timeout),
        idle_timeout: Duration::from_secs(door.idle_timeout),
        max_connections: usize::try_from(door.max_connections).unwrap_or(usize::MAX),
        shutdown_timeout,
    };
    // The demo's receiver runs on this machine: the demo allows loopback over http for
    // deliveries, as `--webhook-allow-net 127.0.0.1/32 --webhook-allow-http` would.
    let mut webhooks = args.webhooks.clone();
    if args.demo && webhooks.allow_net.is_empty() {
        webhooks.allow_net.push(
            "127.0.0.1/32"
                .parse()
                .map_err(|_| CliError::Usage("the demo's loopback network".into()))?,
        );
        webhooks.allow_http = true;
        tracing::info!("demo: webhook deliveries may go to 127.0.0.1 over http");
    }
    let config = ApiConfig {
        token_ttl: args.tokens.token_ttl,
        strict_version: args.strict_version,
        twilio_auth_token: auth_token.clone(),
        public_url: public_url.clone(),
        rate_limits: args.rate_limit.0.clone(),
        body_timeout: Duration::from_secs(door.body_timeout),
        stale_owner_ms: policy.stale_owner_ms,
        webhooks: Rules {
            allow: Arc::from(webhooks.allow_net.clone()),
            allow_http: webhooks.allow_http,
            timeout: Duration::from_secs(webhooks.timeout),
        },
    };
    let provider: Arc<dyn SmsProvider> = match (
        args.sms_provider,
        &args.twilio.twilio_account_sid,
        auth_token,
    ) {
        (Provider::Twilio, Some(sid), Some(token)) => Arc::new(
            TwilioProvider::new(
                &args.twilio.twilio_base_url,
                sid,
                token,
                public_url.map(|u| format!("{u}/sms/status")),
                Duration::from_secs(15),
            )
            .map_err(CliError::Usage)?,
        ),
        _ => Arc::new(LogProvider),
    };
    let secret = args
        .tokens
        .jwt_secret
        .as_ref()
        .map(|s| s.expose().as_bytes());
    let policy_stale = policy.stale_owner_ms;
    spawn_retention(store.clone(), args.webhooks.retention_days);
    let state = AppState::new(store, secret, config).await?;
    let server = Server {
        listener,
        state,
        door: front_door,
        provider,
        policy,
        webhook_policy: WebhookPolicy {
            stale_owner_ms: policy_stale,
            stop_grace_ms: door.shutdown_timeout.saturating_mul(1000),
            ..WebhookPolicy::default()
        },
    };
    convo_server::run(server, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Webhook events and attempts older than `days` go, at start and hourly after (an event
/// with a delivery still pending stays).
fn spawn_retention(store: Arc<dyn Store>, days: u64) {
    let keep_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3_600));
        loop {
            tick.tick().await;
            match store
                .purge_webhooks(Millis(Millis::now().0.saturating_sub(keep_ms)))
                .await
            {
                Ok(0) => {}
                Ok(events) => {
                    tracing::info!(events, days, "webhooks: purged events past retention")
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: cannot purge old events"),
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
