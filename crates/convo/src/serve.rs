//! `convo serve`: open the store, build the state, bind, serve until SIGTERM or Ctrl-C.

use crate::cli::{ServeArgs, SmsProvider};
use crate::{CliError, demo, open_store};
use convo_server::{ApiConfig, AppState};
use tokio::net::TcpListener;

pub async fn run(database_url: &str, args: ServeArgs) -> Result<(), CliError> {
    if args.sms_provider == SmsProvider::Twilio
        && (args.twilio.twilio_account_sid.is_none() || args.twilio.twilio_auth_token.is_none())
    {
        return Err(CliError::Usage(
            "--sms-provider twilio needs CONVO_TWILIO_ACCOUNT_SID and CONVO_TWILIO_AUTH_TOKEN"
                .into(),
        ));
    }
    let store = open_store(database_url).await?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    if args.demo {
        demo::seed_and_print(store.clone(), &addr.to_string(), &args.tokens).await?;
    }
    // Fresh planner statistics keep the list on its indexes after large imports.
    store.analyze().await?;
    let config = ApiConfig {
        token_ttl: args.tokens.token_ttl,
        strict_version: args.strict_version,
    };
    let secret = args.tokens.jwt_secret.as_ref().map(|s| s.0.as_bytes());
    let state = AppState::new(store, secret, config).await?;
    tracing::info!("listening on {addr}");
    convo_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
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
