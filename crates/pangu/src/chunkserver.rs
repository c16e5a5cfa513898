//! The chunkserver: an HTTP/1 service over a directory of chunk replicas ([`ChunkFile`]).
//!
//! # Routes
//!
//! | route                                                    | answer                          |
//! |----------------------------------------------------------|---------------------------------|
//! | `POST /chunks/{id}?max_size=N`                           | 201, [`ChunkInfo`]              |
//! | `POST /chunks/{id}/append?offset=N` + `x-pangu-crc32c`   | [`LenResponse`], once durable   |
//! | `POST /chunks/{id}/append?offset=N&cached=1` + CRC       | [`LenResponse`], once written   |
//! | `POST /chunks/{id}/sync`                                 | [`LenResponse`], once durable   |
//! | `GET /chunks/{id}?offset=N&len=M`                        | the verified bytes + their CRC  |
//! | `POST /chunks/{id}/seal[?len=N]`                         | [`LenResponse`]                 |
//! | `DELETE /chunks/{id}`                                    | 204                             |
//! | `POST /chunks/{id}/replicate?from=HOST:PORT&len=N`       | [`LenResponse`], sealed copy    |
//! | `GET /chunks`                                            | a list of [`ChunkInfo`]         |
//! | `GET /corrupt`                                           | a list of [`CorruptChunk`]      |
//! | `GET /status`                                            | [`ServerStatus`]                |
//!
//! `{id}` is a [`ChunkId`] in hex. Every request is signed ([`crate::auth`]): with the cluster
//! secret, except creates, deletes and replicates, which only the master orders and signs
//! with this server's own key. A request that is not signed as it must be is answered 401
//! (`Unauthenticated`, `RequestExpired`, `RequestReplayed`) or 403 (`Forbidden`) from its head
//! alone, before any work and before its body is read; so nobody without the secret reads,
//! writes, lists or deletes a replica, and a replicate only ever fetches from the source the
//! master named. Errors are `{"code", "message", ...}` ([`ErrorBody`])
//! with a 4xx status for anything the client can fix or must know (offset and checksum
//! mismatches, full or sealed chunks, corrupt replicas) and a 5xx only for the server's own
//! failures (local I/O errors, a poisoned handle, an unreachable replication source).
//!
//! # Concurrency
//!
//! Each open replica is one `ChunkFile` behind a `RwLock`, in a map keyed by id: appends
//! and seals of one chunk take the write lock and so are serialised; reads take the read
//! lock and run beside each other. All file work runs on tokio's blocking pool. Creates,
//! deletes and the creation step of a replicate are serialised by one `lifecycle` lock, so
//! two of them never race on a chunk's files. A deleted replica's slot is emptied under its
//! write lock, so an operation that looked the chunk up just before the delete sees
//! `ChunkNotFound` instead of writing to unlinked files.
//!
//! # Corruption
//!
//! A read (or seal) that meets a corrupt block answers 409 `ChunkCorrupt` naming the block,
//! never the bytes, and the chunk is remembered in the corrupt list (`GET /corrupt`) for the
//! master's heartbeat. A chunk that fails to open at start is listed there too, and is not
//! served. The list is in memory: a restart re-detects corruption on the next read (or, for
//! unopenable chunks, at start). Deleting a chunk clears its entry.
//!
//! # Capacity
//!
//! Free space is the smaller of two: `capacity_bytes` (configured: the budget this server may
//! fill when its disk is shared) minus the committed bytes of every replica, and what the
//! file system under `dir` still lets a writer use (`statvfs`, measured at every report). So
//! a disk that something else filled is known to be full, and the master places nothing there
//! ([`free_bytes`]).

pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Path as UrlPath, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tracing::{info, warn};

use crate::auth::layer::Guard;
use crate::auth::{AuthError, Credentials, Keyring, Principal, ServerToken, Verifier};
use crate::chunk::{checksum, ChunkError, ChunkFile, ChunkId, Durability, DEFAULT_MAX_SIZE};
use crate::chunk_client::{ChunkClient, ChunkClientError};
use crate::flow::{FlowConfig, FlowError, Refusal, Scheduler, Traffic};
use crate::parts::Parts;
use crate::placement::ServerId;

pub use wire::{ChunkInfo, CorruptChunk, ErrorBody, ErrorCode, LenResponse, ServerStatus, CRC32C_HEADER};

/// The most bytes one append or one read may carry. Clients batch appends up to this;
/// bigger reads are split (replication reads [`REPLICATE_READ_BYTES`] at a time).
pub const MAX_TRANSFER_BYTES: u64 = 64 * 1024 * 1024;

