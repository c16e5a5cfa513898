//! The master: the namespace (files → chunks → replicas), chunkserver membership and health
//! by heartbeat, placement of new chunks, sealing of chunks whose writer is gone, and
//! rate-bounded re-replication.
//!
//! # State
//!
//! The namespace lives in the control-plane store ([`namespace`]); the master keeps a
//! mirror in memory and changes the store first, in one transaction, then the mirror. So
//! whatever it answered survives a crash, and a restarted master starts from the same
//! namespace. What is not stored is rebuilt from heartbeats: which servers are live, what
//! each holds and at what length, and which replicas they found corrupt.
//!
//! # Writers and sealing
//!
//! A chunk is written by one client ([`crate::client::FileWriter`]), which seals it when it
//! moves on (the chunk is full, a replica failed, or the file is done). A chunk allocated by
//! this master is *held* by its writer until sealed or until the writer says it is gone. An
//! unsealed chunk that nobody holds (its writer crashed, or the master restarted) is sealed
//! by the master at [`repair::seal_length`] once every replica's server has reported it, or
//! once the heartbeat timeout has passed since the master started, on whichever replicas
//! are live. Every acknowledged append is on every replica, so nothing acknowledged is cut.
//!
//! # Repair
//!
//! Every tick the master runs [`repair::plan`] over all chunks and starts its copies: the
//! target chunkserver pulls the sealed chunk from the source and seals it; the master then
//! records the new replica. The planner bounds how many copies run at once per server, and
//! each chunkserver paces the bytes of a copy at its configured repair rate
//! ([`crate::flow::Scheduler`]), so a lost server never turns into a repair storm and client
//! writes keep their share. A chunk with more good replicas than wanted (a dead server came
//! back after its replicas were replaced) loses its bad replicas first.
//!
//! Replicas a server holds that the namespace does not give it (files deleted while it was
//! away, surplus copies) are deleted by telling the server in its heartbeat's answer.
//!
//! # Volumes
//!
//! The master also keeps the roots of volumes (cloud disks' random-access files, see
//! [`crate::volume`]) and the files each owns (`master/volumes.rs`). Volume files are not in
//! [`Master::files`] (the layer above garbage-collects what that lists) and only the
//! volume's calls delete them. A writer's calls on a volume file (new chunks, seals) are
//! refused once the volume's epoch has moved past the one the file was made under: that,
//! with the seals an acquire makes, fences a writer that lost its volume.
//!
//! # Clients
//!
//! File clients reach the master through [`crate::master_client::MasterClient`], which
//! [`Master`] implements in process.
//!
//! # Authentication
//!
//! Every request to the master's routes ([`router`]) is signed ([`crate::auth`]): a new
//! chunkserver registers with the cluster secret and is given its id and a token; from then
//! on it speaks with its own key (the token under the cluster secret), which the master
//! checks by recomputing the token from its own key. So a registration under a known id (the
//! one request that moves a server's address) and a heartbeat are only accepted from that
//! server. The master signs its chunkserver calls with the cluster secret, and its orders
//! (create, delete, replicate) with the target server's key, which only it and that server
//! can make: a chunkserver obeys no one else's, and fetches only from the source the master
//! names, a server it registered.

pub mod namespace;
mod volumes;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feitian_meta::{MetaError, Store};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::auth::{Credentials, Keyring, Principal, ServerToken, TokenIssuer, Verifier};
use crate::chunk::{ChunkId, DEFAULT_MAX_SIZE};
use crate::chunk_client::{ChunkClient, ChunkClientError, ChunkClients};
use crate::chunkserver::{ChunkInfo, CorruptChunk, ErrorCode, ServerStatus};
use crate::placement::{place, PlacementError, ServerId, ServerInfo};
use crate::repair::{self, ChunkState, Heartbeats, RepairLimits, RepairTask, ReplicaState};
use crate::volume::{self, VolumeError};

use self::namespace as db;

/// A Pangu file's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileId(pub u64);

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How the master runs.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Replicas per chunk: 1 on a single node, 3 in a cluster.
    pub replication: usize,
    /// The fewest replicas a new chunk may start with when fewer than `replication` servers
    /// are usable (a server is down): writes go on, degraded, and repair adds the missing
    /// replicas once a server can take them. Default: 1 for replication 1, else 2.
    pub min_write_replicas: usize,
    pub chunk_size: u64,
    /// Silence after which a chunkserver is dead and its replicas lost.
    pub heartbeat_timeout: Duration,
    /// How often health is checked and repair planned.
    pub tick: Duration,
    pub repair: RepairLimits,
    /// The cluster secret: what members sign with (and the master's calls to chunkservers).
    pub secret: Keyring,
    /// The master's own key, which chunkservers' identity tokens are made from.
    pub issuer: TokenIssuer,
}

