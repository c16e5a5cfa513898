//! The listening socket of one disk and the one connection it serves at a time.
//!
//! Authentication and bounds (the house rule for internal services):
//! - The socket is `DIR/NAME.sock`, in a directory the caller gives, mode 0600 and owned by
//!   the uid of the guest's QEMU. The file mode is set right after `bind`; a connection made
//!   in between is still judged by its credentials below.
//! - On accept, the peer's credentials (`SO_PEERCRED`) must be that uid, root, or our own
//!   uid; any other peer is closed before a byte is read or written.
//! - The handshake must finish within [`HANDSHAKE_TIMEOUT`]; options carry at most
//!   `proto::MAX_OPTION_DATA` bytes; requests and payload in flight are bounded (`transmit`).
//! - One connection is served at a time. A new authenticated connection replaces the old
//!   one (QEMU reconnecting after a restart of either side): the old one stops reading, and
//!   the new one starts its handshake only once every device operation the old one started
//!   has finished, so an old write can never land after a new one.
//!
//! The export's size is read from the device at each handshake, so after the volume grows,
//! [`NbdServer::disconnect`] makes QEMU reconnect and learn the new size (`docs/disks.md`,
//! online resize).

use super::handshake::{self, Outcome};
use super::proto::Export;
use super::transmit::{self, stopped};
use crate::device::BlockDevice;
use crate::qos::{Limiter, Limits};
use parking_lot::Mutex;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How long a connection may take from accept to the end of its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a disk server serves, where, and to whom.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The directory the socket is made in (it must exist).
    pub dir: PathBuf,
    /// The export's name (the disk id): the socket is `NAME.sock`, and NBD clients may ask
    /// for this name or the default export `""`.
    pub name: String,
    /// The uid of the guest's QEMU: the socket's owner and the one peer besides root and us.
    pub client_uid: u32,
    /// The disk's performance ceilings; `None` serves unthrottled.
    pub limits: Option<Limits>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("export name {0:?} is not 1 to 64 characters of [A-Za-z0-9._-] not starting with a dot")]
    BadName(String),
    #[error("socket path {0} is too long for a unix socket")]
    PathTooLong(PathBuf),
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    #[error("socket {path}: {source}")]
    Socket { path: PathBuf, source: std::io::Error },
}

/// A running disk server. Dropping it stops serving at once and removes the socket file;
/// [`NbdServer::shutdown`] also waits for the device operations in flight.
pub struct NbdServer {
    path: PathBuf,
    stop: watch::Sender<bool>,
    kick: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

/// What every connection of one server shares.
struct Shared {
    device: Arc<dyn BlockDevice>,
    name: String,
    client_uid: u32,
    own_uid: u32,
    limiter: Option<Arc<Mutex<Limiter>>>,
}

impl NbdServer {
    /// Makes the socket and starts serving `device` on the current tokio runtime.
    pub fn start(config: ServerConfig, device: Arc<dyn BlockDevice>) -> Result<NbdServer, ServerError> {
        if !valid_name(&config.name) {
            return Err(ServerError::BadName(config.name));
        }
        let path = config.dir.join(format!("{}.sock", config.name));
        // sockaddr_un holds 108 bytes including the terminating NUL.
        if path.as_os_str().len() >= 108 {
            return Err(ServerError::PathTooLong(path));
        }
        let listener = bind(&path, config.client_uid)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let own_uid = unsafe { libc::geteuid() };
        let shared = Arc::new(Shared {
            name: config.name,
            device,
            client_uid: config.client_uid,
            own_uid,
            limiter: config.limits.map(|l| Arc::new(Mutex::new(Limiter::new(l, Instant::now())))),
        });
        let (stop, stop_rx) = watch::channel(false);
        let kick = Arc::new(Notify::new());
        let task = tokio::spawn(accept_loop(listener, shared, stop_rx, kick.clone()));
        Ok(NbdServer { path, stop, kick, task: Some(task) })
    }

    /// The socket QEMU connects to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Ends the live connection (if any) and keeps listening: the client reconnects, and
    /// its handshake reads the device's size afresh. Its requests in flight finish first.
    pub fn disconnect(&self) {
        self.kick.notify_one();
    }

    /// Stops accepting, ends the live connection, and returns once its device operations
    /// have finished.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Binds the socket (replacing a stale socket file), mode 0600, owned by `uid`.
fn bind(path: &Path, uid: u32) -> Result<UnixListener, ServerError> {
    let err = |source| ServerError::Socket { path: path.to_path_buf(), source };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(err)?,
        Ok(_) => return Err(ServerError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let std_listener = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
    let set_up = || -> std::io::Result<UnixListener> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if uid != unsafe { libc::geteuid() } {
            std::os::unix::fs::chown(path, Some(uid), None)?;
        }
        std_listener.set_nonblocking(true)?;
        UnixListener::from_std(std_listener)
    };
    set_up().map_err(|e| {
        let _ = std::fs::remove_file(path);
        err(e)
    })
}

/// The connection being served: how to stop it and how to wait for it.
struct Live {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>, kick: Arc<Notify>) {
    // The last connection, stopped or not: the next one waits for it to finish.
    let mut live: Option<Live> = None;
    loop {
        let stream = tokio::select! {
            _ = kick.notified() => {
                if let Some(l) = &live {
                    let _ = l.stop.send(true);
                }
                continue;
            }
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!("nbd {}: accept: {e}", shared.name);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        if !authorized(&stream, &shared) {
            continue;
        }
        let previous = live.take().map(|l| {
            let _ = l.stop.send(true);
            l.task
        });
        let (conn_stop, conn_stop_rx) = watch::channel(false);
        let task = tokio::spawn(connection(stream, shared.clone(), previous, conn_stop_rx));
        live = Some(Live { stop: conn_stop, task });
    }
    if let Some(l) = live {
        let _ = l.stop.send(true);
        let _ = l.task.await;
    }
}

/// Whether the peer may use this disk: its QEMU's uid, root, or ourselves.
fn authorized(stream: &UnixStream, shared: &Shared) -> bool {
    match stream.peer_cred() {
        Ok(c) if c.uid() == shared.client_uid || c.uid() == 0 || c.uid() == shared.own_uid => true,
        Ok(c) => {
            tracing::warn!("nbd {}: refused a connection from uid {} (pid {:?})", shared.name, c.uid(), c.pid());
            false
        }
        Err(e) => {
            tracing::warn!("nbd {}: no peer credentials: {e}", shared.name);
            false
        }
    }
}

/// One connection: wait for the one it replaces, negotiate, serve.
async fn connection(
    mut stream: UnixStream,
    shared: Arc<Shared>,
    previous: Option<JoinHandle<()>>,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(p) = previous {
        // Not abandoned even if this one is stopped meanwhile: whoever replaces this
        // connection waits for it, and through it for `p`.
        let _ = p.await;
    }
    let export = Export { name: shared.name.clone(), size: shared.device.size() };
    let negotiated = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake::negotiate(&mut stream, &export)) => r,
        _ = stopped(&mut stop) => return,
    };
    match negotiated {
        Ok(Ok(Outcome::Transmission)) => {
            transmit::serve(stream, export.size, shared.device.clone(), shared.limiter.clone(), &mut stop).await
        }
        Ok(Ok(Outcome::Closed)) => {}
        Ok(Err(e)) => tracing::warn!("nbd {}: handshake failed: {e}", shared.name),
        Err(_) => tracing::warn!("nbd {}: handshake not finished within {HANDSHAKE_TIMEOUT:?}", shared.name),
    }
}
