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
//!
//! With TLS ([`serve_with_tls`]) the same port serves HTTPS too: the first byte of each
//! connection says which (a TLS handshake record is `0x16`, see [`crate::tls::names::sniff`]).
//! A TLS connection holds its slot like any other and is bounded the same ways; its first
//! byte and its whole handshake must arrive within one `header_read_timeout` (a ClientHello
//! sent slowly is a slow request head), before the request head's own. A `CONNECT` to a cloud host on port 443 is answered here
//! with `200` and the tunnel is served as a TLS connection on the same slot, its requests
//! handed to the same handler; any other `CONNECT` goes to the handler (which refuses it).

pub mod idle;
mod slots;

pub use idle::{is_body_idle, BodyIdle};
pub use slots::{ClientKey, Refusal};

use crate::tls::names::{sniff, tunnel_host, Protocol};
use crate::tls::TlsEdge;
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    serve_with_tls(listener, limits, None, handler, shutdown).await
}

/// [`serve`], with HTTPS beside HTTP on the same port when `tls` is given (and `CONNECT`
/// tunnels to cloud hosts answered).
pub async fn serve_with_tls<H, F>(
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<TlsEdge>>,
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
                let conn = Conn::new(slot);
                let served = Served { peer, http: http.clone(), limits: limits.clone(), handler: handler.clone() };
                tokio::spawn(connection(stream, conn, served, tls.clone(), stop_rx.clone()));
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
    fn new(slot: Slot) -> Arc<Self> {
        Arc::new(Conn { slot, activity: Arc::new(idle::Activity::default()), went_idle: Notify::new() })
    }

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

/// What serves the requests of one connection (and of the tunnel it may become).
struct Served<H> {
    peer: SocketAddr,
    http: Arc<http1::Builder>,
    limits: Arc<Limits>,
    handler: Arc<H>,
}

/// How a wait before any request (the first byte, a handshake, a tunnel's opening) ended
/// when it did not complete: each ends the connection.
#[derive(Debug)]
enum Cut {
    TimedOut,
    Evicted,
    Stopping,
}

/// Runs `work` while the connection has no request in flight: until `deadline` at most, and
/// not past an eviction (the slot went to a newcomer) or the server's stop.
async fn before_request<T>(
    conn: &Conn,
    deadline: tokio::time::Instant,
    stop: &mut watch::Receiver<bool>,
    work: impl Future<Output = T>,
) -> Result<T, Cut> {
    if *stop.borrow() {
        return Err(Cut::Stopping);
    }
    tokio::select! {
        r = work => Ok(r),
        _ = tokio::time::sleep_until(deadline) => Err(Cut::TimedOut),
        _ = conn.slot.evict().wait() => Err(Cut::Evicted),
        _ = stop.changed() => Err(Cut::Stopping),
    }
}

async fn connection<H, F>(
    stream: TcpStream,
    conn: Arc<Conn>,
    served: Served<H>,
    tls: Option<Arc<TlsEdge>>,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Body>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let peer = served.peer;
    let head_limit = served.limits.header_read_timeout;
    // The first byte and the whole handshake share one request-head time, as a plain
    // request head would have.
    let deadline = tokio::time::Instant::now() + head_limit;
    let Some(tls) = tls else {
        let io = idle::Io::new(stream, conn.activity.clone(), served.limits.body_idle_timeout);
        http_connection(io, &conn, &served, false, &mut stop).await;
        return;
    };
    let mut first = [0u8; 1];
    let protocol = match before_request(&conn, deadline, &mut stop, stream.peek(&mut first)).await {
        Ok(Ok(1)) => sniff(first[0]),
        Ok(Ok(_)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection ended before its first byte");
            return;
        }
        Err(cut) => {
            tracing::debug!(%peer, ?cut, "connection closed before its first byte");
            return;
        }
    };
    let io = idle::Io::new(stream, conn.activity.clone(), served.limits.body_idle_timeout);
    let tunnel = match protocol {
        Protocol::Tls => {
            if let Some(io) = handshake(&tls, io, &conn, &served, deadline, &mut stop).await {
                http_connection(io, &conn, &served, false, &mut stop).await;
            }
            return;
        }
        Protocol::Http => match http_connection(io, &conn, &served, true, &mut stop).await {
            Some(tunnel) => tunnel,
            None => return,
        },
    };
    // The client was told `200 Connection established`: what follows is TLS to the cloud host,
    // its handshake within one request-head time of that answer.
    let deadline = tokio::time::Instant::now() + head_limit;
    let upgraded = match before_request(&conn, deadline, &mut stop, tunnel).await {
        Ok(Ok(u)) => hyper_util::rt::TokioIo::new(u),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "tunnel not opened");
            return;
        }
        Err(cut) => {
            tracing::debug!(%peer, ?cut, "tunnel not opened");
            return;
        }
    };
    if let Some(io) = handshake(&tls, upgraded, &conn, &served, deadline, &mut stop).await {
        http_connection(io, &conn, &served, false, &mut stop).await;
    }
}

