//! The front door (CONTRACT §9): accepts at most `max_connections` connections at once, serves
//! HTTP/1.1 on each, and closes the ones that stall, so one careless or hostile client never
//! holds the server or delays others.
//!
//! hyper's own header timeout also runs while a keep-alive connection waits for its next
//! request, so it cannot give a 10 s header deadline and a 60 s idle one at the same time. The
//! clocks live in [`Guarded`], a wrapper around the socket that knows, from the service, whether
//! a request is being handled.

use crate::metrics as m;
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// Limits of the connection layer; every one has a flag (`convo serve --help`).
#[derive(Clone, Debug)]
pub struct FrontDoor {
    /// A request's headers must arrive within this, from its first byte (or from the accept).
    pub header_timeout: Duration,
    /// A keep-alive connection with no request, or a response its client stopped reading, is
    /// closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once; past it a new one is answered 503 and closed.
    pub max_connections: usize,
    /// On shutdown, how long in-flight requests may take before their connections are dropped.
    pub shutdown_timeout: Duration,
}

impl Default for FrontDoor {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(20),
        }
    }
}

/// The largest head (request line and headers) hyper reads: past it the client gets 431.
/// hyper's default read buffer (~400 KiB) would let 10,000 connections pin 4 GB with heads.
/// (`max_header_size`, not `max_buf_size`: the latter also caps hyper's write buffer, which a
/// ~70 KB list page should fit in whole.)
const MAX_HEAD: usize = 64 * 1024;

/// What a connection refused at the limit reads before it is closed.
static BUSY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        "503 Service Unavailable",
        "retry-after: 1\r\n",
        "Too many connections; try again shortly",
    )
});

/// What a client whose headers did not arrive in time reads before the connection closes.
static HEADER_TIMEOUT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        "408 Request Timeout",
        "",
        "The request headers did not arrive in time",
    )
});

/// A whole HTTP/1.1 response with the error envelope, for answers given below the router.
fn canned(status: &str, headers: &str, message: &str) -> Vec<u8> {
    // Written out, not `json!`: the envelope's key order is the contract's.
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into());
    let body = format!(r#"{{"code":false,"description":null,"error":[{message}],"data":null}}"#);
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json; charset=utf-8\r\n{headers}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Stop signals for connections: graceful first (finish the request in hand), then drop.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    Graceful,
    Abort,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish for up to `door.shutdown_timeout`, and drops what is left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    door: FrontDoor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max = door.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(Stop::Run);
    let mut accept_errors = ErrorLog::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (or memory): the error repeats until a connection closes.
                // Pause instead of spinning, and keep the loop alive whatever the error.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) {
                    accept_errors.warn(&e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            m::connection_refused();
            // Best effort: a full socket buffer just means the client sees the close.
            let _ = stream.try_write(&BUSY);
            continue;
        };
        let router = router.clone();
        let door = door.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let _open = m::ConnectionOpen::count();
            connection(stream, router, &door, stopping).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(Stop::Graceful);
    // Every connection holds a permit until it ends: all of them back means all are done.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(door.shutdown_timeout, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = max - permits.available_permits(),
            "shutdown: dropping connections still busy after the grace period"
        );
        let _ = stop.send(Stop::Abort);
    }
    Ok(())
}

async fn connection(
    stream: TcpStream,
    router: Router,
    door: &FrontDoor,
    mut stopping: watch::Receiver<Stop>,
) {
    let activity = Arc::new(Activity::default());
    let io = Guarded::new(stream, activity.clone(), door);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = activity.begin();
        let router = router.clone();
        async move {
            let response = tower::ServiceExt::oneshot(router, req.map(Body::new)).await;
            drop(busy);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(MAX_HEAD);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // Stops listening for signals once the sender is gone (the serve loop has ended).
    let mut watching = true;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stopping.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                match *stopping.borrow_and_update() {
                    Stop::Run => {}
                    Stop::Graceful => conn.as_mut().graceful_shutdown(),
                    Stop::Abort => return,
                }
            }
        }
    }
}

/// Requests started and finished on one connection, counted by the service and read by the
/// socket wrapper (a request is in hand while `started > done`).
#[derive(Default)]
struct Activity {
    started: AtomicU64,
    done: AtomicU64,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.started.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn in_hand(&self) -> bool {
        self.started.load(Ordering::Relaxed) > self.done.load(Ordering::Relaxed)
    }
}

/// Marks the request done when the handler's future completes or is dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.done.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Reading a request's head (or waiting for the first one): the header clock runs.
    Head,
    /// Between requests of a keep-alive connection: the idle clock runs until the next byte.
    Idle,
}