/// How much `replicate` reads from its source per request.
pub const REPLICATE_READ_BYTES: u64 = 4 * 1024 * 1024;

/// Turns Nagle's algorithm off on an accepted connection: answers are written as a head
/// and a body, and a small second write must not wait for the peer's delayed ACK (40 ms).
pub fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// Bytes the file system holding `dir` still lets an unprivileged writer use (`statvfs`:
/// available blocks × fragment size); `None` if it cannot be asked.
pub fn fs_available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `st` points to writable memory of the
    // right type; statvfs writes it whole when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: initialized by the successful call above.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Free space as the master should place against it: the configured budget less what is
/// stored, and never more than the file system has left (when it could be asked).
pub fn free_bytes(capacity_bytes: u64, used_bytes: u64, fs_available: Option<u64>) -> u64 {
    let budget = capacity_bytes.saturating_sub(used_bytes);
    fs_available.map_or(budget, |fs| budget.min(fs))
}

/// How a chunkserver is set up.
#[derive(Debug, Clone)]
pub struct ChunkServerConfig {
    /// Where the replicas live (created if missing).
    pub dir: PathBuf,
    pub server_id: ServerId,
    /// The failure domain, reported to the master for placement.
    pub rack: String,
    /// The bytes this server may store; free space is this minus the bytes stored.
    pub capacity_bytes: u64,
    /// How client appends and re-replication copies share this server's bandwidth; the
    /// repair ceiling is the configured re-replication rate.
    pub flow: FlowConfig,
    /// The cluster secret: requests signed with it are served, and this server signs its
    /// reads from a replication source with it.
    pub secret: Keyring,
    /// This server's token from the master: the master's orders are signed with it.
    pub token: ServerToken,
}

/// The default share: 2 GiB/s in all (more than one disk moves, so clients are not slowed),
/// repair between 16 and 64 MiB/s, 8 MiB bursts.
pub const DEFAULT_FLOW: FlowConfig =
    FlowConfig { total: 2 << 30, repair_min: 16 << 20, repair_max: 64 << 20, burst: 8 << 20 };

/// A flow configuration for a re-replication rate of `repair_bytes_per_sec`: its ceiling,
/// with a floor of a quarter of it.
pub fn flow_for_repair_rate(repair_bytes_per_sec: u64) -> Result<FlowConfig, FlowError> {
    let repair_max = repair_bytes_per_sec.max(4);
    let total = DEFAULT_FLOW.total.max(repair_max.saturating_mul(2));
    let burst = DEFAULT_FLOW.burst.min(repair_max).max(REPLICATE_READ_BYTES.min(repair_max));
    let config = FlowConfig { total, repair_min: (repair_max / 4).max(1), repair_max, burst };
    Scheduler::new(config)?;
    Ok(config)
}

/// Why a chunkserver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChunkServerError {
    #[error("cannot use chunk directory {}: {source}", path.display())]
    Dir { path: PathBuf, source: io::Error },
    #[error("bad flow-control settings: {0}")]
    Flow(FlowError),
}

/// An open replica; `None` once deleted.
type Replica = RwLock<Option<ChunkFile>>;

/// A running chunkserver's state. Cheap to clone (shared).
#[derive(Clone)]
pub struct ChunkServer {
    inner: Arc<Inner>,
}

struct Inner {
    config: ChunkServerConfig,
    /// The id the master knows this server by (the configured one, unless the master gave
    /// it another since: [`ChunkServer::set_identity`]).
    server_id: AtomicU64,
    verifier: Arc<Verifier>,
    chunks: Mutex<HashMap<ChunkId, Arc<Replica>>>,
    corrupt: Mutex<BTreeMap<ChunkId, String>>,
    lifecycle: Mutex<()>,
    flow: Mutex<Scheduler>,
    started: std::time::Instant,
}

impl std::fmt::Debug for ChunkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkServer").field("dir", &self.inner.config.dir).finish_non_exhaustive()
    }
}

