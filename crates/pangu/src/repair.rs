//! Replica health and re-replication planning: the master's view of chunks and servers in,
//! a prioritised list of copies out.
//!
//! # Which replicas are lost
//!
//! A server is *live* when it heartbeated within the timeout ([`Heartbeats`]) and the master
//! has not marked it down (`ServerInfo::alive`). A replica is *good* when its server is
//! live, no corruption was reported for it (a chunkserver whose read or scrub fails a block
//! checksum reports the replica, which then never serves again), and, for a sealed chunk,
//! it has exactly the sealed length. Any other replica is lost: its server is dead, it is
//! corrupt, or it is stale (it missed the seal: a server that was away when the chunk was
//! sealed, or a copy that never finished). A dead server's replicas count again if it comes
//! back before they are replaced; the surplus is then the master's to trim.
//!
//! A replica on a draining server is good (it is still a fine source) but does not count
//! towards the chunk's wanted replicas, so draining a server re-replicates its chunks
//! through the same path, after real losses (see the priority below).
//!
//! # What is done about it
//!
//! - A sealed chunk with fewer counted replicas than it wants gets one [`RepairTask`]: copy
//!   the whole chunk from a good replica to a new server placed by
//!   [`placement::place_repair`](crate::placement::place_repair) (another rack if possible).
//!   Never from a corrupt, dead or stale replica. If the only server that can take it holds
//!   a corrupt or stale replica of the chunk, that server is the target and the copy
//!   replaces its bad replica (otherwise a 3-server cluster could never heal a flipped bit).
//! - A sealed chunk without any good replica is *unrecoverable* for now: there is nothing to
//!   copy from. It is reported, never deleted: a dead server may yet come back with it.
//! - An unsealed chunk that lost a replica is not copied: its length is still moving. It is
//!   reported as needing a seal, at [`seal_length`]; once sealed it is repaired like any
//!   other. Whether to seal now (the writer is gone) or let the writer do it is the
//!   caller's call, since only it knows the writer's lease.
//!
//! # Priority and flow control
//!
//! Chunks with the fewest good replicas go first (one down to a single copy before one down
//! to two), then those with fewer counted replicas (a loss before a drain), then by id. A
//! chunk gets at most one task at a time: not a second while one is in flight (an input),
//! so a chunk that lost two replicas gets its second copy in a later round. This keeps each
//! round's decisions simple and a failed copy cheap to retry.
//!
//! A server's failure makes all its chunks need a copy at once; planning them all would be
//! the repair storm the talk warns about. So a round plans at most
//! [`RepairLimits::max_new_tasks`], and no server is the source or target of more than
//! [`RepairLimits::max_tasks_per_server`] copies at a time (in flight and planned together).
//! The rest wait for a later round, in priority order. Each planned copy also adds to its
//! target's load and takes its bytes from the target's free space in the planner's view,
//! so one round's copies spread over many targets. The bytes of each copy are then paced by
//! the servers' [`flow::Scheduler`](crate::flow::Scheduler), which keeps a share for
//! client writes.
//!
//! # Time
//!
//! `now` and heartbeat times are `Duration`s since any fixed origin of the master's
//! monotonic clock; nothing here reads a clock. A master that starts (or takes over) has
//! no heartbeats yet, so it should record one for every known server at its start, giving
//! each a full timeout to check in before its replicas are declared lost.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::chunk::ChunkId;
use crate::placement::{place_repair_ranked, ServerId, ServerInfo};

/// One replica of a chunk, as the master knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    pub server: ServerId,
    /// The committed length the server last reported.
    pub len: u64,
    /// False once a corruption has been reported for this replica: it is never read again.
    pub healthy: bool,
}

/// One chunk: its replicas and what it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkState {
    pub id: ChunkId,
    pub replicas: Vec<ReplicaState>,
    /// `Some(len)` once sealed at `len` bytes (the master records the length it sealed at,
    /// which is what "the full length" of a copy means); `None` while a writer may append.
    pub sealed: Option<u64>,
    /// The replication factor: 3 in a cluster, 1 on a single node.
    pub wanted: usize,
}