impl MasterConfig {
    /// The defaults, with a fresh random cluster secret and master key (`feitian up` sets
    /// the ones kept in its data directory).
    pub fn new(replication: usize) -> MasterConfig {
        MasterConfig {
            secret: Keyring::generate(),
            issuer: TokenIssuer::generate(),
            replication,
            min_write_replicas: if replication <= 1 { 1 } else { 2 },
            chunk_size: DEFAULT_MAX_SIZE,
            heartbeat_timeout: Duration::from_secs(5),
            tick: Duration::from_millis(500),
            repair: RepairLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("no such file {0}")]
    NoSuchFile(FileId),
    #[error("file {0} is sealed")]
    FileSealed(FileId),
    #[error("chunk {0} is not sealed: seal it before adding the next one")]
    ChunkOpen(ChunkId),
    #[error("cannot place a new chunk: {0}")]
    Placement(#[from] PlacementError),
    #[error("no chunkserver could create the chunk ({0})")]
    Create(String),
    #[error("unknown chunkserver {0}")]
    UnknownServer(u64),
    /// The request is signed, but not by the server it speaks for.
    #[error("{0}")]
    Forbidden(String),
    /// A seal at `len` of a chunk already sealed at another length.
    #[error("chunk {chunk} is sealed at {len} bytes")]
    ChunkSealed { chunk: ChunkId, len: u64 },
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// An acquire or freeze could not seal a volume's segment (no replica answered).
    #[error("cannot seal chunk {chunk} of a volume: {errors}")]
    Fence { chunk: ChunkId, errors: String },
    #[error("control-plane store: {0}")]
    Store(#[from] MetaError),
    #[error("the master is shutting down")]
    Gone,
}

/// A replica as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaLocation {
    pub server: ServerId,
    pub addr: String,
}

/// Where a chunk is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLocation {
    pub id: ChunkId,
    /// The file offset of the chunk's first byte.
    pub file_offset: u64,
    pub max_size: u64,
    pub sealed_len: Option<u64>,
    /// Healthy replicas, live servers first.
    pub replicas: Vec<ReplicaLocation>,
}

/// A file's chunks, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLayout {
    pub id: FileId,
    pub sealed_len: Option<u64>,
    pub chunks: Vec<ChunkLocation>,
}

/// `POST /pangu/v1/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The id this server was given before (kept in its data directory), if any.
    pub server_id: Option<u64>,
    pub addr: String,
    pub rack: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    pub server_id: u64,
    /// A new server's token (hex), its proof of identity from now on; `None` for a known
    /// server, which has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /pangu/v1/heartbeat`: a chunkserver's full report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub server_id: u64,
    pub addr: String,
    pub status: ServerStatus,
    pub chunks: Vec<ChunkInfo>,
    pub corrupt: Vec<CorruptChunk>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Replicas the server should delete (hex chunk ids).
    pub delete: Vec<String>,
}

/// `GET /pangu/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterStatus {
    pub replication: usize,
    pub servers: Vec<ServerView>,
    pub files: u64,
    pub chunks: u64,
    /// Sealed chunks with fewer good replicas than wanted.
    pub under_replicated: u64,
    /// Chunks with no good replica at all.
    pub unrecoverable: u64,
    pub unsealed: u64,
    pub repair: RepairStats,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    pub id: u64,
    pub addr: String,
    pub rack: String,
    pub live: bool,
    pub chunks: u64,
    pub corrupt: u64,
    pub free_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStats {
    pub copies_started: u64,
    pub copies_done: u64,
    pub copies_failed: u64,
    pub bytes_copied: u64,
    pub in_flight: u64,
    pub corrupt_reported: u64,
}

/// A server's replicas as it last reported them: chunk → (length, sealed).
type Report = HashMap<ChunkId, (u64, bool)>;

struct Server {
    addr: String,
    rack: String,
    status: Option<ServerStatus>,
    /// The last report: replica → (len, sealed), and when it arrived.
    reported: Option<(Instant, Report)>,
    corrupt: HashSet<ChunkId>,
}

struct FileMeta {
    sealed_len: Option<u64>,
    chunks: Vec<ChunkId>,
}

struct ChunkMeta {
    file: FileId,
    file_offset: u64,
    max_size: u64,
    sealed_len: Option<u64>,
    replicas: Vec<(ServerId, bool)>,
    /// When this master learnt of it (start-up for chunks loaded from the store).
    known_since: Instant,
}

/// A volume as the master's fence checks need it (the rest is read from the store).
struct VolumeMeta {
    epoch: u64,
    frozen: bool,
}

/// A file a volume owns.
struct VolumeFileMeta {
    volume: String,
    /// The epoch of the writer that made it.
    epoch: u64,
}

struct State {
    servers: BTreeMap<ServerId, Server>,
    heartbeats: Heartbeats,
    files: HashMap<FileId, FileMeta>,
    chunks: BTreeMap<ChunkId, ChunkMeta>,
    /// Unsealed chunks whose writer is alive.
    held: HashSet<ChunkId>,
    /// Chunks the master is sealing now.
    sealing: HashSet<ChunkId>,
    in_flight: Vec<RepairTask>,
    garbage: BTreeSet<(ChunkId, ServerId)>,
    stats: RepairStats,
    volumes: HashMap<String, VolumeMeta>,
    volume_files: HashMap<FileId, VolumeFileMeta>,
    /// Files with a chunk allocation in progress, and how many: an acquire waits for those
    /// of its volume's files before it seals them.
    allocating: HashMap<FileId, usize>,
}

impl State {
    /// Refuses a writer's call on `file` if it is a volume's file and the volume moved to a
    /// newer epoch than the file's, or froze.
    fn check_writer(&self, file: FileId) -> Result<(), MasterError> {
        let Some(f) = self.volume_files.get(&file) else { return Ok(()) };
        let Some(v) = self.volumes.get(&f.volume) else { return Ok(()) };
        if volume::file_writable(f.epoch, v.epoch, v.frozen) {
            return Ok(());
        }
        if v.frozen {
            return Err(VolumeError::VolumeFrozen(f.volume.clone()).into());
        }
        Err(VolumeError::StaleEpoch { volume: f.volume.clone(), current: v.epoch }.into())
    }