impl ChunkServer {
    /// Opens every chunk in the directory (each `open` runs crash recovery). A chunk that
    /// fails to open is listed as corrupt, not fatal. Blocking: call it at start-up or on
    /// the blocking pool.
    pub fn open(config: ChunkServerConfig) -> Result<ChunkServer, ChunkServerError> {
        let dir_error = |source| ChunkServerError::Dir { path: config.dir.clone(), source };
        std::fs::create_dir_all(&config.dir).map_err(dir_error)?;
        let mut chunks = HashMap::new();
        let mut corrupt = BTreeMap::new();
        for id in chunk_ids_in(&config.dir).map_err(dir_error)? {
            match ChunkFile::open(&config.dir, id) {
                Ok(file) => {
                    chunks.insert(id, Arc::new(RwLock::new(Some(file))));
                }
                Err(e) => {
                    warn!(chunk = %id, error = %e, "cannot open chunk; listing it as corrupt");
                    corrupt.insert(id, format!("cannot open: {e}"));
                }
            }
        }
        info!(dir = %config.dir.display(), chunks = chunks.len(), corrupt = corrupt.len(), "chunkserver opened");
        let flow = Scheduler::new(config.flow).map_err(ChunkServerError::Flow)?;
        let verifier = Arc::new(Verifier::chunkserver(config.secret.clone(), config.server_id, &config.token));
        Ok(ChunkServer {
            inner: Arc::new(Inner {
                server_id: AtomicU64::new(config.server_id.0),
                verifier,
                config,
                chunks: Mutex::new(chunks),
                corrupt: Mutex::new(corrupt),
                lifecycle: Mutex::new(()),
                flow: Mutex::new(flow),
                started: std::time::Instant::now(),
            }),
        })
    }

    pub fn config(&self) -> &ChunkServerConfig {
        &self.inner.config
    }

    /// The id the master knows this server by.
    pub fn server_id(&self) -> ServerId {
        ServerId(self.inner.server_id.load(Ordering::Relaxed))
    }

    /// The master knows this server by another id now (it lost the old one): its orders
    /// come signed with the new id's token.
    pub fn set_identity(&self, id: ServerId, token: &ServerToken) {
        self.inner.verifier.set_identity(id, token);
        self.inner.server_id.store(id.0, Ordering::Relaxed);
    }

    /// The service's routes, every one behind the signature check, to serve alone
    /// ([`ChunkServer::serve`]). Not to be nested under a prefix: the signature covers the
    /// path as the client sent it.
    pub fn router(&self) -> Router {
        let guard = Guard {
            verifier: Arc::clone(&self.inner.verifier),
            refuse: |e| ApiError::from_auth(e).into_response(),
            check_body_sha256: None,
        };
        Router::new()
            .route("/chunks", get(list_chunks))
            .route("/chunks/{id}", post(create_chunk).get(read_chunk).delete(delete_chunk))
            .route("/chunks/{id}/append", post(append_chunk))
            .route("/chunks/{id}/seal", post(seal_chunk))
            .route("/chunks/{id}/sync", post(sync_chunk))
            .route("/chunks/{id}/replicate", post(replicate_chunk))
            .route("/corrupt", get(list_corrupt))
            .route("/status", get(status))
            // An append's body may be a whole batch (one fsync per batch, not per write).
            .layer(DefaultBodyLimit::max(MAX_TRANSFER_BYTES as usize))
            .with_state(self.clone())
            // Outermost: nothing runs, and no body is read, before the signature is checked.
            .layer(axum::middleware::from_fn_with_state(guard, crate::auth::layer::guard))
    }

    /// Serves the routes on `listener` until the future is dropped or the listener fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> io::Result<()> {
        self.serve_until(listener, std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish (an append
    /// that was accepted still becomes durable and is answered).
    pub async fn serve_until(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        self.serve_with(listener, crate::serve::DEFAULT_LIMITS, shutdown).await
    }

    /// [`ChunkServer::serve_until`] with other bounds on connections.
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        limits: crate::serve::Limits,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        crate::serve::serve(listener, self.router(), limits, shutdown).await
    }

    /// Only the master orders creates, deletes and replicates: it signs them with this
    /// server's own key.
    fn require_master(&self, principal: Principal) -> Result<(), ApiError> {
        if principal == Principal::Server(self.server_id()) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the master orders creates, deletes and replicates (signed with this server's key)".to_owned(),
        ))
    }

    /// The replicas listed as corrupt.
    pub fn corrupt_chunks(&self) -> Vec<CorruptChunk> {
        let corrupt = self.inner.corrupt.lock();
        corrupt.iter().map(|(id, reason)| CorruptChunk { id: *id, reason: reason.clone() }).collect()
    }

    /// What the master's heartbeat needs: the status, every replica, the corrupt ones.
    /// Blocking (it takes each chunk's read lock).
    pub fn report(&self) -> (ServerStatus, Vec<ChunkInfo>, Vec<CorruptChunk>) {
        let infos = self.chunk_infos();
        let corrupt = self.corrupt_chunks();
        let config = self.config();
        let used_bytes: u64 = infos.iter().map(|info| info.len).sum();
        let status = ServerStatus {
            server_id: self.server_id().0,
            rack: config.rack.clone(),
            capacity_bytes: config.capacity_bytes,
            used_bytes,
            free_bytes: free_bytes(config.capacity_bytes, used_bytes, fs_available_bytes(&config.dir)),
            chunks: infos.len() as u64,
            corrupt_chunks: corrupt.len() as u64,
        };
        (status, infos, corrupt)
    }

