//! The edge's listener: an accept loop that caps connections, and HTTP/1 with timers.
//!
//! What a peer that never authenticates can make the edge hold, and for how long:
//!
//! | what                           | bounded by                                                        |
//! |--------------------------------|-------------------------------------------------------------------|
//! | connections                    | `max_connections`, and `max_connections_per_client` per address   |
//! |                                | (a full table gives the slot of the oldest *idle* connection to   |
//! |                                | the newcomer, see [`slots`]; refused with a canned `503` if none) |
//! | a connection with no request   | `keep_alive_idle_timeout` without a byte arriving                 |
//! | a request head                 | `header_read_timeout` (hyper's timer); hyper's read buffer limit  |
//! |                                | (~400 KiB: `431` above it)                                        |
//! | a request body that stalls     | `body_idle_timeout` without a byte: `408`, connection closed      |
//! | an answer the client won't read| `body_idle_timeout` without a byte let through: connection closed |
//! | RPC body bytes before auth     | the pre-authentication budget (`crate::preauth`, used by the edge)|
//!
//! `/healthz` is never starved by sockets that hold slots without finishing a request: they are
//! idle, and a new connection takes the slot of the oldest idler.

pub mod idle;
mod slots;

pub use idle::{is_body_idle, BodyIdle};
pub use slots::{ClientKey, Refusal};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use slots::{Slot, Table};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

/// How long a stopping server waits for the requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Refused connections answered at once (the rest are just closed), and how long each may
/// take: the answer is written and what the client already sent is read and dropped, so that
/// the close does not reset the connection before the client reads the answer.
const REFUSALS_IN_FLIGHT: usize = 64;
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// After `accept` fails for want of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The edge's bounds. [`serve`] enforces the connection and timer ones; the edge's RPC path
/// enforces the pre-authentication body budget.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head must be complete this long after the server starts waiting for it (the
    /// connection's accept, or the end of the previous answer).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight on which nothing arrives for this long is closed.
    pub keep_alive_idle_timeout: Duration,
    /// A request body from which nothing arrives for this long while the server reads it is
    /// answered `408` and its connection closed; an answer of which the client reads nothing
    /// for this long closes its connection.
    pub body_idle_timeout: Duration,
    pub max_connections: usize,
    /// Per client address (an IPv4 address, an IPv6 /64).
    pub max_connections_per_client: usize,
    /// Bytes of RPC request bodies held before their requests are authenticated, in all.
    pub pre_auth_body_budget: usize,
    /// The same, per client address.
    pub pre_auth_body_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(20),
            keep_alive_idle_timeout: Duration::from_secs(15),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_connections_per_client: 128,
            pre_auth_body_budget: 64 << 20,
            pre_auth_body_per_client: 16 << 20,
        }
    }
}

/// A request extension: the address of the client on the other end.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// A request extension: whether the request's body timed out (the client stopped sending).
/// The answer to such a request is a `408` whatever the handler said; a handler that renders
/// its own (in its protocol's error format) checks this.
#[derive(Debug, Clone)]
pub struct BodyTimeout(Arc<AtomicBool>);