/// The socket with the front door's clocks. hyper keeps a read pending whenever it waits for a
/// head, so a deadline checked in `poll_read` fires on time; while a handler runs, no read clock
/// runs (bodies have their own deadline, in the extractors).
struct Guarded {
    inner: TcpStream,
    activity: Arc<Activity>,
    seen_done: u64,
    phase: Phase,
    /// Whether any byte of the current head has arrived (a silent connection gets no 408).
    head_bytes: bool,
    read_deadline: Instant,
    read_timer: Pin<Box<Sleep>>,
    /// The task's waker from its last pending read. hyper reads while a request is in hand and
    /// then, once the response is out, may not read again until the socket wakes it; the idle
    /// clock is armed with this waker when the response is written, so it still fires.
    read_waker: Option<Waker>,
    /// Armed while a write is blocked on a client that does not read.
    write_timer: Option<Pin<Box<Sleep>>>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Guarded {
    fn new(inner: TcpStream, activity: Arc<Activity>, door: &FrontDoor) -> Self {
        let deadline = Instant::now() + door.header_timeout;
        Self {
            inner,
            activity,
            seen_done: 0,
            phase: Phase::Head,
            head_bytes: false,
            read_deadline: deadline,
            read_timer: Box::pin(tokio::time::sleep_until(deadline)),
            read_waker: None,
            write_timer: None,
            header_timeout: door.header_timeout,
            idle_timeout: door.idle_timeout,
        }
    }

    /// A finished request starts the idle clock; `true` when it just did.
    fn sync(&mut self) -> bool {
        let done = self.activity.done.load(Ordering::Relaxed);
        if done == self.seen_done {
            return false;
        }
        self.seen_done = done;
        self.phase = Phase::Idle;
        self.head_bytes = false;
        self.read_deadline = Instant::now() + self.idle_timeout;
        true
    }

    /// Called as the response goes out: starts the idle clock on behalf of a read that is
    /// already pending (its waker is the task's), without waking the task now.
    fn arm_after_response(&mut self) {
        if !self.sync() || self.activity.in_hand() {
            return;
        }
        if let Some(waker) = self.read_waker.clone() {
            let mut cx = Context::from_waker(&waker);
            // Ready only if the deadline already passed; the next read reports it.
            let _ = self.timed_out(&mut cx);
        }
    }

    /// The first byte of a new request starts the header clock; later bytes do not reset it, so
    /// a head sent a byte at a time still has to be complete in time.
    fn on_bytes(&mut self) {
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.read_deadline = Instant::now() + self.header_timeout;
        }
        self.head_bytes = true;
    }

    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if self.read_timer.deadline() != self.read_deadline {
            let deadline = self.read_deadline;
            self.read_timer.as_mut().reset(deadline);
        }
        self.read_timer.as_mut().poll(cx).is_ready()
    }

    /// A blocked write runs the stall clock; any progress stops it.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if written.is_pending() {
            self.write_stalled(cx)?;
        } else {
            self.write_timer = None;
        }
        written
    }

    fn write_stalled(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let idle = self.idle_timeout;
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if timer.as_mut().poll(cx).is_ready() {
            m::connection_closed("write_stalled");
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.sync();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if !this
                    .read_waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    this.read_waker = Some(cx.waker().clone());
                }
                if this.activity.in_hand() || !this.timed_out(cx) {
                    return Poll::Pending;
                }
                let (kind, why) = match (this.phase, this.head_bytes) {
                    (Phase::Head, true) => {
                        // Best effort: tell the client why before closing.
                        let _ = this.inner.try_write(&HEADER_TIMEOUT);
                        (
                            "header_timeout",
                            "the request headers did not arrive in time",
                        )
                    }
                    (Phase::Head, false) => ("header_timeout", "no request arrived in time"),
                    (Phase::Idle, _) => ("idle_timeout", "the connection was idle too long"),
                };
                m::connection_closed(kind);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.arm_after_response();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.arm_after_response();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Logs accept errors at most once a second (they come in floods).
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn warn(&mut self, e: &io::Error) {
        m::accept_error();
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "cannot accept a connection; pausing 100 ms");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(response: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(response).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("content-length");
        assert_eq!(length, body.len(), "{head}");
        serde_json::from_str(body).expect("json")
    }

    #[test]
    fn canned_answers_are_the_envelope_with_the_right_length() {
        for answer in [&*BUSY, &*HEADER_TIMEOUT] {
            let v = envelope(answer);
            let text = String::from_utf8_lossy(answer);
            assert!(text.ends_with(r#""],"data":null}"#), "{text}");
            assert!(
                text.contains(r#"{"code":false,"description":null,"error":[""#),
                "{text}"
            );
            assert_eq!(v["code"], false);
            assert!(v["description"].is_null() && v["data"].is_null());
            assert_eq!(v["error"].as_array().map(Vec::len), Some(1));
        }
    }
}
