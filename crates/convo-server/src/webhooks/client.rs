//! The delivery client: no proxies from the environment (a proxy would dial for us, past every
//! check), no redirects (a 3xx is a failure), the contract's timeouts, and a resolver that drops
//! every address a webhook may not reach after resolution and before any socket opens, so a
//! name that resolves (or rebinds) to loopback is refused like a loopback literal. IP literals
//! never reach a resolver: `address::check_target` runs before every attempt for them.

use super::address::{Cidr, allowed};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Every address the name resolved to was one a webhook may not reach.
#[derive(Debug, thiserror::Error)]
#[error("address not allowed")]
pub struct AddressNotAllowed;

/// Resolves with the system's resolver, then keeps only the addresses `address::allowed` lets
/// through.
struct FilteringResolver {
    allow: Arc<[Cidr]>,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = Arc::clone(&self.allow);
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = found.filter(|a| allowed(a.ip(), &allow)).collect();
            if kept.is_empty() {
                return Err(Box::new(AddressNotAllowed) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The client every attempt goes through. `timeout` bounds the whole attempt (15 s by
/// default, `--webhook-timeout`); connecting is bounded at 5 s.
pub fn delivery_client(allow: Arc<[Cidr]>, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .dns_resolver(Arc::new(FilteringResolver { allow }))
        .user_agent(concat!("convo/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Whether an attempt failed because the resolver refused every address.
pub fn refused_address(err: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if e.is::<AddressNotAllowed>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback listener that answers every connection with `response` and counts them.
    async fn receiver(response: &'static str) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (port, accepted)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_before_any_connection() {
        let (port, accepted) = receiver(OK).await;
        let client = delivery_client(Arc::from([]), Duration::from_secs(5)).expect("client");
        let err = client
            .post(format!("http://localhost:{port}/hook"))
            .send()
            .await
            .expect_err("refused");
        assert!(refused_address(&err), "{err:?}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "no socket reached the listener"
        );
    }

    /// A POST to `localhost:port` through a client that may reach 127.0.0.0/8.
    async fn post_allowing_loopback(port: u16) -> reqwest::Response {
        let allow: Arc<[Cidr]> = Arc::from(["127.0.0.0/8".parse::<Cidr>().expect("cidr")]);
        let client = delivery_client(allow, Duration::from_secs(5)).expect("client");
        client
            .post(format!("http://localhost:{port}/hook"))
            .send()
            .await
            .expect("answered")
    }

    #[tokio::test]
    async fn an_allowed_network_reaches_the_receiver() {
        let (port, accepted) = receiver(OK).await;
        let res = post_allowing_loopback(port).await;
        assert_eq!(res.status(), 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_redirect_is_an_answer_not_followed() {
        const MOVED: &str = "HTTP/1.1 302 Found\r\nlocation: http://localhost:1/elsewhere\r\n\
                             content-length: 0\r\nconnection: close\r\n\r\n";
        let (port, accepted) = receiver(MOVED).await;
        let res = post_allowing_loopback(port).await;
        assert_eq!(res.status(), 302);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
