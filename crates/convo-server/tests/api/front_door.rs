//! The front door over real sockets (CONTRACT §9): stalled headers are closed at the header
//! timeout without delaying anyone, idle keep-alive lasts the idle timeout, connections past the
//! limit are refused without harming established ones, and a trickled body is cut off.

use crate::common::TestApp;
use convo_server::{ApiConfig, FrontDoor};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    app: TestApp,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(door: FrontDoor, config: ApiConfig) -> Self {
        let app = TestApp::with_config(config).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(convo_server::serve_with(
            listener,
            app.state.clone(),
            door,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            app,
            addr,
            stop: Some(stop),
            server,
        }
    }

    fn list_request(&self, close: bool) -> String {
        format!(
            "GET /conversations?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n{}\r\n",
            self.app.token,
            if close { "Connection: close\r\n" } else { "" }
        )
    }

    /// One request on a fresh connection, answered within `within`.
    async fn answered(&self, within: Duration) -> String {
        self.attempt(within).await.expect("read")
    }

    /// Like `answered`, but a connection the server refused may also come back as a reset: it
    /// closes with our request unread, and the kernel answers that with RST.
    async fn attempt(&self, within: Duration) -> std::io::Result<String> {
        let mut c = TcpStream::connect(self.addr).await?;
        c.write_all(self.list_request(true).as_bytes()).await?;
        let mut out = Vec::new();
        tokio::time::timeout(within, c.read_to_end(&mut out))
            .await
            .expect("answered in time")?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.server)
            .await
            .expect("stops")
            .expect("join")
            .expect("serve");
    }
}

