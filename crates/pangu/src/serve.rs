//! Serving Pangu's HTTP routes (the master's, a chunkserver's) with bounds on what a peer can
//! hold before it has said anything signed: at most [`Limits::max_connections`] connections
//! (more wait in the listen backlog), each buffering at most [`Limits::max_buf_size`] bytes of
//! a request's head, and a connection that does not complete a head within
//! [`Limits::header_read_timeout`] (including an idle keep-alive connection waiting for its
//! next request) is closed: with the defaults, peers without the secret hold at most 512
//! connections and 64 MiB, each for at most 30 s at a time. Bodies are not read before their
//! request is verified ([`crate::auth::layer`]); an authenticated peer is trusted with the
//! rest.
//!
//! `axum::serve` has neither bound (it sets no timer, so hyper's header timeout never fires),
//! hence this loop: hyper's HTTP/1 connection with a timer, one task per connection, and a
//! graceful shutdown that stops accepting and lets requests in flight finish.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// What one listener lets its peers hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; the next ones wait to be accepted.
    pub max_connections: usize,
    /// How long a connection may take to send a request's head, and how long it may idle
    /// between requests. Pangu's clients drop idle connections sooner ([`CLIENT_IDLE`]), so
    /// that they never send on one the server is closing.
    pub header_read_timeout: Duration,
    /// A connection's read buffer, the most of a head it holds (hyper's default is about 400
    /// KiB; Pangu's heads are under 1 KiB). Bodies are read through it in pieces this big.
    pub max_buf_size: usize,
}

/// The default: 512 connections, 128 KiB each, 30 s for a head.
pub const DEFAULT_LIMITS: Limits =
    Limits { max_connections: 512, header_read_timeout: Duration::from_secs(30), max_buf_size: 128 * 1024 };

/// How long Pangu's HTTP clients keep an idle connection: well under the servers' header
/// timeout.
pub const CLIENT_IDLE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits
/// for the requests in flight (each connection closes after its current request).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: wait
                    // a little rather than spin, and go on.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _slot = slot;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_buf_size)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let stopped = async move {
                // (The guard `wait_for` returns must not live across the select's await.)
                let _ = stop.wait_for(|s| *s).await;
            };
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopped => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                if !e.is_incomplete_message() && !e.is_closed() {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while let Some(done) = connections.join_next().await {
        if let Err(e) = done {
            warn!(error = %e, "a connection task failed");
        }
    }
    Ok(())
}