/// A TLS handshake, to be done by `deadline`.
async fn handshake<I, H>(
    tls: &TlsEdge,
    io: I,
    conn: &Conn,
    served: &Served<H>,
    deadline: tokio::time::Instant,
    stop: &mut watch::Receiver<bool>,
) -> Option<tokio_rustls::server::TlsStream<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let peer = served.peer;
    match before_request(conn, deadline, stop, tls.acceptor().accept(io)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(cut) => {
            tracing::debug!(%peer, ?cut, "TLS handshake cut");
            None
        }
    }
}

/// Serves HTTP/1 on `io` until the connection ends; with `tunnels`, a `CONNECT` to a cloud
/// host is answered `200` and the connection is handed back as that tunnel (to be upgraded).
async fn http_connection<I, H, F>(
    io: I,
    conn: &Arc<Conn>,
    served: &Served<H>,
    tunnels: bool,
    stop: &mut watch::Receiver<bool>,
) -> Option<hyper::upgrade::OnUpgrade>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Body>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let peer = served.peer;
    let tunnel: Arc<parking_lot::Mutex<Option<hyper::upgrade::OnUpgrade>>> = Arc::default();
    let service = {
        let conn = conn.clone();
        let body_idle = served.limits.body_idle_timeout;
        let handler = served.handler.clone();
        let tunnel = tunnel.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // In flight from the moment hyper hands the request over (before it reads the body).
            conn.begin();
            let ended = Ended(conn.clone());
            let handler = handler.clone();
            let opened = tunnels && opens_tunnel(&req);
            if opened {
                *tunnel.lock() = Some(hyper::upgrade::on(&mut req));
            }
            async move {
                if opened {
                    return Ok::<_, Infallible>(tunnel_opened().map(|inner| Tracked { inner, _ended: ended }));
                }
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
    let served_conn = served.http.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(served_conn);
    let idle = conn.idle_for(served.limits.keep_alive_idle_timeout);
    tokio::pin!(idle);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = served_conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended");
                    return None;
                }
                return tunnel.lock().take();
            }
            _ = conn.slot.evict().wait() => {
                tracing::debug!(%peer, "idle connection closed to make room for a new one");
                return None;
            }
            _ = &mut idle => {
                tracing::trace!(%peer, "idle connection closed");
                return None;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                served_conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Whether a request is a `CONNECT` the edge answers itself (to a cloud host, port 443).
fn opens_tunnel(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT && req.uri().authority().is_some_and(|a| tunnel_host(a.as_str()).is_some())
}

/// The answer that opens a tunnel: `200 Connection established`, no body.
fn tunnel_opened() -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    resp.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Connection established"));
    resp
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
#[cfg(test)]
mod tls_tests;