/// Reads one response of a keep-alive connection (headers plus `content-length` bytes).
async fn read_response(c: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// Waits for the server to close `c`; returns what it sent first (maybe nothing).
async fn closed_by_server(mut c: TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    match tokio::time::timeout(within, c.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!("still open after {within:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_stalled_heads_delay_nobody_and_are_closed_at_the_header_timeout() {
    let door = FrontDoor {
        header_timeout: Duration::from_secs(3),
        ..FrontDoor::default()
    };
    let server = Running::start(door, ApiConfig::default()).await;
    let opened = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..2_000 {
        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        // The issue's client: a request line and one header, then nothing more.
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        stalled.push(c);
    }
    // A normal client is answered while all of them hang.
    let reply = server.answered(Duration::from_secs(2)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Every stalled connection is closed by the server, with a 408 in the envelope.
    let closes: Vec<_> = stalled
        .into_iter()
        .map(|c| tokio::spawn(closed_by_server(c, Duration::from_secs(20))))
        .collect();
    for close in closes {
        let text = close.await.expect("join");
        assert!(text.starts_with("HTTP/1.1 408 Request Timeout"), "{text}");
        assert!(
            text.ends_with(r#"{"code":false,"description":null,"error":["The request headers did not arrive in time"],"data":null}"#),
            "{text}"
        );
    }
    // Not before the header timeout (the first connection opened first).
    assert!(opened.elapsed() >= Duration::from_secs(3));
    let reply = server.answered(Duration::from_secs(2)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_lasts_the_idle_timeout_not_the_header_timeout() {
    let door = FrontDoor {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(3),
        ..FrontDoor::default()
    };
    let server = Running::start(door, ApiConfig::default()).await;
    let mut c = TcpStream::connect(server.addr).await.expect("connect");
    c.write_all(server.list_request(false).as_bytes())
        .await
        .expect("write");
    assert!(read_response(&mut c).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout: still open, and the next request is served.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    c.write_all(server.list_request(false).as_bytes())
        .await
        .expect("write");
    assert!(read_response(&mut c).await.starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    // Then idle past the idle timeout: closed silently (no 408 for a connection at rest).
    let rest = closed_by_server(c, Duration::from_secs(10)).await;
    assert_eq!(rest, "");
    assert!(idle_from.elapsed() >= Duration::from_millis(2_500));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused_and_established_ones_keep_working() {
    let door = FrontDoor {
        max_connections: 20,
        ..FrontDoor::default()
    };
    let server = Running::start(door, ApiConfig::default()).await;
    let mut established = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        c.write_all(server.list_request(false).as_bytes())
            .await
            .expect("write");
        assert!(read_response(&mut c).await.starts_with("HTTP/1.1 200"));
        established.push(c);
    }
    for _ in 0..10 {
        // The kernel completes the handshake; the server answers 503 and closes at once.
        let c = TcpStream::connect(server.addr).await.expect("connect");
        let text = closed_by_server(c, Duration::from_secs(5)).await;
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 503 Service Unavailable"),
            "{text}"
        );
        if !text.is_empty() {
            assert!(text.contains(r#""error":["Too many connections; try again shortly"]"#));
            assert!(text.contains("retry-after: 1"), "{text}");
        }
    }
    for c in &mut established {
        c.write_all(server.list_request(false).as_bytes())
            .await
            .expect("write");
        assert!(read_response(c).await.starts_with("HTTP/1.1 200"));
    }
    // A closed connection frees its place, once the server has seen it close: until then a
    // new one is still refused (a 503, or a reset when the refusal races our request).
    drop(established.pop());
    let mut reply = String::new();
    for _ in 0..50 {
        reply = match server.attempt(Duration::from_secs(5)).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => format!("reset: {e}"),
            Err(e) => panic!("request: {e}"),
        };
        if reply.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_with_a_408() {
    let config = ApiConfig {
        body_timeout: Duration::from_secs(1),
        ..ApiConfig::default()
    };
    let server = Running::start(FrontDoor::default(), config).await;
    let body = r#"{"message":{"patient_id":100,"user_id":5,"body":"slow"}}"#;
    let mut c = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /messages?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.app.token,
        body.len()
    );
    c.write_all(head.as_bytes()).await.expect("write");
    let started = Instant::now();
    let trickle = async {
        for b in body.as_bytes() {
            if c.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1_500), trickle).await;
    let text = closed_by_server(c, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(
        text.ends_with(r#"{"code":false,"description":null,"error":["the request body did not arrive within 1 s"],"data":null}"#),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nothing was written.
    let listed = server
        .app
        .list("subdomain=acme&location_id=10&messages=10")
        .await;
    assert!(!listed.text.contains("slow"), "{}", listed.text);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_hyper_431() {
    let server = Running::start(FrontDoor::default(), ApiConfig::default()).await;
    let mut c = TcpStream::connect(server.addr).await.expect("connect");
    let big = format!(
        "GET /conversations HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let _ = c.write_all(big.as_bytes()).await;
    let text = closed_by_server(c, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_responses_is_cut_off() {
    let door = FrontDoor {
        idle_timeout: Duration::from_secs(2),
        ..FrontDoor::default()
    };
    let server = Running::start(door, ApiConfig::default()).await;
    let request = format!(
        "GET /conversations?subdomain=acme&location_id=10&per_page=100&messages=100 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        server.app.token
    );
    let requests = 20_000;
    let c = TcpStream::connect(server.addr).await.expect("connect");
    let (mut reader, mut writer) = c.into_split();
    // Pipelined requests whose answers nobody reads: the server's writes fill the socket
    // buffers and block.
    let pipelined = request.repeat(requests);
    tokio::spawn(async move {
        let _ = writer.write_all(pipelined.as_bytes()).await;
        // Keep the write half open: the client is slow, not gone.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(writer);
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Reading now drains what was buffered, then the close: the server gave up on the client
    // well before answering everything.
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut out))
        .await
        .expect("the server closed the stalled connection");
    let answered = out.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert!(answered > 0 && answered < requests, "{answered} answers");
    let reply = server.answered(Duration::from_secs(2)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    server.stop().await;
}