/// Copy a sealed chunk from `source` to `target`, which then holds a new replica (or a
/// fresh copy replacing its corrupt or stale one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairTask {
    pub chunk: ChunkId,
    /// A live server with a good replica of the full length.
    pub source: ServerId,
    pub target: ServerId,
    /// The chunk's sealed length: what the copy moves.
    pub bytes: u64,
}

/// Why a replica is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// Its server has not heartbeated within the timeout, is marked down, or is unknown.
    Dead,
    /// A corruption was reported for it.
    Corrupt,
    /// The chunk is sealed and this replica's length (`len`) is not the sealed length.
    Stale { len: u64 },
}

/// A replica found lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostReplica {
    pub chunk: ChunkId,
    pub server: ServerId,
    pub reason: LossReason,
}

/// An unsealed chunk that lost a replica: seal it at `len` ([`seal_length`]) before it can
/// be repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealNeeded {
    pub chunk: ChunkId,
    pub len: u64,
}

/// How much re-replication one planning round may start: the planner's flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairLimits {
    /// New tasks per round, at most.
    pub max_new_tasks: usize,
    /// Copies a server may be the source or target of at once (in flight and planned).
    /// Zero pauses repair.
    pub max_tasks_per_server: usize,
}

impl Default for RepairLimits {
    /// Two copies per server: enough to keep a server's repair share busy while one copy
    /// starts or finishes, few enough that the bytes are paced by its scheduler rather than
    /// queued on its disk. 64 per round bounds the work of one round, not the total rate.
    fn default() -> Self {
        RepairLimits { max_new_tasks: 64, max_tasks_per_server: 2 }
    }
}

/// The result of one planning round. Chunk lists other than `tasks` and `deferred` are in
/// id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairPlan {
    /// Copies to start, most urgent first.
    pub tasks: Vec<RepairTask>,
    /// Every lost replica seen, by chunk then server.
    pub lost: Vec<LostReplica>,
    /// Chunks with no good replica: nothing to copy from (or, unsealed, to seal at).
    pub unrecoverable: Vec<ChunkId>,
    /// Unsealed chunks that lost a replica: to seal, then repair.
    pub needs_seal: Vec<SealNeeded>,
    /// Chunks that need a copy but no server can take one (too few servers or no space).
    pub unplaceable: Vec<ChunkId>,
    /// Chunks that need a copy but wait for a later round (flow control), most urgent first.
    pub deferred: Vec<ChunkId>,
    /// In-flight tasks whose source or target is no longer live: they will not finish and
    /// should be aborted; their chunk is planned again once they are gone.
    pub cancel: Vec<RepairTask>,
}

/// The last heartbeat of each server, and how long silence may last before it is dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeats {
    timeout: Duration,
    last: BTreeMap<ServerId, Duration>,
}