    /// Forgets a deleted file: its chunks' replicas become garbage.
    fn forget_file(&mut self, file: FileId) {
        self.volume_files.remove(&file);
        if let Some(f) = self.files.remove(&file) {
            for c in f.chunks {
                self.held.remove(&c);
                if let Some(meta) = self.chunks.remove(&c) {
                    for (s, _) in meta.replicas {
                        self.garbage.insert((c, s));
                    }
                }
            }
        }
    }
}

/// Counts a chunk allocation on a file as in progress while it lives.
struct Allocating<'a> {
    state: &'a Mutex<State>,
    file: FileId,
}

impl<'a> Allocating<'a> {
    fn start(state: &'a Mutex<State>, st: &mut State, file: FileId) -> Allocating<'a> {
        *st.allocating.entry(file).or_default() += 1;
        Allocating { state, file }
    }
}

impl Drop for Allocating<'_> {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if let Some(n) = st.allocating.get_mut(&self.file) {
            *n -= 1;
            if *n == 0 {
                st.allocating.remove(&self.file);
            }
        }
    }
}

/// The master. Shared (`Arc`); [`Master::run`] is its background loop.
pub struct Master {
    store: Store,
    config: MasterConfig,
    state: Mutex<State>,
    origin: Instant,
    /// Its clients to chunkservers, shared with the file clients of this process.
    chunks: ChunkClients,
    /// Checks the signatures of requests to its routes.
    verifier: Arc<Verifier>,
    /// Serialises changes to the volume registry, so that its mirror in `state` follows the
    /// store's order (held for a transaction and the mirror's update, never across I/O to
    /// chunkservers).
    volume_ops: tokio::sync::Mutex<()>,
}