    /// The scrub: verifies every block of every replica not yet known corrupt, one replica
    /// at a time (each under its read lock, so appends to that one wait, others do not).
    /// Returns the replicas found corrupt in this pass; they are listed for the master
    /// (which has them re-replicated) and never served again. Blocking.
    pub fn scrub(&self) -> Vec<ChunkId> {
        let replicas: Vec<(ChunkId, Arc<Replica>)> =
            self.inner.chunks.lock().iter().map(|(id, r)| (*id, Arc::clone(r))).collect();
        let mut found = Vec::new();
        for (id, replica) in replicas {
            if self.inner.corrupt.lock().contains_key(&id) {
                continue;
            }
            let guard = replica.read();
            let Some(file) = guard.as_ref() else { continue };
            if let Err(e) = file.verify_all() {
                if matches!(e, ChunkError::Corrupt { .. }) {
                    drop(self.chunk_failed(id, e));
                    found.push(id);
                }
            }
        }
        found
    }

    /// Deletes a replica (as `DELETE /chunks/{id}`). Blocking.
    pub fn delete_replica(&self, id: ChunkId) -> Result<(), String> {
        self.delete(id).map_err(|e| e.body.message)
    }

    /// Every open replica, by id. Blocking (it takes each chunk's read lock).
    fn chunk_infos(&self) -> Vec<ChunkInfo> {
        let replicas: Vec<(ChunkId, Arc<Replica>)> =
            self.inner.chunks.lock().iter().map(|(id, r)| (*id, Arc::clone(r))).collect();
        let mut infos: Vec<ChunkInfo> = replicas
            .into_iter()
            .filter_map(|(id, replica)| {
                let guard = replica.read();
                let file = guard.as_ref()?;
                Some(ChunkInfo { id, len: file.len(), max_size: file.max_size(), sealed: file.is_sealed() })
            })
            .collect();
        infos.sort_by_key(|info| info.id);
        infos
    }

    /// Waits until the scheduler admits `bytes` of `kind` (in pieces of at most a burst).
    async fn admit(&self, kind: Traffic, bytes: u64) {
        let burst = self.inner.config.flow.burst;
        let mut left = bytes;
        while left > 0 {
            let piece = left.min(burst);
            loop {
                let now = self.inner.started.elapsed();
                let refusal = self.inner.flow.lock().admit(now, kind, piece);
                match refusal {
                    Ok(()) => break,
                    Err(Refusal::Wait(d)) => tokio::time::sleep(d.max(std::time::Duration::from_millis(1))).await,
                    Err(Refusal::TooLarge { .. }) => break, // cannot happen: pieces fit the burst
                }
            }
            left -= piece;
        }
    }

    /// Bytes admitted so far, for client appends and for repair copies.
    pub fn admitted(&self) -> (u64, u64) {
        let flow = self.inner.flow.lock();
        (flow.admitted(Traffic::Client), flow.admitted(Traffic::Repair))
    }

    fn replica(&self, id: ChunkId) -> Result<Arc<Replica>, ApiError> {
        if let Some(replica) = self.inner.chunks.lock().get(&id) {
            return Ok(Arc::clone(replica));
        }
        match self.inner.corrupt.lock().get(&id) {
            Some(reason) => Err(ApiError::new(ErrorCode::ChunkCorrupt, format!("chunk {id} is corrupt: {reason}"))),
            None => Err(ApiError::from_chunk(ChunkError::NotFound { id })),
        }
    }