impl Heartbeats {
    pub fn new(timeout: Duration) -> Heartbeats {
        Heartbeats { timeout, last: BTreeMap::new() }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Records a heartbeat from `server` at `now`. An older time than the one recorded is
    /// ignored, so a delayed message cannot make a server look staler than it is.
    pub fn record(&mut self, server: ServerId, now: Duration) {
        let last = self.last.entry(server).or_insert(now);
        *last = (*last).max(now);
    }

    /// Forgets a server (removed from the cluster).
    pub fn remove(&mut self, server: ServerId) {
        self.last.remove(&server);
    }

    pub fn last(&self, server: ServerId) -> Option<Duration> {
        self.last.get(&server).copied()
    }

    /// Whether `server` heartbeated no longer than the timeout before `now`. A server never
    /// heard from is not live.
    pub fn is_live(&self, server: ServerId, now: Duration) -> bool {
        self.last(server).is_some_and(|last| now.saturating_sub(last) <= self.timeout)
    }
}

/// The length to seal an unsealed chunk at when its writer failed or vanished: the shortest
/// length among its replicas on live servers that are not reported corrupt, or `None` if
/// there is none (then nothing can be sealed until a server returns).
///
/// Why the minimum is safe: an append is acknowledged only once every replica of the chunk
/// has it durably (the rule [`crate::chunk`]'s sealing relies on), so every acknowledged
/// byte is on every replica and the shortest live one still holds them all; bytes past it
/// are on some replicas only and were never acknowledged, so cutting them loses nothing a
/// writer was promised. Sealing there also makes the live replicas identical, so each is
/// then a repair source. Dead replicas are left out because they cannot be asked (they are
/// replaced after the seal), corrupt ones because their content cannot be trusted.
pub fn seal_length(replicas: &[ReplicaState], is_live: impl Fn(ServerId) -> bool) -> Option<u64> {
    replicas.iter().filter(|r| r.healthy && is_live(r.server)).map(|r| r.len).min()
}

/// Looks at every chunk and plans the next round of re-replication (see the module docs).
///
/// `servers` is the master's view of the chunkservers; a server counts as live only if its
/// `alive` is set and `heartbeats` has it live at `now`. `in_flight` are the copies started
/// earlier and not yet finished or aborted.
pub fn plan(
    chunks: &[ChunkState],
    servers: &[ServerInfo],
    heartbeats: &Heartbeats,
    now: Duration,
    in_flight: &[RepairTask],
    limits: RepairLimits,
) -> RepairPlan {
    let mut view = View::new(servers, heartbeats, now);
    let mut plan = RepairPlan::default();
    // Chunks with a copy in flight or planned: never a second one.
    let mut busy_chunks = BTreeSet::new();
    for task in in_flight {
        busy_chunks.insert(task.chunk);
        view.start(task);
        if !view.is_live(task.source) || !view.is_live(task.target) {
            plan.cancel.push(task.clone());
        }
    }

    let mut degraded = Vec::new();
    for chunk in chunks {
        let health = Health::of(chunk, &view);
        plan.lost.extend(health.lost.iter().map(|&(server, reason)| LostReplica { chunk: chunk.id, server, reason }));
        match chunk.sealed {
            None => {
                // Only a loss calls for a seal: a chunk short of replicas for another reason
                // (one is draining) is left to its writer, and repaired once sealed.
                if health.lost.is_empty() || health.counted.len() >= chunk.wanted {
                    continue;
                }
                match seal_length(&chunk.replicas, |server| view.is_live(server)) {
                    Some(len) => plan.needs_seal.push(SealNeeded { chunk: chunk.id, len }),
                    None => plan.unrecoverable.push(chunk.id),
                }
            }
            Some(len) => {
                if health.counted.len() >= chunk.wanted {
                    continue;
                }
                if health.good.is_empty() {
                    plan.unrecoverable.push(chunk.id);
                } else if !busy_chunks.contains(&chunk.id) {
                    degraded.push((health, chunk.id, len));
                }
            }
        }
    }

    degraded.sort_by_key(|(health, id, _)| (health.good.len(), health.counted.len(), *id));
    for (health, chunk, bytes) in degraded {
        if !busy_chunks.insert(chunk) {
            continue; // the same chunk twice in the input
        }
        if plan.tasks.len() >= limits.max_new_tasks {
            plan.deferred.push(chunk);
            continue;
        }
        let source = view.source(&health.good, limits.max_tasks_per_server);
        let target = view.target(&health, bytes, Some(limits.max_tasks_per_server));
        match (source, target) {
            (Some(source), Some(target)) => {
                let task = RepairTask { chunk, source, target, bytes };
                view.start(&task);
                plan.tasks.push(task);
            }
            // Flow control holds it back if some server could take it without the limit.
            _ if view.target(&health, bytes, None).is_some() => plan.deferred.push(chunk),
            _ => plan.unplaceable.push(chunk),
        }
    }

    plan.lost.sort_by_key(|lost| (lost.chunk, lost.server));
    plan.unrecoverable.sort();
    plan.needs_seal.sort_by_key(|seal| seal.chunk);
    plan.unplaceable.sort();
    plan
}

/// A chunk's replicas, sorted out. Each server once, by its first entry.
#[derive(Debug)]
struct Health {
    /// Good replicas: the possible sources.
    good: Vec<ServerId>,
    /// Good replicas not on draining servers: those that count towards `wanted`.
    counted: Vec<ServerId>,
    /// Every server holding a replica, lost or not.
    holders: Vec<ServerId>,
    lost: Vec<(ServerId, LossReason)>,
}

impl Health {
    fn of(chunk: &ChunkState, view: &View) -> Health {
        let mut health = Health { good: Vec::new(), counted: Vec::new(), holders: Vec::new(), lost: Vec::new() };
        for replica in &chunk.replicas {
            if health.holders.contains(&replica.server) {
                continue;
            }
            health.holders.push(replica.server);
            let reason = if !replica.healthy {
                Some(LossReason::Corrupt)
            } else if !view.is_live(replica.server) {
                Some(LossReason::Dead)
            } else {
                chunk.sealed.filter(|&len| len != replica.len).map(|_| LossReason::Stale { len: replica.len })
            };
            match reason {
                Some(reason) => health.lost.push((replica.server, reason)),
                None => {
                    health.good.push(replica.server);
                    if !view.is_draining(replica.server) {
                        health.counted.push(replica.server);
                    }
                }
            }
        }
        health
    }