fn now_text() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Master {
    /// Loads the namespace from the store. Every known server gets a full heartbeat
    /// timeout to check in before its replicas count as lost.
    pub fn open(store: Store, config: MasterConfig) -> Result<Arc<Master>, MasterError> {
        let snap = store.read(db::load)?;
        let origin = Instant::now();
        let mut heartbeats = Heartbeats::new(config.heartbeat_timeout);
        let mut servers = BTreeMap::new();
        for s in snap.servers {
            heartbeats.record(ServerId(s.id), Duration::ZERO);
            servers.insert(
                ServerId(s.id),
                Server { addr: s.addr, rack: s.rack, status: None, reported: None, corrupt: HashSet::new() },
            );
        }
        let mut files: HashMap<FileId, FileMeta> = snap
            .files
            .iter()
            .map(|f| (FileId(f.id), FileMeta { sealed_len: f.sealed_len, chunks: Vec::new() }))
            .collect();
        let mut chunks = BTreeMap::new();
        for c in snap.chunks {
            if let Some(f) = files.get_mut(&FileId(c.file_id)) {
                f.chunks.push(ChunkId(c.id));
            }
            chunks.insert(
                ChunkId(c.id),
                ChunkMeta {
                    file: FileId(c.file_id),
                    file_offset: c.file_offset,
                    max_size: c.max_size,
                    sealed_len: c.sealed_len,
                    replicas: Vec::new(),
                    known_since: origin,
                },
            );
        }
        for r in snap.replicas {
            if let Some(c) = chunks.get_mut(&ChunkId(r.chunk_id)) {
                c.replicas.push((ServerId(r.server_id), r.healthy));
            }
        }
        let garbage = snap.garbage.into_iter().map(|(c, s)| (ChunkId(c), ServerId(s))).collect();
        let volumes: HashMap<String, VolumeMeta> =
            snap.volumes.into_iter().map(|v| (v.name, VolumeMeta { epoch: v.epoch, frozen: v.frozen })).collect();
        let volume_files = snap
            .volume_files
            .into_iter()
            .map(|f| (FileId(f.file_id), VolumeFileMeta { volume: f.volume, epoch: f.epoch }))
            .collect();
        info!(
            servers = servers.len(),
            files = files.len(),
            chunks = chunks.len(),
            volumes = volumes.len(),
            "pangu master loaded its namespace"
        );
        Ok(Arc::new(Master {
            store,
            state: Mutex::new(State {
                servers,
                heartbeats,
                files,
                chunks,
                held: HashSet::new(),
                sealing: HashSet::new(),
                in_flight: Vec::new(),
                garbage,
                stats: RepairStats::default(),
                volumes,
                volume_files,
                allocating: HashMap::new(),
            }),
            origin,
            chunks: ChunkClients::new(Credentials::cluster(&config.secret)),
            verifier: Arc::new(Verifier::master(config.secret.clone(), config.issuer.clone())),
            volume_ops: tokio::sync::Mutex::new(()),
            config,
        }))
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// A pooled client to a chunkserver.
    pub fn chunk_client(&self, addr: &str) -> ChunkClient {
        self.chunks.get(addr)
    }

    /// A client for the master's orders to server `id` (create, delete, replicate), which
    /// it signs with that server's own key.
    fn order_client(&self, id: ServerId, addr: &str) -> ChunkClient {
        self.chunks.get(addr).with_credentials(Credentials::server(id, &self.server_token(id), &self.config.secret))
    }

    /// Server `id`'s token. For `feitian up`, whose embedded chunkserver's data directory
    /// is its own: one registered before tokens existed is given its token there.
    pub fn server_token(&self, id: ServerId) -> ServerToken {
        self.config.issuer.token(id)
    }

    /// The master's chunkserver clients, for file clients in the same process (so that they
    /// share its pool and its in-process chunkservers).
    pub fn chunk_clients(&self) -> &ChunkClients {
        &self.chunks
    }

    /// Says that the chunkserver at `addr` runs in this process: appends to and reads from
    /// it skip HTTP.
    pub fn attach_local(&self, addr: &str, server: crate::chunkserver::ChunkServer) {
        self.chunks.attach_local(addr, server);
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&feitian_meta::Transaction<'_>) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MasterError> {
        self.store.write_async(f).await.map_err(Into::into)
    }

    // ---- membership --------------------------------------------------------------------

    /// Registers a chunkserver signed as `principal`. A known id (a server coming back,
    /// perhaps at another address) must be signed with that server's own key; a new server
    /// (no id) gets an id and its token.
    pub async fn register(&self, req: RegisterRequest, principal: Principal) -> Result<RegisterReply, MasterError> {
        let (addr, rack) = (req.addr.clone(), req.rack.clone());
        let (id, token) = match req.server_id {
            Some(id) => {
                if principal != Principal::Server(ServerId(id)) {
                    warn!(server = id, addr = %req.addr, ?principal, "refused a registration under a known id without its key");
                    return Err(MasterError::Forbidden(format!(
                        "registering as server {id} takes that server's key, not {principal:?}'s"
                    )));
                }
                let known = self.db(move |tx| db::update_server(tx, id, &addr, &rack)).await?;
                if !known {
                    return Err(MasterError::UnknownServer(id));
                }
                (id, None)
            }
            None => {
                let id = self.db(move |tx| db::insert_server(tx, &addr, &rack, &now_text())).await?;
                (id, Some(self.server_token(ServerId(id)).to_hex()))
            }
        };
        let now = self.now();
        let mut st = self.state.lock();
        let server = st.servers.entry(ServerId(id)).or_insert_with(|| Server {
            addr: req.addr.clone(),
            rack: req.rack.clone(),
            status: None,
            reported: None,
            corrupt: HashSet::new(),
        });
        server.addr = req.addr.clone();
        server.rack = req.rack.clone();
        st.heartbeats.record(ServerId(id), now);
        info!(server = id, addr = %req.addr, rack = %req.rack, "chunkserver registered");
        Ok(RegisterReply { server_id: id, token })
    }

    /// Takes a chunkserver's report, signed as `principal` (it must be that server);
    /// answers with the replicas it should delete.
    pub fn heartbeat(&self, hb: HeartbeatRequest, principal: Principal) -> Result<HeartbeatReply, MasterError> {
        let id = ServerId(hb.server_id);
        if principal != Principal::Server(id) {
            return Err(MasterError::Forbidden(format!(
                "a heartbeat for server {id} takes that server's key, not {principal:?}'s"
            )));
        }
        let now = self.now();
        let mut st = self.state.lock();
        let State { servers, heartbeats, chunks, garbage, in_flight, stats, .. } = &mut *st;
        let server = servers.get_mut(&id).ok_or(MasterError::UnknownServer(hb.server_id))?;
        if server.addr != hb.addr {
            return Err(MasterError::UnknownServer(hb.server_id)); // re-register first
        }
        heartbeats.record(id, now);
        let reported: HashMap<ChunkId, (u64, bool)> = hb.chunks.iter().map(|c| (c.id, (c.len, c.sealed))).collect();
        for c in &hb.corrupt {
            if server.corrupt.insert(c.id) {
                stats.corrupt_reported += 1;
                warn!(server = %id, chunk = %c.id, reason = %c.reason, "chunkserver reports a corrupt replica");
            }
        }
        server.corrupt.retain(|c| hb.corrupt.iter().any(|x| x.id == *c));
        let mut delete = Vec::new();
        for (chunk, _) in reported.iter() {
            let mine = chunks.get(chunk).is_some_and(|c| c.replicas.iter().any(|(s, _)| *s == id));
            let copying = in_flight.iter().any(|t| t.chunk == *chunk && t.target == id);
            if !mine && !copying {
                delete.push(chunk.to_string());
            }
        }
        for c in hb.corrupt.iter().map(|c| c.id) {
            let known = chunks.contains_key(&c);
            if !known {
                delete.push(c.to_string());
            }
        }
        // Garbage the server no longer has is done.
        garbage.retain(|(c, s)| *s != id || reported.contains_key(c) || hb.corrupt.iter().any(|x| x.id == *c));
        server.reported = Some((Instant::now(), reported));
        server.status = Some(hb.status);
        delete.sort();
        delete.dedup();
        Ok(HeartbeatReply { delete })
    }

    // ---- files -------------------------------------------------------------------------

    pub async fn create_file(&self) -> Result<FileId, MasterError> {
        let replication = self.config.replication as u32;
        let id = self.db(move |tx| db::insert_file(tx, replication, &now_text())).await?;
        self.state.lock().files.insert(FileId(id), FileMeta { sealed_len: None, chunks: Vec::new() });
        Ok(FileId(id))
    }

    /// Every file but volumes' files, for garbage collection by the layer above.
    pub fn files(&self) -> Vec<FileId> {
        let st = self.state.lock();
        let mut v: Vec<FileId> = st.files.keys().filter(|f| !st.volume_files.contains_key(f)).copied().collect();
        v.sort();
        v
    }

    pub fn layout(&self, file: FileId) -> Result<FileLayout, MasterError> {
        let st = self.state.lock();
        let f = st.files.get(&file).ok_or(MasterError::NoSuchFile(file))?;
        let now = self.now();
        let chunks = f
            .chunks
            .iter()
            .filter_map(|id| st.chunks.get(id).map(|c| (id, c)))
            .map(|(id, c)| {
                let mut replicas: Vec<(bool, ReplicaLocation)> = c
                    .replicas
                    .iter()
                    .filter(|(s, healthy)| *healthy && st.servers.get(s).is_some_and(|srv| !srv.corrupt.contains(id)))
                    .filter_map(|(s, _)| {
                        let srv = st.servers.get(s)?;
                        Some((!st.heartbeats.is_live(*s, now), ReplicaLocation { server: *s, addr: srv.addr.clone() }))
                    })
                    .collect();
                replicas.sort_by_key(|(dead, _)| *dead);
                ChunkLocation {
                    id: *id,
                    file_offset: c.file_offset,
                    max_size: c.max_size,
                    sealed_len: c.sealed_len,
                    replicas: replicas.into_iter().map(|(_, r)| r).collect(),
                }
            })
            .collect();
        Ok(FileLayout { id: file, sealed_len: f.sealed_len, chunks })
    }

    /// Adds a chunk at the end of `file`, on servers not in `exclude`, creates its replicas
    /// and hands it to the caller as its writer.
    pub async fn allocate_chunk(&self, file: FileId, exclude: &[ServerId]) -> Result<ChunkLocation, MasterError> {
        let chunk_size = self.config.chunk_size;
        let (seq, file_offset, chosen, _allocating) = {
            let mut st = self.state.lock();
            let f = st.files.get(&file).ok_or(MasterError::NoSuchFile(file))?;
            if f.sealed_len.is_some() {
                return Err(MasterError::FileSealed(file));
            }
            st.check_writer(file)?;
            let f = st.files.get(&file).ok_or(MasterError::NoSuchFile(file))?;
            let file_offset = match f.chunks.last() {
                None => 0,
                Some(last) => {
                    let c = &st.chunks[last];
                    c.file_offset + c.sealed_len.ok_or(MasterError::ChunkOpen(*last))?
                }
            };
            let infos = self.server_infos(&st);
            let chosen = match place(&infos, self.config.replication, exclude, chunk_size) {
                Ok(chosen) => chosen,
                Err(PlacementError::NotEnoughServers { usable, .. }) if usable >= self.config.min_write_replicas => {
                    warn!(file = %file, usable, wanted = self.config.replication, "placing a chunk degraded");
                    place(&infos, usable, exclude, chunk_size)?
                }
                Err(e) => return Err(e.into()),
            };
            let chosen: Vec<(ServerId, String)> =
                chosen.into_iter().map(|s| (s, st.servers[&s].addr.clone())).collect();
            let seq = f.chunks.len() as u32;
            // Until this returns, an acquire of the file's volume waits before it seals.
            let allocating = Allocating::start(&self.state, &mut st, file);
            (seq, file_offset, chosen, allocating)
        };
        let servers: Vec<u64> = chosen.iter().map(|(s, _)| s.0).collect();
        let id =
            ChunkId(self.db(move |tx| db::insert_chunk(tx, file.0, seq, file_offset, chunk_size, &servers)).await?);
        {
            let mut st = self.state.lock();
            st.chunks.insert(
                id,
                ChunkMeta {
                    file,
                    file_offset,
                    max_size: chunk_size,
                    sealed_len: None,
                    replicas: chosen.iter().map(|(s, _)| (*s, true)).collect(),
                    known_since: Instant::now(),
                },
            );
            st.held.insert(id);
            if let Some(f) = st.files.get_mut(&file) {
                f.chunks.push(id);
            }
        }
        let creates = chosen.iter().map(|(s, addr)| {
            let client = self.order_client(*s, addr);
            async move { (*s, addr.clone(), client.create(id, chunk_size).await) }
        });
        let results = futures_util::future::join_all(creates).await;
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for (s, addr, r) in &results {
            if let Err(e) = r {
                warn!(chunk = %id, server = %s, error = %e, "cannot create a replica");
                failed.push(*s);
                errors.push(format!("{addr}: {e}"));
            }
        }
        if !failed.is_empty() {
            let gone = failed.clone();
            self.db(move |tx| gone.iter().try_for_each(|s| db::drop_replica(tx, id.0, s.0))).await?;
            let mut st = self.state.lock();
            if let Some(c) = st.chunks.get_mut(&id) {
                c.replicas.retain(|(s, _)| !failed.contains(s));
            }
            for s in &failed {
                st.garbage.insert((id, *s));
            }
        }
        let replicas: Vec<ReplicaLocation> = chosen
            .iter()
            .filter(|(s, _)| !failed.contains(s))
            .map(|(s, addr)| ReplicaLocation { server: *s, addr: addr.clone() })
            .collect();
        if replicas.len() < self.config.min_write_replicas {
            // Sealed empty, so the file can move on to another chunk.
            self.record_seal(id, 0, &[]).await?;
            return Err(MasterError::Create(errors.join("; ")));
        }
        Ok(ChunkLocation { id, file_offset, max_size: chunk_size, sealed_len: None, replicas })
    }

    /// The writer sealed `chunk` at `len` on every replica but those in `failed`, which are
    /// recorded as unhealthy (to be replaced).
    ///
    /// Refused for a chunk of a volume's file made under an older epoch (the volume's new
    /// writer sealed it).
    pub async fn chunk_sealed(&self, chunk: ChunkId, len: u64, failed: &[ServerId]) -> Result<(), MasterError> {
        {
            let st = self.state.lock();
            if let Some(c) = st.chunks.get(&chunk) {
                st.check_writer(c.file)?;
            }
        }
        self.record_seal(chunk, len, failed).await
    }

    /// Records a seal; refused (and nothing changed) if the chunk is sealed at another
    /// length already, so a late seal can never shorten a chunk.
    async fn record_seal(&self, chunk: ChunkId, len: u64, failed: &[ServerId]) -> Result<(), MasterError> {
        let bad = failed.to_vec();
        self.store
            .write_async(move |tx| {
                if let Some(sealed) = db::chunk_sealed_len(tx, chunk.0)? {
                    if sealed != len {
                        return Err(MasterError::ChunkSealed { chunk, len: sealed });
                    }
                }
                db::seal_chunk(tx, chunk.0, len)?;
                bad.iter().try_for_each(|s| db::set_replica(tx, chunk.0, s.0, false))?;
                Ok(())
            })
            .await?;
        let mut st = self.state.lock();
        st.held.remove(&chunk);
        st.sealing.remove(&chunk);
        if let Some(c) = st.chunks.get_mut(&chunk) {
            c.sealed_len = Some(len);
            for (s, healthy) in c.replicas.iter_mut() {
                if failed.contains(s) {
                    *healthy = false;
                }
            }
        }
        Ok(())
    }

    /// The writer of `chunk` is gone without sealing it: the master seals it.
    pub fn writer_gone(&self, chunk: ChunkId) {
        self.state.lock().held.remove(&chunk);
    }

    /// Seals a file at `len` (its writer's call: refused for a volume's file of an older
    /// epoch).
    pub async fn seal_file(&self, file: FileId, len: u64) -> Result<(), MasterError> {
        self.state.lock().check_writer(file)?;
        self.record_file_seal(file, len).await
    }

    async fn record_file_seal(&self, file: FileId, len: u64) -> Result<(), MasterError> {
        self.db(move |tx| db::seal_file(tx, file.0, len)).await?;
        if let Some(f) = self.state.lock().files.get_mut(&file) {
            f.sealed_len = Some(len);
        }
        Ok(())
    }

    /// Deletes a file; its replicas are deleted from their servers in the background. A
    /// volume's file is refused: only the volume's calls delete it.
    pub async fn delete_file(&self, file: FileId) -> Result<(), MasterError> {
        if let Some(f) = self.state.lock().volume_files.get(&file) {
            return Err(VolumeError::OwnedByVolume { file, volume: f.volume.clone() }.into());
        }
        self.db(move |tx| db::delete_file(tx, file.0)).await?;
        self.state.lock().forget_file(file);
        Ok(())
    }

    /// A client read a corrupt block from `server`'s replica of `chunk`.
    pub fn report_corrupt(&self, chunk: ChunkId, server: ServerId) {
        let mut st = self.state.lock();
        if let Some(s) = st.servers.get_mut(&server) {
            if s.corrupt.insert(chunk) {
                st.stats.corrupt_reported += 1;
                warn!(server = %server, chunk = %chunk, "a client read a corrupt block; the replica will be repaired");
            }
        }
    }

    pub fn status(&self) -> MasterStatus {
        let st = self.state.lock();
        let now = self.now();
        let states = self.chunk_states(&st, now);
        let infos = self.server_infos(&st);
        let plan = repair::plan(&states, &infos, &st.heartbeats, now, &st.in_flight, self.config.repair);
        let live = |s: ServerId| st.heartbeats.is_live(s, now);
        let mut under = 0;
        for c in &states {
            if c.sealed.is_some() {
                let good = c.replicas.iter().filter(|r| r.healthy && live(r.server) && Some(r.len) == c.sealed).count();
                if good < c.wanted {
                    under += 1;
                }
            }
        }
        MasterStatus {
            replication: self.config.replication,
            servers: st
                .servers
                .iter()
                .map(|(id, s)| ServerView {
                    id: id.0,
                    addr: s.addr.clone(),
                    rack: s.rack.clone(),
                    live: live(*id),
                    chunks: s.reported.as_ref().map(|(_, r)| r.len() as u64).unwrap_or(0),
                    corrupt: s.corrupt.len() as u64,
                    free_bytes: s.status.as_ref().map(|x| x.free_bytes).unwrap_or(0),
                })
                .collect(),
            files: st.files.len() as u64,
            chunks: st.chunks.len() as u64,
            under_replicated: under,
            unrecoverable: plan.unrecoverable.len() as u64,
            unsealed: st.chunks.values().filter(|c| c.sealed_len.is_none()).count() as u64,
            repair: RepairStats { in_flight: st.in_flight.len() as u64, ..st.stats.clone() },
        }
    }

    fn server_infos(&self, st: &State) -> Vec<ServerInfo> {
        let now = self.now();
        let mut load: HashMap<ServerId, u32> = HashMap::new();
        for c in &st.held {
            if let Some(meta) = st.chunks.get(c) {
                for (s, _) in &meta.replicas {
                    *load.entry(*s).or_default() += 1;
                }
            }
        }
        st.servers
            .iter()
            .map(|(id, s)| ServerInfo {
                id: *id,
                rack: s.rack.clone(),
                // Until its first report, a server is assumed to have room.
                free_bytes: s.status.as_ref().map(|x| x.free_bytes).unwrap_or(u64::MAX),
                alive: st.heartbeats.is_live(*id, now),
                draining: false,
                load: load.get(id).copied().unwrap_or(0),
            })
            .collect()
    }

    /// The planner's view of every chunk that holds bytes. A replica is healthy when the store says so, its
    /// server does not list it corrupt, and the server's last report (if it was taken after
    /// the master learnt of the chunk) has it; its length is the reported one.
    fn chunk_states(&self, st: &State, _now: Duration) -> Vec<ChunkState> {
        st.chunks
            .iter()
            // A chunk sealed empty (its first append failed) holds nothing to keep.
            .filter(|(_, c)| c.sealed_len != Some(0))
            .map(|(id, c)| ChunkState {
                id: *id,
                replicas: c
                    .replicas
                    .iter()
                    .map(|(s, healthy)| {
                        let server = st.servers.get(s);
                        let corrupt = server.is_some_and(|x| x.corrupt.contains(id));
                        let (present, len) = match server.and_then(|x| x.reported.as_ref()) {
                            Some((at, r)) if *at > c.known_since + Duration::from_secs(2) => match r.get(id) {
                                Some((len, _)) => (true, *len),
                                None => (false, 0),
                            },
                            Some((_, r)) => (true, r.get(id).map(|x| x.0).or(c.sealed_len).unwrap_or(0)),
                            None => (true, c.sealed_len.unwrap_or(0)),
                        };
                        ReplicaState { server: *s, len, healthy: *healthy && !corrupt && present }
                    })
                    .collect(),
                sealed: c.sealed_len,
                wanted: self.config.replication,
            })
            .collect()
    }

    // ---- the background loop -----------------------------------------------------------

    /// Checks health, seals abandoned chunks, starts repairs and deletes garbage, every
    /// tick, until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.round().await {
                warn!(error = %e, "pangu master round failed");
            }
        }
    }

    /// One round of the loop (public for tests that drive it by hand).
    pub async fn round(self: &Arc<Self>) -> Result<(), MasterError> {
        let now = self.now();
        let (plan, seals, trims, garbage) = {
            let mut st = self.state.lock();
            let states = self.chunk_states(&st, now);
            let infos = self.server_infos(&st);
            let plan = repair::plan(&states, &infos, &st.heartbeats, now, &st.in_flight, self.config.repair);
            for t in &plan.cancel {
                st.in_flight.retain(|x| x != t);
            }
            // Abandoned unsealed chunks.
            let past_start = now > self.config.heartbeat_timeout;
            let mut seals = Vec::new();
            for cs in states.iter().filter(|c| c.sealed.is_none()) {
                if st.held.contains(&cs.id) || st.sealing.contains(&cs.id) {
                    continue;
                }
                let all_reported = cs.replicas.iter().all(|r| {
                    st.heartbeats.is_live(r.server, now)
                        && st.servers.get(&r.server).is_some_and(|s| s.reported.is_some())
                });
                if !(all_reported || past_start) {
                    continue;
                }
                let live = |s: ServerId| st.heartbeats.is_live(s, now);
                if let Some(len) = repair::seal_length(&cs.replicas, live) {
                    let targets: Vec<(ServerId, String)> = cs
                        .replicas
                        .iter()
                        .filter(|r| r.healthy && live(r.server))
                        .filter_map(|r| st.servers.get(&r.server).map(|s| (r.server, s.addr.clone())))
                        .collect();
                    let skipped: Vec<ServerId> =
                        cs.replicas.iter().map(|r| r.server).filter(|s| !targets.iter().any(|t| t.0 == *s)).collect();
                    seals.push((cs.id, len, targets, skipped));
                }
            }
            for (id, ..) in &seals {
                st.sealing.insert(*id);
            }
            // Surplus: sealed chunks with enough good replicas drop their bad ones.
            let mut trims = Vec::new();
            for cs in states.iter().filter(|c| c.sealed.is_some()) {
                let live = |s: ServerId| st.heartbeats.is_live(s, now);
                let good: Vec<&ReplicaState> =
                    cs.replicas.iter().filter(|r| r.healthy && live(r.server) && Some(r.len) == cs.sealed).collect();
                if good.len() >= cs.wanted && good.len() < cs.replicas.len() {
                    let busy = st.in_flight.iter().any(|t| t.chunk == cs.id);
                    if !busy {
                        for r in cs.replicas.iter().filter(|r| !good.iter().any(|g| g.server == r.server)) {
                            trims.push((cs.id, r.server));
                        }
                    }
                }
            }
            let garbage: Vec<(ChunkId, ServerId, String)> = st
                .garbage
                .iter()
                .filter(|(_, s)| st.heartbeats.is_live(*s, now))
                .filter_map(|(c, s)| st.servers.get(s).map(|x| (*c, *s, x.addr.clone())))
                .take(256)
                .collect();
            for t in &plan.tasks {
                st.in_flight.push(t.clone());
                st.stats.copies_started += 1;
            }
            (plan, seals, trims, garbage)
        };

        for (chunk, len, targets, skipped) in seals {
            self.seal_abandoned(chunk, len, targets, skipped).await;
        }
        if !trims.is_empty() {
            let t = trims.clone();
            self.db(move |tx| t.iter().try_for_each(|(c, s)| db::drop_replica(tx, c.0, s.0))).await?;
            let mut st = self.state.lock();
            for (c, s) in trims {
                info!(chunk = %c, server = %s, "dropping a surplus bad replica");
                if let Some(meta) = st.chunks.get_mut(&c) {
                    meta.replicas.retain(|(x, _)| *x != s);
                }
                if let Some(server) = st.servers.get_mut(&s) {
                    server.corrupt.remove(&c);
                }
                st.garbage.insert((c, s));
            }
        }
        for (chunk, server, addr) in garbage {
            let client = self.order_client(server, &addr);
            match client.delete(chunk).await {
                Ok(()) => {
                    self.db(move |tx| db::forget_garbage(tx, chunk.0, server.0)).await?;
                    self.state.lock().garbage.remove(&(chunk, server));
                }
                Err(e) => warn!(chunk = %chunk, server = %server, error = %e, "cannot delete a garbage replica yet"),
            }
        }
        for task in plan.tasks {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.copy(task).await });
        }
        Ok(())
    }

    async fn seal_abandoned(&self, chunk: ChunkId, len: u64, targets: Vec<(ServerId, String)>, skipped: Vec<ServerId>) {
        let mut failed = skipped;
        for (s, addr) in &targets {
            match self.chunk_client(addr).seal(chunk, Some(len)).await {
                Ok(_) => {}
                Err(ChunkClientError::Server { code: ErrorCode::ChunkSealed, body, .. })
                    if body.chunk_len == Some(len) => {}
                Err(e) => {
                    warn!(chunk = %chunk, server = %s, error = %e, "cannot seal an abandoned chunk's replica");
                    failed.push(*s);
                }
            }
        }
        if targets.iter().all(|(s, _)| failed.contains(s)) {
            self.state.lock().sealing.remove(&chunk);
            return;
        }
        info!(chunk = %chunk, len, "sealed a chunk whose writer is gone");
        if let Err(e) = self.record_seal(chunk, len, &failed).await {
            warn!(chunk = %chunk, error = %e, "cannot record a seal");
            self.state.lock().sealing.remove(&chunk);
        }
    }

    async fn copy(self: Arc<Self>, task: RepairTask) {
        let (source, target) = {
            let st = self.state.lock();
            (st.servers.get(&task.source).map(|s| s.addr.clone()), st.servers.get(&task.target).map(|s| s.addr.clone()))
        };
        let result = match (source, target) {
            (Some(source), Some(target)) => {
                info!(chunk = %task.chunk, from = %source, to = %target, bytes = task.bytes, "re-replicating");
                self.order_client(task.target, &target)
                    .with_timeout(Duration::from_secs(3600))
                    .replicate(task.chunk, &source, task.bytes)
                    .await
                    .map_err(|e| e.to_string())
            }
            _ => Err("a server of the task is unknown".to_owned()),
        };
        let recorded = match result {
            Ok(_) => {
                let (c, s) = (task.chunk, task.target);
                self.db(move |tx| db::set_replica(tx, c.0, s.0, true)).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        let mut st = self.state.lock();
        st.in_flight.retain(|t| *t != task);
        match recorded {
            Ok(()) => {
                st.stats.copies_done += 1;
                st.stats.bytes_copied += task.bytes;
                if let Some(server) = st.servers.get_mut(&task.target) {
                    server.corrupt.remove(&task.chunk);
                    if let Some((_, r)) = server.reported.as_mut() {
                        r.insert(task.chunk, (task.bytes, true));
                    }
                }
                if let Some(c) = st.chunks.get_mut(&task.chunk) {
                    match c.replicas.iter_mut().find(|(s, _)| *s == task.target) {
                        Some(r) => r.1 = true,
                        None => c.replicas.push((task.target, true)),
                    }
                } else {
                    // Deleted meanwhile: the new copy is garbage.
                    st.garbage.insert((task.chunk, task.target));
                }
                info!(chunk = %task.chunk, server = %task.target, "replica restored");
            }
            Err(e) => {
                st.stats.copies_failed += 1;
                warn!(chunk = %task.chunk, target = %task.target, error = %e, "re-replication failed; it will be planned again");
            }
        }
    }
}

/// The most a request to the master may carry: a heartbeat lists every replica of its server
/// (about 80 bytes each).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The master's HTTP routes, for chunkservers (register, heartbeat) and operators (status),
/// every one behind the signature check (see the module docs). Served alone: the signature
/// covers the path as the client sent it.
pub fn router(master: Arc<Master>) -> axum::Router {
    use axum::extract::{Extension, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use axum::Json;

    fn refuse(e: MasterError) -> (StatusCode, String) {
        let status = match e {
            MasterError::UnknownServer(_) => StatusCode::NOT_FOUND,
            MasterError::Forbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, e.to_string())
    }
    fn unauthenticated(e: crate::auth::AuthError) -> axum::response::Response {
        let status = match e {
            crate::auth::AuthError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        (status, e.to_string()).into_response()
    }
    async fn register(
        State(m): State<Arc<Master>>,
        Extension(principal): Extension<Principal>,
        Json(req): Json<RegisterRequest>,
    ) -> Result<Json<RegisterReply>, (StatusCode, String)> {
        m.register(req, principal).await.map(Json).map_err(refuse)
    }
    async fn heartbeat(
        State(m): State<Arc<Master>>,
        Extension(principal): Extension<Principal>,
        Json(req): Json<HeartbeatRequest>,
    ) -> Result<Json<HeartbeatReply>, (StatusCode, String)> {
        m.heartbeat(req, principal).map(Json).map_err(refuse)
    }
    async fn status(State(m): State<Arc<Master>>) -> Json<MasterStatus> {
        Json(m.status())
    }
    let guard = crate::auth::layer::Guard {
        verifier: Arc::clone(&master.verifier),
        refuse: unauthenticated,
        check_body_sha256: Some(MAX_REQUEST_BYTES),
    };
    axum::Router::new()
        .route("/pangu/v1/register", post(register))
        .route("/pangu/v1/heartbeat", post(heartbeat))
        .route("/pangu/v1/status", get(status))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(master)
        // Outermost: nothing runs, and no body is read, before the signature is checked.
        .layer(axum::middleware::from_fn_with_state(guard, crate::auth::layer::guard))
}