    /// Runs `op` on the replica under its read lock, on the blocking pool.
    async fn with_read<T: Send + 'static>(
        &self,
        id: ChunkId,
        op: impl FnOnce(&ChunkFile) -> Result<T, ChunkError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let replica = self.replica(id)?;
        let server = self.clone();
        blocking(move || {
            let guard = replica.read();
            let file = guard.as_ref().ok_or_else(|| ApiError::from_chunk(ChunkError::NotFound { id }))?;
            op(file).map_err(|e| server.chunk_failed(id, e))
        })
        .await
    }

    /// Runs `op` on the replica under its write lock, on the blocking pool.
    async fn with_write<T: Send + 'static>(
        &self,
        id: ChunkId,
        op: impl FnOnce(&mut ChunkFile) -> Result<T, ChunkError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let replica = self.replica(id)?;
        let server = self.clone();
        blocking(move || {
            let mut guard = replica.write();
            let file = guard.as_mut().ok_or_else(|| ApiError::from_chunk(ChunkError::NotFound { id }))?;
            op(file).map_err(|e| server.chunk_failed(id, e))
        })
        .await
    }

    /// Turns a chunk error into the answer, remembering a corrupt replica for the master.
    fn chunk_failed(&self, id: ChunkId, error: ChunkError) -> ApiError {
        if let ChunkError::Corrupt { .. } = error {
            warn!(chunk = %id, error = %error, "corrupt replica");
            self.inner.corrupt.lock().insert(id, error.to_string());
        }
        ApiError::from_chunk(error)
    }

    /// Creates an empty replica. Blocking.
    fn create(&self, id: ChunkId, max_size: u64) -> Result<ChunkInfo, ApiError> {
        let _lifecycle = self.inner.lifecycle.lock();
        if self.inner.chunks.lock().contains_key(&id) {
            return Err(ApiError::from_chunk(ChunkError::AlreadyExists { id }));
        }
        let file = ChunkFile::create(&self.inner.config.dir, id, max_size).map_err(ApiError::from_chunk)?;
        let info = ChunkInfo { id, len: file.len(), max_size: file.max_size(), sealed: file.is_sealed() };
        self.inner.chunks.lock().insert(id, Arc::new(RwLock::new(Some(file))));
        Ok(info)
    }

    /// Removes a replica (open or corrupt). Removing a missing one succeeds. Blocking.
    fn delete(&self, id: ChunkId) -> Result<(), ApiError> {
        let _lifecycle = self.inner.lifecycle.lock();
        let replica = self.inner.chunks.lock().remove(&id);
        if let Some(replica) = replica {
            // Waits for operations in flight, and stops later ones from using the handle.
            replica.write().take();
        }
        ChunkFile::delete(&self.inner.config.dir, id).map_err(ApiError::from_chunk)?;
        self.inner.corrupt.lock().remove(&id);
        Ok(())
    }

    /// The local replica to replicate into: the existing one (a retried or resumed
    /// replicate), or a new one. Blocking.
    /// Before a copy of a chunk sealed at `len`: a replica here that is listed corrupt, or
    /// that cannot become that copy (sealed at another length, or longer), is deleted so
    /// that the copy replaces it. A shorter unsealed one is kept and the copy resumes it
    /// (a single writer sends the same bytes at the same offsets to every replica).
    fn clear_bad_replica(&self, id: ChunkId, len: u64) -> Result<(), ApiError> {
        let corrupt = self.inner.corrupt.lock().contains_key(&id);
        let unusable = !corrupt
            && self.inner.chunks.lock().get(&id).is_some_and(|replica| {
                replica.read().as_ref().is_some_and(|f| (f.is_sealed() && f.len() != len) || f.len() > len)
            });
        if corrupt || unusable {
            info!(chunk = %id, corrupt, "replacing a bad replica with a fresh copy");
            self.delete(id)?;
        }
        Ok(())
    }

    fn replication_target(&self, id: ChunkId, len: u64) -> Result<Target, ApiError> {
        let existing = self.inner.chunks.lock().get(&id).map(Arc::clone);
        match existing {
            Some(replica) => {
                let guard = replica.read();
                let file = guard.as_ref().ok_or_else(|| ApiError::from_chunk(ChunkError::NotFound { id }))?;
                Ok(Target { len: file.len(), sealed: file.is_sealed(), created: false })
            }
            None => match self.create(id, len.max(1)) {
                Ok(info) => Ok(Target { len: info.len, sealed: info.sealed, created: true }),
                // Created meanwhile by a concurrent replicate: use it.
                Err(e)
                    if e.body.code == ErrorCode::ChunkAlreadyExists && self.inner.chunks.lock().contains_key(&id) =>
                {
                    self.replication_target(id, len)
                }
                Err(e) => Err(e),
            },
        }
    }
}

/// Where a replicate starts.
struct Target {
    len: u64,
    sealed: bool,
    /// Made by this replicate (so a failed copy removes it rather than leave a partial
    /// replica behind for the master to clean up).
    created: bool,
}

/// The ids of the chunks whose metadata files are in `dir` (`<16 hex digits>.meta`).
fn chunk_ids_in(dir: &Path) -> io::Result<Vec<ChunkId>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".meta") else { continue };
        if stem.len() == 16 {
            if let Ok(id) = stem.parse::<ChunkId>() {
                ids.push(id);
            }
        }
    }
    ids.sort();
    Ok(ids)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorCode::InternalError, format!("blocking task failed: {e}")))?
}