    /// A live server whose replica is lost but which can be overwritten by a fresh copy.
    fn replaceable(&self, server: ServerId) -> bool {
        self.lost.iter().any(|&(s, reason)| s == server && reason != LossReason::Dead)
    }
}

/// The planner's working view of the servers: liveness from heartbeats, and load, free
/// space and copy counts updated as tasks are planned.
struct View {
    servers: Vec<ServerInfo>,
    /// Where each server is in `servers`: lookups run once per replica.
    index: BTreeMap<ServerId, usize>,
    /// Copies each server is the source or target of (in flight and planned).
    copies: BTreeMap<ServerId, usize>,
}

impl View {
    fn new(servers: &[ServerInfo], heartbeats: &Heartbeats, now: Duration) -> View {
        let mut index = BTreeMap::new();
        let mut view = Vec::with_capacity(servers.len());
        for server in servers {
            if let Entry::Vacant(slot) = index.entry(server.id) {
                slot.insert(view.len());
                view.push(ServerInfo { alive: server.alive && heartbeats.is_live(server.id, now), ..server.clone() });
            }
        }
        View { servers: view, index, copies: BTreeMap::new() }
    }

    fn get(&self, id: ServerId) -> Option<&ServerInfo> {
        self.index.get(&id).and_then(|&i| self.servers.get(i))
    }

    fn is_live(&self, id: ServerId) -> bool {
        self.get(id).is_some_and(|server| server.alive)
    }

    fn is_draining(&self, id: ServerId) -> bool {
        self.get(id).is_some_and(|server| server.draining)
    }

    fn copies(&self, id: ServerId) -> usize {
        self.copies.get(&id).copied().unwrap_or(0)
    }

    /// Accounts for a copy in flight or planned: one more on both ends, and on the target
    /// one more chunk being written, its bytes no longer free.
    fn start(&mut self, task: &RepairTask) {
        *self.copies.entry(task.source).or_default() += 1;
        *self.copies.entry(task.target).or_default() += 1;
        if let Some(target) = self.index.get(&task.target).and_then(|&i| self.servers.get_mut(i)) {
            target.load = target.load.saturating_add(1);
            target.free_bytes = target.free_bytes.saturating_sub(task.bytes);
        }
    }

    /// The good replica to copy from: the server with the fewest copies, then the least
    /// loaded, then the lowest id, among those under the per-server limit.
    fn source(&self, good: &[ServerId], limit: usize) -> Option<ServerId> {
        good.iter()
            .filter(|&&id| self.copies(id) < limit)
            .min_by_key(|&&id| (self.copies(id), self.get(id).map_or(u32::MAX, |s| s.load), id))
            .copied()
    }

