//! The HTTP face of `convo`: the axum router, its extractors and handlers, and the seams the
//! binary and the tests share: `serve` (the API alone) and `run` (the API with the outbox worker).

mod auth;
mod dto;
mod error;
mod extract;
pub mod front_door;
mod json;
pub mod metrics;
pub mod outbox;
pub mod ratelimit;
mod routes;
mod telemetry;
pub mod twilio;
mod twiml;
pub mod webhooks;

use axum::Router;
use convo_core::{Secret, Store, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use auth::Tokens;
pub use dto::encode_list;
pub use error::ApiError;
pub use front_door::FrontDoor;

/// Settings of the API that do not live in the database.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Token lifetime in seconds.
    pub token_ttl: u64,
    /// Answer a missing or generic `Accept` with 404, as NexHealth does.
    pub strict_version: bool,
    /// Twilio's auth token: verifies webhook signatures (and authenticates sends). Without it,
    /// the webhooks answer 403.
    pub twilio_auth_token: Option<Secret>,
    /// The public base URL Twilio calls (`https://convo.example.org`) when a proxy sits in
    /// front; otherwise `http://` + the request's `Host`.
    pub public_url: Option<String>,
    /// Per-API-key request limits; empty means none (`--rate-limit`).
    pub rate_limits: Vec<ratelimit::RateLimit>,
    /// A request body must arrive whole within this (`--body-timeout`).
    pub body_timeout: Duration,
    /// Claims of a worker silent for this long are taken over (the outbox's `stale_owner_ms`;
    /// `/metrics` counts due entries the same way).
    pub stale_owner_ms: i64,
    /// Where webhook deliveries may go, checked at registration and at every attempt
    /// (`--webhook-allow-net`, `--webhook-allow-http`, `--webhook-timeout`).
    pub webhooks: webhooks::attempt::Rules,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token_ttl: 3600,
            strict_version: false,
            twilio_auth_token: None,
            public_url: None,
            rate_limits: Vec::new(),
            body_timeout: Duration::from_secs(10),
            stale_owner_ms: outbox::RetryPolicy::default().stale_owner_ms,
            webhooks: webhooks::attempt::Rules {
                allow: Arc::from(Vec::new()),
                allow_http: false,
                timeout: Duration::from_secs(15),
            },
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub tokens: Arc<Tokens>,
    pub config: ApiConfig,
    /// Wakes the outbox worker when a send was queued.
    pub outbox: Arc<tokio::sync::Notify>,
    /// Wakes the webhook worker when a write may have queued deliveries.
    pub webhooks: Arc<tokio::sync::Notify>,
    pub limiter: Arc<ratelimit::Limiter>,
}

impl AppState {
    /// Builds the state; without an explicit JWT secret, the one kept in the database is used
    /// (generated on first start) so tokens survive restarts.
    pub async fn new(
        store: Arc<dyn Store>,
        jwt_secret: Option<&[u8]>,
        config: ApiConfig,
    ) -> Result<Self, StoreError> {
        let secret = match jwt_secret {
            Some(s) => s.to_vec(),
            None => store.jwt_secret().await?,
        };
        Ok(Self {
            tokens: Arc::new(Tokens::new(&secret, config.token_ttl)),
            limiter: Arc::new(ratelimit::Limiter::new(&config.rate_limits)),
            store,
            config,
            outbox: Arc::new(tokio::sync::Notify::new()),
            webhooks: Arc::new(tokio::sync::Notify::new()),
        })
    }

    pub fn outbox_wakeup(&self) {
        self.outbox.notify_one();
    }

    pub fn webhook_wakeup(&self) {
        self.webhooks.notify_one();
    }
}

/// The whole API as a router: every route, the envelope for every error, request ids and
/// request spans.
pub fn app(state: AppState) -> Router {
    // Installed before the first request so every point is recorded.
    let _ = metrics::handle();
    let router = routes::router()
        .with_state(state)
        .layer(axum::middleware::from_fn(metrics::track));
    telemetry::layer(router)
}

/// Serves `app(state)` on `listener` behind the default front door until `shutdown` resolves,
/// then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, FrontDoor::default(), shutdown).await
}

/// Everything `run` starts: the API on `listener` and the outbox worker, sharing one store.
pub struct Server {
    pub listener: TcpListener,
    pub state: AppState,
    pub door: FrontDoor,
    pub provider: Arc<dyn outbox::SmsProvider>,
    pub policy: outbox::RetryPolicy,
    pub webhook_policy: webhooks::worker::WebhookPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The worker could not register (another server owns a SQLite database, or it is down).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The API and the outbox worker together until `shutdown` resolves, as `convo serve` runs
/// them: the worker registers first (taking back a crashed predecessor's claims, so those
/// texts go out now), then both stop at the signal; in-flight requests finish, and sends
/// already with the provider are waited for (bounded by `policy.stop_grace_ms`) while the rest
/// go back to the queue for the next start.
pub async fn run(
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let Server {
        listener,
        state,
        door,
        provider,
        policy,
        webhook_policy,
    } = server;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let worker =
        outbox::Worker::register(state.store.clone(), provider, state.outbox.clone(), policy)
            .await?;
    let hooks = webhooks::worker::Worker::new(
        state.store.clone(),
        worker.owner(),
        state.config.webhooks.clone(),
        state.webhooks.clone(),
        Arc::new(webhooks::worker::SystemClock::default()),
        webhook_policy,
    )
    .map_err(|e| RunError::Io(std::io::Error::other(e)))?;
    let hooks = tokio::spawn(hooks.run(until_stopped(stopped.clone())));
    // The outbox worker heartbeats for both and releases both queues' claims when it stops: it
    // stops after the webhook worker has recorded what it had under way.
    let outbox_stop = {
        let stopped = stopped.clone();
        async move {
            until_stopped(stopped).await;
            let _ = hooks.await;
        }
    };
    let worker = tokio::spawn(worker.run(outbox_stop));
    tracing::info!("listening on {}", listener.local_addr()?);
    let served = serve_with(listener, state, door, until_stopped(stopped)).await;
    let _ = worker.await;
    Ok(served?)
}

/// `serve` with the front door's limits and timeouts given.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    door: FrontDoor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    front_door::serve(listener, app(state), door, shutdown).await
}