// ---- handlers -------------------------------------------------------------------------

async fn create_chunk(
    State(server): State<ChunkServer>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    server.require_master(principal)?;
    let id = parse_id(&id)?;
    let query = Query::parse(query.as_deref());
    let max_size = query.u64_or("max_size", DEFAULT_MAX_SIZE)?;
    let info = blocking(move || server.create(id, max_size)).await?;
    Ok(json_response(StatusCode::CREATED, &info))
}

async fn append_chunk(
    State(server): State<ChunkServer>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let query = Query::parse(query.as_deref());
    let offset = query.required_u64("offset")?;
    let durability = match query.u64_or("cached", 0)? {
        0 => Durability::Durable,
        1 => Durability::Cached,
        other => return Err(ApiError::invalid(format!("cached must be 0 or 1, not {other}"))),
    };
    let crc = headers
        .get(CRC32C_HEADER)
        .ok_or_else(|| ApiError::invalid(format!("missing header {CRC32C_HEADER}")))?
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| ApiError::invalid(format!("header {CRC32C_HEADER} must be a decimal u32")))?;
    let len = server.append_checked(id, offset, body, crc, durability).await?;
    Ok(json_response(StatusCode::OK, &LenResponse { len }))
}

async fn read_chunk(
    State(server): State<ChunkServer>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let query = Query::parse(query.as_deref());
    let offset = query.u64_or("offset", 0)?;
    let len = query.optional_u64("len")?;
    let bytes = server.read_verified(id, offset, len).await?;
    let crc = HeaderValue::from(checksum(&bytes));
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(CRC32C_HEADER, crc);
    Ok(response)
}

impl ChunkServer {
    /// What `GET /chunks/{id}` serves: verified bytes (`len` `None`: to the end).
    pub(crate) async fn read_verified(&self, id: ChunkId, offset: u64, len: Option<u64>) -> Result<Vec<u8>, ApiError> {
        self.with_read(id, move |file| {
            // No `len` means "to the end".
            let len = len.unwrap_or_else(|| file.len().saturating_sub(offset));
            if len > MAX_TRANSFER_BYTES {
                return Ok(Err(ApiError::new(
                    ErrorCode::TooLarge,
                    format!("a read may return at most {MAX_TRANSFER_BYTES} bytes, not {len}"),
                )));
            }
            file.read(offset, len).map(Ok)
        })
        .await?
    }

    /// Several reads of one replica in one turn of the blocking pool and one lock: a
    /// fragmented read from the layer above costs one hand-off, not one per range. Each
    /// range is verified as [`ChunkFile::read`] verifies it; together they may return at
    /// most [`MAX_TRANSFER_BYTES`].
    pub(crate) async fn read_verified_many(
        &self,
        id: ChunkId,
        ranges: Vec<(u64, u64)>,
    ) -> Result<Vec<Vec<u8>>, ApiError> {
        let total = ranges.iter().fold(0u64, |sum, r| sum.saturating_add(r.1));
        if total > MAX_TRANSFER_BYTES {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("a read may return at most {MAX_TRANSFER_BYTES} bytes, not {total}"),
            ));
        }
        self.with_read(id, move |file| ranges.iter().map(|&(offset, len)| file.read(offset, len)).collect()).await
    }

    /// What `POST /chunks/{id}/append` does: admitted by the flow scheduler, durable (or
    /// cached: see [`Durability`]) before it returns.
    pub(crate) async fn append_checked(
        &self,
        id: ChunkId,
        offset: u64,
        data: Bytes,
        crc: u32,
        durability: Durability,
    ) -> Result<u64, ApiError> {
        self.admit(Traffic::Client, data.len() as u64).await;
        self.with_write(id, move |file| file.append_with(offset, &data, crc, durability)).await
    }

    /// An append of a writer's buffers, from this process ([`ChunkFile::append_trusted`]), admitted
    /// and made as [`ChunkServer::append_checked`].
    pub(crate) async fn append_trusted(
        &self,
        id: ChunkId,
        offset: u64,
        data: Parts,
        durability: Durability,
    ) -> Result<u64, ApiError> {
        self.admit(Traffic::Client, data.len() as u64).await;
        self.with_write(id, move |file| {
            file.append_trusted(offset, &data.iter().collect::<Vec<_>>(), data.block_crcs(), durability)
        })
        .await
    }

    /// What `POST /chunks/{id}/sync` does: the chunk's cached appends made durable.
    pub(crate) async fn sync(&self, id: ChunkId) -> Result<u64, ApiError> {
        self.with_write(id, move |file| file.sync()).await
    }
}