    /// Where the new replica goes: placed against the counted replicas' racks, never on a
    /// server that holds a replica of the chunk unless that replica is corrupt or stale (and
    /// then only when no other server in an equally good rack can take it), and, with a
    /// limit, never on a server already in that many copies.
    fn target(&self, health: &Health, bytes: u64, limit: Option<usize>) -> Option<ServerId> {
        let tier = |server: &ServerInfo| {
            if limit.is_some_and(|limit| self.copies(server.id) >= limit) {
                None
            } else if !health.holders.contains(&server.id) {
                Some(0)
            } else if health.replaceable(server.id) {
                Some(1)
            } else {
                None
            }
        };
        place_repair_ranked(&self.servers, &health.counted, bytes, tier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const TIMEOUT: Duration = Duration::from_secs(10);
    const NOW: Duration = Duration::from_secs(100);
    const LEN: u64 = 64 << 20;

    /// Servers `(id, rack)`, all alive with room.
    fn servers(spec: &[(u64, &str)]) -> Vec<ServerInfo> {
        spec.iter()
            .map(|&(id, rack)| ServerInfo {
                id: ServerId(id),
                rack: rack.to_string(),
                free_bytes: 100 * GIB,
                alive: true,
                draining: false,
                load: 0,
            })
            .collect()
    }

    /// Six servers, two per rack a, b, c.
    fn cluster() -> Vec<ServerInfo> {
        servers(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")])
    }

    /// Every server heartbeated just now, except `dead`, silent since time 0.
    fn heartbeats(servers: &[ServerInfo], dead: &[u64]) -> Heartbeats {
        let mut hb = Heartbeats::new(TIMEOUT);
        for server in servers {
            let at = if dead.contains(&server.id.0) { Duration::ZERO } else { NOW };
            hb.record(server.id, at);
        }
        hb
    }

    fn replica(server: u64, len: u64) -> ReplicaState {
        ReplicaState { server: ServerId(server), len, healthy: true }
    }

    fn sealed(id: u64, on: &[u64]) -> ChunkState {
        ChunkState {
            id: ChunkId(id),
            replicas: on.iter().map(|&s| replica(s, LEN)).collect(),
            sealed: Some(LEN),
            wanted: 3,
        }
    }

    fn run(chunks: &[ChunkState], servers: &[ServerInfo], dead: &[u64]) -> RepairPlan {
        plan(chunks, servers, &heartbeats(servers, dead), NOW, &[], RepairLimits::default())
    }

    fn task(chunk: u64, source: u64, target: u64) -> RepairTask {
        RepairTask { chunk: ChunkId(chunk), source: ServerId(source), target: ServerId(target), bytes: LEN }
    }

    #[test]
    fn heartbeats_decide_liveness() {
        let mut hb = Heartbeats::new(TIMEOUT);
        let s = ServerId(1);
        assert!(!hb.is_live(s, NOW), "never heard from");
        hb.record(s, NOW);
        assert!(hb.is_live(s, NOW));
        assert!(hb.is_live(s, NOW + TIMEOUT), "exactly at the timeout is still live");
        assert!(!hb.is_live(s, NOW + TIMEOUT + Duration::from_nanos(1)));
        assert!(hb.is_live(s, NOW - Duration::from_secs(1)), "a heartbeat from the future is live");
        hb.record(s, NOW - Duration::from_secs(5));
        assert_eq!(hb.last(s), Some(NOW), "a delayed heartbeat does not move time back");
        hb.remove(s);
        assert!(!hb.is_live(s, NOW));
    }

    #[test]
    fn a_healthy_cluster_needs_nothing() {
        let servers = cluster();
        let chunks = [sealed(1, &[1, 3, 5]), sealed(2, &[2, 4, 6])];
        assert_eq!(run(&chunks, &servers, &[]), RepairPlan::default());
    }

    #[test]
    fn a_dead_server_is_replaced_in_another_rack() {
        let servers = cluster();
        let plan = run(&[sealed(1, &[1, 3, 5])], &servers, &[5]);
        assert_eq!(plan.lost, [LostReplica { chunk: ChunkId(1), server: ServerId(5), reason: LossReason::Dead }]);
        // Racks a and b hold the good replicas: the copy goes to rack c's other server.
        assert_eq!(plan.tasks, [task(1, 1, 6)]);
        assert!(plan.unrecoverable.is_empty() && plan.deferred.is_empty() && plan.unplaceable.is_empty());
    }

    #[test]
    fn a_server_marked_down_or_unknown_is_dead() {
        let mut servers = cluster();
        servers[4].alive = false; // 5: heartbeating but marked down
        let chunk = sealed(1, &[1, 3, 5, 9]); // 9: not a known server
        let plan = run(&[ChunkState { wanted: 4, ..chunk }], &servers, &[]);
        let dead: Vec<_> = plan.lost.iter().map(|l| (l.server.0, l.reason)).collect();
        assert_eq!(dead, [(5, LossReason::Dead), (9, LossReason::Dead)]);
        assert_eq!(plan.tasks.len(), 1);
    }

    #[test]
    fn corrupt_replicas_are_never_a_source() {
        let servers = cluster();
        let mut chunk = sealed(1, &[1, 3, 5]);
        chunk.replicas[0].healthy = false;
        chunk.replicas[1].healthy = false;
        let plan = run(std::slice::from_ref(&chunk), &servers, &[]);
        assert_eq!(plan.tasks, [task(1, 5, 2)], "from the only good replica, to a rack the good ones do not use");
        assert_eq!(plan.lost.iter().filter(|l| l.reason == LossReason::Corrupt).count(), 2);

        chunk.replicas[2].healthy = false;
        let plan = run(&[chunk], &servers, &[]);
        assert!(plan.tasks.is_empty());
        assert_eq!(plan.unrecoverable, [ChunkId(1)]);
    }

    #[test]
    fn no_good_replica_is_unrecoverable() {
        let servers = cluster();
        let plan = run(&[sealed(7, &[1, 3])], &servers, &[1, 3]);
        assert_eq!(plan.unrecoverable, [ChunkId(7)]);
        assert!(plan.tasks.is_empty());
        // Single node, one replica, corrupt: nothing to copy from either.
        let one = self::servers(&[(1, "")]);
        let mut chunk = sealed(8, &[1]);
        chunk.wanted = 1;
        chunk.replicas[0].healthy = false;
        assert_eq!(run(&[chunk], &one, &[]).unrecoverable, [ChunkId(8)]);
    }

    #[test]
    fn a_stale_replica_is_lost_and_replaced() {
        let servers = cluster();
        let mut chunk = sealed(1, &[1, 3, 5]);
        chunk.replicas[2].len = LEN + 4096; // missed the seal's truncation
        let plan = run(&[chunk], &servers, &[]);
        assert_eq!(
            plan.lost,
            [LostReplica { chunk: ChunkId(1), server: ServerId(5), reason: LossReason::Stale { len: LEN + 4096 } }]
        );
        assert_eq!(plan.tasks, [task(1, 1, 6)]);
    }

    #[test]
    fn fewest_good_replicas_first_then_by_id() {
        let servers = cluster();
        // 3 dies: chunks 10 and 11 are down to two, chunk 20 to one (4 dies too).
        let chunks = [sealed(11, &[1, 3, 5]), sealed(10, &[2, 3, 6]), sealed(20, &[1, 3, 4]), sealed(5, &[2, 4, 6])];
        let plan = plan(
            &chunks,
            &servers,
            &heartbeats(&servers, &[3, 4]),
            NOW,
            &[],
            RepairLimits { max_new_tasks: 10, max_tasks_per_server: 10 },
        );
        let order: Vec<_> = plan.tasks.iter().map(|t| t.chunk.0).collect();
        assert_eq!(order, [20, 5, 10, 11]);
    }

    #[test]
    fn one_task_per_chunk_and_none_while_one_is_in_flight() {
        let servers = cluster();
        // Lost two replicas: one copy now, the next in a later round.
        let plan = run(&[sealed(1, &[1, 3, 5])], &servers, &[3, 5]);
        assert_eq!(plan.tasks.len(), 1);
        // A copy in flight: nothing more for that chunk.
        let in_flight = [task(1, 1, 4)];
        let hb = heartbeats(&servers, &[3, 5]);
        let again = super::plan(&[sealed(1, &[1, 3, 5])], &servers, &hb, NOW, &in_flight, RepairLimits::default());
        assert!(again.tasks.is_empty() && again.deferred.is_empty(), "{again:?}");
        // The same chunk listed twice gets one task.
        let twice = run(&[sealed(1, &[1, 3, 5]), sealed(1, &[1, 3, 5])], &servers, &[5]);
        assert_eq!(twice.tasks.len(), 1);
    }

    #[test]
    fn in_flight_tasks_to_dead_servers_are_cancelled() {
        let servers = cluster();
        let in_flight = [task(1, 1, 6), task(2, 2, 4)];
        let chunks = [sealed(1, &[1, 3, 5]), sealed(2, &[2, 3, 5])];
        let plan = plan(&chunks, &servers, &heartbeats(&servers, &[5, 6]), NOW, &in_flight, RepairLimits::default());
        assert_eq!(plan.cancel, [task(1, 1, 6)]);
        assert!(plan.tasks.is_empty(), "both chunks have a copy in flight until it is aborted");
    }

    /// A server holding many chunks dies: the round is bounded, no server is in more copies
    /// than the limit, the copies spread over sources and targets, and the rest waits.
    #[test]
    fn a_big_loss_is_paced_not_a_storm() {
        let servers: Vec<_> = servers(&(1..=12).map(|i| (i, ["a", "b", "c", "d"][i as usize % 4])).collect::<Vec<_>>());
        // 100 chunks, each with a replica on server 1 and two others.
        let chunks: Vec<_> = (0..100u64).map(|i| sealed(i, &[1, 2 + i % 11, 2 + (i + 5) % 11])).collect();
        let limits = RepairLimits { max_new_tasks: 20, max_tasks_per_server: 2 };
        let plan = plan(&chunks, &servers, &heartbeats(&servers, &[1]), NOW, &[], limits);
        assert!(!plan.tasks.is_empty() && plan.tasks.len() <= 20);
        let mut per_server = BTreeMap::<ServerId, usize>::new();
        for task in &plan.tasks {
            *per_server.entry(task.source).or_default() += 1;
            *per_server.entry(task.target).or_default() += 1;
            assert_ne!(task.source, task.target);
        }
        assert!(per_server.values().all(|&n| n <= 2), "{per_server:?}");
        assert_eq!(plan.tasks.len() + plan.deferred.len(), 100);
        assert!(plan.unplaceable.is_empty());
        // With only in-flight copies keeping every server busy, a second round starts none.
        let second = super::plan(&chunks, &servers, &heartbeats(&servers, &[1]), NOW, &plan.tasks, limits);
        let idle: Vec<_> =
            servers.iter().filter(|s| per_server.get(&s.id).copied().unwrap_or(0) < 2 && s.id != ServerId(1)).collect();
        if idle.len() < 2 {
            assert!(second.tasks.is_empty());
        }
        for task in &second.tasks {
            assert!(per_server.get(&task.source).copied().unwrap_or(0) < 2);
            assert!(per_server.get(&task.target).copied().unwrap_or(0) < 2);
        }
    }

    #[test]
    fn planned_copies_spread_over_targets() {
        // Racks a and b hold the replicas; rack c has three equal servers.
        let servers = servers(&[(1, "a"), (2, "b"), (3, "x"), (4, "c"), (5, "c"), (6, "c")]);
        let chunks: Vec<_> = (0..3).map(|i| sealed(i, &[1, 2, 3])).collect();
        let limits = RepairLimits { max_new_tasks: 10, max_tasks_per_server: 10 };
        let plan = plan(&chunks, &servers, &heartbeats(&servers, &[3]), NOW, &[], limits);
        let targets: BTreeSet<_> = plan.tasks.iter().map(|t| t.target.0).collect();
        assert_eq!(targets, BTreeSet::from([4, 5, 6]), "each planned copy adds load to its target");
    }

    #[test]
    fn no_server_can_take_it() {
        let servers = servers(&[(1, "a"), (2, "b"), (3, "c")]);
        let plan = run(&[sealed(1, &[1, 2, 3])], &servers, &[3]);
        assert_eq!(plan.unplaceable, [ChunkId(1)]);
        assert!(plan.tasks.is_empty() && plan.deferred.is_empty());
        let mut full = servers.clone();
        full.push(ServerInfo {
            id: ServerId(4),
            rack: "d".into(),
            free_bytes: LEN - 1,
            alive: true,
            draining: false,
            load: 0,
        });
        assert_eq!(run(&[sealed(1, &[1, 2, 3])], &full, &[3]).unplaceable, [ChunkId(1)]);
    }

    #[test]
    fn a_corrupt_replica_is_replaced_in_place_when_nowhere_else_fits() {
        // Three servers, three replicas: the only possible target is the corrupt holder.
        let servers = servers(&[(1, "a"), (2, "b"), (3, "c")]);
        let mut chunk = sealed(1, &[1, 2, 3]);
        chunk.replicas[2].healthy = false;
        assert_eq!(run(std::slice::from_ref(&chunk), &servers, &[]).tasks, [task(1, 1, 3)]);
        // With a free server in the same rack, a fresh server is preferred.
        let more = [servers.clone(), self::servers(&[(4, "c")])].concat();
        assert_eq!(run(std::slice::from_ref(&chunk), &more, &[]).tasks, [task(1, 1, 4)]);
        // But rack spread beats freshness: a fresh server in a used rack loses.
        let other_rack = [servers, self::servers(&[(4, "a")])].concat();
        assert_eq!(run(&[chunk], &other_rack, &[]).tasks, [task(1, 1, 3)]);
    }

    #[test]
    fn flow_control_defers_and_says_so() {
        let servers = cluster();
        let chunks: Vec<_> = (0..5).map(|i| sealed(i, &[1, 3, 5])).collect();
        let limits = RepairLimits { max_new_tasks: 2, max_tasks_per_server: 10 };
        let plan = plan(&chunks, &servers, &heartbeats(&servers, &[5]), NOW, &[], limits);
        assert_eq!(plan.tasks.iter().map(|t| t.chunk.0).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(plan.deferred, [ChunkId(2), ChunkId(3), ChunkId(4)]);
        // A zero per-server limit pauses repair: everything waits, nothing is unplaceable.
        let paused = RepairLimits { max_new_tasks: 10, max_tasks_per_server: 0 };
        let plan = super::plan(&chunks, &servers, &heartbeats(&servers, &[5]), NOW, &[], paused);
        assert!(plan.tasks.is_empty());
        assert_eq!(plan.deferred.len(), 5);
    }

    #[test]
    fn draining_servers_are_emptied_after_real_losses() {
        let mut servers = cluster();
        servers[0].draining = true; // 1
        let chunks = [sealed(1, &[1, 3, 5]), sealed(2, &[2, 4, 6])];
        let plan = run(&chunks, &servers, &[6]);
        // Chunk 2 has lost a copy (two left); chunk 1 still has three, one draining.
        assert_eq!(plan.tasks.iter().map(|t| t.chunk.0).collect::<Vec<_>>(), [2, 1]);
        let move_off = &plan.tasks[1];
        assert_ne!(move_off.target, ServerId(1));
        assert_eq!(move_off.target, ServerId(2), "to the draining server's rack, the one now unused");
        assert!(plan.lost.iter().all(|l| l.server != ServerId(1)), "a draining replica is not lost");
    }

    #[test]
    fn unsealed_chunks_are_sealed_before_repair() {
        let servers = cluster();
        let chunk = ChunkState {
            id: ChunkId(3),
            replicas: vec![replica(1, 4096), replica(3, 8192), replica(5, 100)],
            sealed: None,
            wanted: 3,
        };
        // 5 is dead: seal at the shortest live replica, 4096; no copy yet.
        let plan = run(std::slice::from_ref(&chunk), &servers, &[5]);
        assert_eq!(plan.needs_seal, [SealNeeded { chunk: ChunkId(3), len: 4096 }]);
        assert!(plan.tasks.is_empty());
        // Different lengths on live replicas are not stale while unsealed.
        assert_eq!(run(std::slice::from_ref(&chunk), &servers, &[]), RepairPlan::default());
        // No live replica: nothing to seal at.
        assert_eq!(run(&[chunk], &servers, &[1, 3, 5]).unrecoverable, [ChunkId(3)]);
    }

    #[test]
    fn seal_length_is_the_shortest_live_healthy_replica() {
        let replicas = [
            replica(1, 300),
            replica(2, 100), // dead
            ReplicaState { server: ServerId(3), len: 50, healthy: false },
            replica(4, 200),
        ];
        assert_eq!(seal_length(&replicas, |s| s != ServerId(2)), Some(200));
        assert_eq!(seal_length(&replicas, |_| true), Some(100));
        assert_eq!(seal_length(&replicas, |_| false), None);
        assert_eq!(seal_length(&[], |_| true), None);
    }
}