impl BodyTimeout {
    pub fn fired(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves `handler` on `listener` until `shutdown` completes, then lets requests in flight
/// finish (for at most [`SHUTDOWN_GRACE`]).
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Fn(Request<Body>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let limits = Arc::new(limits);
    let table = Table::new(limits.max_connections, limits.max_connections_per_client);
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let http = Arc::new(http);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut last_warning: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors or memory: what is open must close first.
                        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                            tracing::warn!(error = %e, open = table.open(), "cannot accept connections");
                            last_warning = Some(tokio::time::Instant::now());
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        // Answers are a head and a body: without TCP_NODELAY a small body waits 40 ms for the
        // client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        match table.admit(ClientKey::of(peer.ip())) {
            Ok(slot) => {
                let task =
                    connection(stream, peer, slot, http.clone(), limits.clone(), handler.clone(), stop_rx.clone());
                tokio::spawn(task);
            }
            Err(why) => {
                tracing::debug!(%peer, ?why, "connection refused: no slot");
                refuse(stream, &refusals);
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, table.emptied()).await.is_err() {
        tracing::warn!(open = table.open(), "connections still open after the shutdown grace; leaving them");
    }
    Ok(())
}

/// Errors of one connection, not of the listener: the next accept works.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 61\r\n\r\n\
feitian is serving all the connections it may; retry shortly\n";

/// Answers a connection that got no slot with a canned `503`, without reading its request.
fn refuse(stream: TcpStream, refusals: &Arc<Semaphore>) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        // Too many refusals at once: the answer goes out if the socket takes it now, and the
        // connection closes.
        let _ = stream.try_write(REFUSED);
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            stream.write_all(REFUSED).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 2048];
            while stream.read(&mut sink).await? > 0 {}
            io::Result::Ok(())
        })
        .await;
    });
}

/// One connection's state as its timers and its slot see it.
struct Conn {
    slot: Slot,
    activity: Arc<idle::Activity>,
    went_idle: Notify,
}

impl Conn {
    fn begin(&self) {
        if self.activity.begin() {
            self.slot.begin();
        }
    }

    fn end(&self) {
        if self.activity.end() {
            self.slot.end();
            self.went_idle.notify_waiters();
        }
    }

    /// Completes once the connection has had no request in flight, and nothing arriving,
    /// for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            loop {
                let notified = self.went_idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.activity.idle() {
                    break;
                }
                notified.await;
            }
            let mark = self.activity.mark();
            tokio::time::sleep(idle).await;
            if self.activity.mark() == mark && self.activity.idle() {
                return;
            }
        }
    }
}

/// Ends the request when the answer has been sent, or abandoned.
struct Ended(Arc<Conn>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The answer's body, holding the request open until it is sent.
struct Tracked {
    inner: Body,
    _ended: Ended,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

async fn connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    http: Arc<http1::Builder>,
    limits: Arc<Limits>,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Body>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let activity = Arc::new(idle::Activity::default());
    let conn = Arc::new(Conn { slot, activity: activity.clone(), went_idle: Notify::new() });
    let io = TokioIo::new(idle::Io::new(stream, activity, limits.body_idle_timeout));
    let service = {
        let conn = conn.clone();
        let body_idle = limits.body_idle_timeout;
        hyper::service::service_fn(move |req: Request<Incoming>| {
            // In flight from the moment hyper hands the request over (before it reads the body).
            conn.begin();
            let ended = Ended(conn.clone());
            let handler = handler.clone();
            async move {
                let timed_out = Arc::new(AtomicBool::new(false));
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(Peer(peer));
                parts.extensions.insert(BodyTimeout(timed_out.clone()));
                let body = Body::new(idle::IdleBody::new(body, body_idle, timed_out.clone()));
                let mut resp = handler(Request::from_parts(parts, body)).await;
                if timed_out.load(Ordering::Relaxed) {
                    resp = body_timed_out(resp, body_idle);
                }
                Ok::<_, Infallible>(resp.map(|inner| Tracked { inner, _ended: ended }))
            }
        })
    };
    let served = http.serve_connection(io, service);
    tokio::pin!(served);
    let idle = conn.idle_for(limits.keep_alive_idle_timeout);
    tokio::pin!(idle);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
            _ = conn.slot.evict().wait() => {
                tracing::debug!(%peer, "idle connection closed to make room for a new one");
                return;
            }
            _ = &mut idle => {
                tracing::trace!(%peer, "idle connection closed");
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The answer to a request whose body stopped arriving: a `408` (the handler's own when it
/// rendered one), and the connection closes.
fn body_timed_out(mut resp: Response<Body>, idle: Duration) -> Response<Body> {
    if resp.status() != StatusCode::REQUEST_TIMEOUT {
        resp = Response::new(Body::from(format!(
            "the request body stopped arriving: nothing came for {} s\n",
            idle.as_secs_f64()
        )));
        *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests;