async fn sync_chunk(State(server): State<ChunkServer>, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let len = server.sync(id).await?;
    Ok(json_response(StatusCode::OK, &LenResponse { len }))
}

async fn seal_chunk(
    State(server): State<ChunkServer>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let len = Query::parse(query.as_deref()).optional_u64("len")?;
    let len = server.with_write(id, move |file| file.seal(len)).await?;
    Ok(json_response(StatusCode::OK, &LenResponse { len }))
}

async fn delete_chunk(
    State(server): State<ChunkServer>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    server.require_master(principal)?;
    let id = parse_id(&id)?;
    blocking(move || server.delete(id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_chunks(State(server): State<ChunkServer>) -> Result<Response, ApiError> {
    let infos = blocking(move || Ok(server.chunk_infos())).await?;
    Ok(json_response(StatusCode::OK, &infos))
}

async fn list_corrupt(State(server): State<ChunkServer>) -> Response {
    json_response(StatusCode::OK, &server.corrupt_chunks())
}

async fn status(State(server): State<ChunkServer>) -> Result<Response, ApiError> {
    let status = blocking(move || Ok(server.report().0)).await?;
    Ok(json_response(StatusCode::OK, &status))
}

/// Copies a sealed chunk from another chunkserver: verified reads there, checksummed
/// appends here, then a seal at `len`. A retry is harmless: a finished copy answers at
/// once, and an unfinished one that an earlier request left (only a crash does that, see
/// below) is continued from its end, its bytes having come from a verified source. A copy
/// that fails removes the replica it created, so a failed repair leaves nothing behind.
///
/// Only the master orders a copy, so `from` is a server it registered: nobody else can make
/// this server connect to a host of their choosing.
async fn replicate_chunk(
    State(server): State<ChunkServer>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    server.require_master(principal)?;
    let id = parse_id(&id)?;
    let query = Query::parse(query.as_deref());
    let from = query.required("from")?.to_string();
    let len = query.required_u64("len")?;

    let target = server.clone();
    let target = blocking(move || {
        target.clear_bad_replica(id, len)?;
        target.replication_target(id, len)
    })
    .await?;
    if target.sealed {
        if target.len == len {
            return Ok(json_response(StatusCode::OK, &LenResponse { len }));
        }
        return Err(ApiError::from_chunk(ChunkError::Sealed { len: target.len }));
    }
    match copy_from(&server, id, &from, target.len, len).await {
        Ok(len) => {
            info!(chunk = %id, %from, len, "replicated chunk");
            Ok(json_response(StatusCode::OK, &LenResponse { len }))
        }
        Err(e) => {
            if target.created {
                let cleanup = server.clone();
                if let Err(cleanup_error) = blocking(move || cleanup.delete(id)).await {
                    warn!(chunk = %id, error = ?cleanup_error.body, "cannot remove a failed replica");
                }
            }
            Err(e)
        }
    }
}

/// Appends the source's bytes `offset..len` to the local replica and seals it at `len`.
async fn copy_from(server: &ChunkServer, id: ChunkId, from: &str, mut offset: u64, len: u64) -> Result<u64, ApiError> {
    let source = ChunkClient::new(from, Credentials::cluster(&server.inner.config.secret));
    while offset < len {
        let n = (len - offset).min(REPLICATE_READ_BYTES);
        server.admit(Traffic::Repair, n).await;
        let bytes = source.read(id, offset, n).await.map_err(|e| source_failed(from, e))?;
        // The client checked the bytes against the source's CRC; the append checks again.
        let crc = checksum(&bytes);
        offset = server.with_write(id, move |file| file.append(offset, &bytes, crc)).await?;
    }
    server.with_write(id, move |file| file.seal(Some(len))).await
}

fn source_failed(from: &str, error: ChunkClientError) -> ApiError {
    ApiError::new(ErrorCode::ReplicationSourceFailed, format!("reading from {from}: {error}"))
}

fn parse_id(id: &str) -> Result<ChunkId, ApiError> {
    id.parse().map_err(ApiError::from_chunk)
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
        }
        Err(e) => ApiError::new(ErrorCode::InternalError, format!("cannot encode the answer: {e}")).into_response(),
    }
}

// ---- query strings --------------------------------------------------------------------

/// A parsed query string. (The workspace's axum has no `query` feature; the parameters
/// here are numbers and `host:port`, so a small decoder is enough.)
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query(pairs)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| ApiError::invalid(format!("missing query parameter {name}")))
    }

    fn optional_u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| ApiError::invalid(format!("{name}={v:?} is not a non-negative integer")))
            })
            .transpose()
    }

    fn required_u64(&self, name: &str) -> Result<u64, ApiError> {
        self.optional_u64(name)?.ok_or_else(|| ApiError::invalid(format!("missing query parameter {name}")))
    }

    fn u64_or(&self, name: &str, default: u64) -> Result<u64, ApiError> {
        Ok(self.optional_u64(name)?.unwrap_or(default))
    }
}

/// Decodes `%XX` escapes and `+`; a malformed escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- errors ---------------------------------------------------------------------------

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: ErrorBody,
}

impl ApiError {
    fn new(code: ErrorCode, message: String) -> ApiError {
        let status = match code {
            ErrorCode::InvalidParameter
            | ErrorCode::InvalidChunkId
            | ErrorCode::InvalidMaxSize
            | ErrorCode::ChecksumMismatch
            | ErrorCode::SealBeyondEnd
            | ErrorCode::OutOfRange
            | ErrorCode::TooLarge => StatusCode::BAD_REQUEST,
            ErrorCode::ChunkNotFound => StatusCode::NOT_FOUND,
            ErrorCode::ChunkAlreadyExists
            | ErrorCode::OffsetMismatch
            | ErrorCode::RetryMismatch
            | ErrorCode::ChunkFull
            | ErrorCode::ChunkSealed
            | ErrorCode::ChunkCorrupt => StatusCode::CONFLICT,
            ErrorCode::ChunkPoisoned | ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ReplicationSourceFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::Unauthenticated | ErrorCode::RequestExpired | ErrorCode::RequestReplayed => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::InternalError | ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, body: ErrorBody { code, message, chunk_len: None, block_index: None } }
    }

    fn invalid(message: String) -> ApiError {
        ApiError::new(ErrorCode::InvalidParameter, message)
    }

    fn from_auth(error: AuthError) -> ApiError {
        let code = match error {
            AuthError::Expired { .. } => ErrorCode::RequestExpired,
            AuthError::Replayed => ErrorCode::RequestReplayed,
            AuthError::Busy => ErrorCode::Busy,
            AuthError::Missing
            | AuthError::Malformed(_)
            | AuthError::UnknownKey
            | AuthError::BadSignature
            | AuthError::BodyMismatch => ErrorCode::Unauthenticated,
        };
        ApiError::new(code, error.to_string())
    }

    fn from_chunk(error: ChunkError) -> ApiError {
        let message = error.to_string();
        let (code, chunk_len, block_index) = match error {
            ChunkError::AlreadyExists { .. } => (ErrorCode::ChunkAlreadyExists, None, None),
            ChunkError::NotFound { .. } => (ErrorCode::ChunkNotFound, None, None),
            ChunkError::BadChunkId(_) => (ErrorCode::InvalidChunkId, None, None),
            ChunkError::InvalidMaxSize { .. } => (ErrorCode::InvalidMaxSize, None, None),
            ChunkError::ChecksumMismatch { .. } => (ErrorCode::ChecksumMismatch, None, None),
            ChunkError::OffsetMismatch { actual, .. } => (ErrorCode::OffsetMismatch, Some(actual), None),
            ChunkError::RetryMismatch { .. } => (ErrorCode::RetryMismatch, None, None),
            ChunkError::ChunkFull { len, .. } => (ErrorCode::ChunkFull, Some(len), None),
            ChunkError::Sealed { len } => (ErrorCode::ChunkSealed, Some(len), None),
            ChunkError::SealBeyondEnd { len, .. } => (ErrorCode::SealBeyondEnd, Some(len), None),
            ChunkError::OutOfRange { chunk_len, .. } => (ErrorCode::OutOfRange, Some(chunk_len), None),
            ChunkError::Corrupt { block_index, .. } => (ErrorCode::ChunkCorrupt, None, Some(block_index)),
            ChunkError::BadMetadata { .. } | ChunkError::UnsupportedVersion { .. } => {
                (ErrorCode::ChunkCorrupt, None, None)
            }
            ChunkError::Poisoned => (ErrorCode::ChunkPoisoned, None, None),
            ChunkError::Io { .. } => (ErrorCode::InternalError, None, None),
        };
        let mut api = ApiError::new(code, message);
        api.body.chunk_len = chunk_len;
        api.body.block_index = block_index;
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            warn!(code = ?self.body.code, message = %self.body.message, "chunkserver error");
        }
        match serde_json::to_vec(&self.body) {
            Ok(body) => (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body)
                .into_response(),
            Err(_) => self.status.into_response(),
        }
    }
}
