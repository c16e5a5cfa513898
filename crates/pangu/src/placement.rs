//! Where a chunk's replicas go: distinct, usable chunkservers, spread across racks.
//!
//! # Policy
//!
//! A server is *usable* for a new replica when it is alive, not draining (being emptied
//! before removal), has room for the chunk, and is not excluded by the caller. Replicas are
//! chosen one at a time, each from the racks holding the fewest replicas of the chunk so
//! far. So a rack gets a second replica only when every rack with a usable server already
//! has one, and with more replicas than racks they spread evenly (3 over 2 racks: 2 + 1).
//! A rack is a failure domain, a set of servers that can fail together (a switch, a power
//! feed): the point of 3 replicas is lost if two of them share one when they need not.
//!
//! Within those racks the best server wins: fewest chunks being written (`load`), then
//! most free space, then the lowest id. Load comes first because a new chunk promises write
//! traffic: ranking by free space alone would send every new chunk to a freshly added,
//! empty server and make it the cluster's write hot spot (the GFS lesson). Among equally
//! busy servers, free space evens out disk usage over time. The id tie-break makes the
//! answer a function of the set of servers, not of their order, so the master's decisions
//! reproduce in tests and logs.
//!
//! The rack is whatever the operator set (`--rack`); servers with the same name share a
//! domain. A cluster without racks is one rack, and placement degrades to distinct servers.
//! When several chunkservers share a host (one per disk), their rack should default to the
//! host, or two replicas could land on one machine.
//!
//! Ids are expected to be unique; a repeated id is considered once, by its first entry.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// A chunkserver's id, unique in the cluster (the master assigns it when the server
/// registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServerId(pub u64);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the master knows about a chunkserver when it places replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub id: ServerId,
    /// The failure domain (`--rack`).
    pub rack: String,
    /// Free space on the server's disk, as last reported.
    pub free_bytes: u64,
    /// Whether the master considers it up (see `repair::Heartbeats`).
    pub alive: bool,
    /// Being emptied before removal: it still serves its replicas but takes no new ones.
    pub draining: bool,
    /// Chunks being written on it now: the write traffic it already has.
    pub load: u32,
}

impl ServerInfo {
    /// Whether it may take a new replica of up to `chunk_size` bytes.
    pub fn can_take(&self, chunk_size: u64) -> bool {
        self.alive && !self.draining && self.free_bytes >= chunk_size
    }
}

/// Why replicas could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PlacementError {
    #[error("a chunk needs at least one replica")]
    NoReplicas,
    /// Fewer usable servers than replicas wanted. The other fields count why the remaining
    /// servers were not usable (each under the first reason that applies, in this order),
    /// so that the message says what to fix.
    #[error(
        "{wanted} replicas wanted but only {usable} servers can take a {chunk_size}-byte chunk \
         ({excluded} excluded, {dead} dead, {draining} draining, {full} full)"
    )]
    NotEnoughServers {
        wanted: usize,
        usable: usize,
        chunk_size: u64,
        excluded: usize,
        dead: usize,
        draining: usize,
        full: usize,
    },
}

/// Picks `replicas` distinct servers for a new chunk of up to `chunk_size` bytes (its
/// maximum size: the chunk grows into it), never one in `exclude`, spread across racks as
/// the module docs say. The servers come in the order chosen: the first is the best.
///
/// A single server in a single rack with `replicas == 1` (the embedded default) works like
/// any other cluster.
pub fn place(
    servers: &[ServerInfo],
    replicas: usize,
    exclude: &[ServerId],
    chunk_size: u64,
) -> Result<Vec<ServerId>, PlacementError> {
    if replicas == 0 {
        return Err(PlacementError::NoReplicas);
    }
    let (mut excluded, mut dead, mut draining, mut full) = (0, 0, 0, 0);
    let mut candidates = Vec::new();
    for server in distinct(servers) {
        if exclude.contains(&server.id) {
            excluded += 1;
        } else if !server.alive {
            dead += 1;
        } else if server.draining {
            draining += 1;
        } else if server.free_bytes < chunk_size {
            full += 1;
        } else {
            candidates.push(server);
        }
    }
    if candidates.len() < replicas {
        return Err(PlacementError::NotEnoughServers {
            wanted: replicas,
            usable: candidates.len(),
            chunk_size,
            excluded,
            dead,
            draining,
            full,
        });
    }

    let mut racks = RackCounts::default();
    let mut chosen = Vec::with_capacity(replicas);
    while chosen.len() < replicas {
        let best = candidates.iter().enumerate().min_by_key(|(_, server)| (racks.get(server), rank(server)));
        let Some((index, _)) = best else { break };
        let server = candidates.swap_remove(index);
        racks.add(server);
        chosen.push(server.id);
    }
    Ok(chosen)
}

/// Picks a server for one more replica of a chunk that lost one: not one of `existing`
/// (the servers that hold its remaining replicas), usable for `chunk_size` bytes (the
/// chunk's length), and in a rack the existing replicas do not use if there is one. `None`
/// if no server can take it.
pub fn place_repair(servers: &[ServerInfo], existing: &[ServerId], chunk_size: u64) -> Option<ServerId> {
    place_repair_ranked(servers, existing, chunk_size, |_| Some(0))
}

/// [`place_repair`] with a caller's say: `tier` returns `None` for a server that must not be
/// chosen and otherwise a tier, lower preferred. Rack spread still comes first: a tier only
/// orders servers whose racks hold equally many replicas.
pub(crate) fn place_repair_ranked(
    servers: &[ServerInfo],
    existing: &[ServerId],
    chunk_size: u64,
    tier: impl Fn(&ServerInfo) -> Option<u8>,
) -> Option<ServerId> {
    let mut racks = RackCounts::default();
    for server in distinct(servers).filter(|server| existing.contains(&server.id)) {
        racks.add(server);
    }
    distinct(servers)
        .filter(|server| !existing.contains(&server.id) && server.can_take(chunk_size))
        .filter_map(|server| tier(server).map(|tier| ((racks.get(server), tier, rank(server)), server.id)))
        .min()
        .map(|(_, id)| id)
}

/// The preference among servers whose racks hold equally many replicas: least loaded, then
/// most free space, then lowest id.
fn rank(server: &ServerInfo) -> (u32, Reverse<u64>, ServerId) {
    (server.load, Reverse(server.free_bytes), server.id)
}

/// Each server once, by its first entry.
fn distinct(servers: &[ServerInfo]) -> impl Iterator<Item = &ServerInfo> {
    let mut seen = BTreeSet::new();
    servers.iter().filter(move |server| seen.insert(server.id))
}

/// How many replicas of the chunk each rack holds.
#[derive(Default)]
struct RackCounts<'a>(BTreeMap<&'a str, usize>);

impl<'a> RackCounts<'a> {
    fn add(&mut self, server: &'a ServerInfo) {
        *self.0.entry(server.rack.as_str()).or_default() += 1;
    }

    fn get(&self, server: &ServerInfo) -> usize {
        self.0.get(server.rack.as_str()).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const CHUNK: u64 = 64 << 20;

    fn server(id: u64, rack: &str) -> ServerInfo {
        ServerInfo {
            id: ServerId(id),
            rack: rack.to_string(),
            free_bytes: 100 * GIB,
            alive: true,
            draining: false,
            load: 0,
        }
    }

    fn rack_of(servers: &[ServerInfo], id: ServerId) -> &str {
        &servers.iter().find(|s| s.id == id).unwrap().rack
    }

    fn ids(ids: &[u64]) -> Vec<ServerId> {
        ids.iter().copied().map(ServerId).collect()
    }

    #[test]
    fn single_server_single_replica() {
        let servers = [server(1, "")];
        assert_eq!(place(&servers, 1, &[], CHUNK), Ok(ids(&[1])));
        assert_eq!(place_repair(&servers, &ids(&[1]), CHUNK), None);
    }

    #[test]
    fn three_racks_get_one_replica_each() {
        let servers: Vec<_> =
            [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")].iter().map(|&(i, r)| server(i, r)).collect();
        let chosen = place(&servers, 3, &[], CHUNK).unwrap();
        let racks: BTreeSet<_> = chosen.iter().map(|&id| rack_of(&servers, id)).collect();
        assert_eq!(racks.len(), 3);
        // All equal: the lowest id of each rack, in id order.
        assert_eq!(chosen, ids(&[1, 3, 5]));
    }

    #[test]
    fn more_replicas_than_racks_spread_evenly() {
        let servers: Vec<_> =
            [(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b")].iter().map(|&(i, r)| server(i, r)).collect();
        let chosen = place(&servers, 3, &[], CHUNK).unwrap();
        let in_a = chosen.iter().filter(|&&id| rack_of(&servers, id) == "a").count();
        assert!(in_a == 1 || in_a == 2, "{chosen:?}");
        assert_eq!(chosen, ids(&[1, 4, 2]));
        // Four over two racks: two each, never three in one.
        let chosen = place(&servers, 4, &[], CHUNK).unwrap();
        let in_a = chosen.iter().filter(|&&id| rack_of(&servers, id) == "a").count();
        assert_eq!(in_a, 2, "{chosen:?}");
    }

    #[test]
    fn a_rack_without_usable_servers_does_not_count() {
        let mut servers: Vec<_> =
            [(1, "a"), (2, "a"), (3, "b"), (4, "c"), (5, "d")].iter().map(|&(i, r)| server(i, r)).collect();
        servers[2].alive = false; // b
        servers[3].draining = true; // c
        servers[4].free_bytes = CHUNK - 1; // d
        assert_eq!(place(&servers, 2, &[], CHUNK), Ok(ids(&[1, 2])));
        // Excluded servers are skipped the same way.
        assert_eq!(place(&servers, 1, &ids(&[1]), CHUNK), Ok(ids(&[2])));
    }

    #[test]
    fn prefers_lower_load_then_more_free_space_then_lower_id() {
        let mut servers: Vec<_> = (1..=4).map(|i| server(i, &format!("r{i}"))).collect();
        servers[0].load = 2;
        servers[1].free_bytes = 50 * GIB;
        servers[3].free_bytes = 200 * GIB;
        servers[3].load = 1;
        // 3 (load 0, 100 GiB) before 2 (load 0, 50 GiB) before 4 (load 1) before 1 (load 2).
        assert_eq!(place(&servers, 4, &[], CHUNK), Ok(ids(&[3, 2, 4, 1])));
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let servers: Vec<_> =
            [(7, "a"), (3, "b"), (5, "a"), (1, "c"), (9, "b")].iter().map(|&(i, r)| server(i, r)).collect();
        let expected = place(&servers, 3, &[], CHUNK).unwrap();
        let mut reversed = servers.clone();
        reversed.reverse();
        assert_eq!(place(&reversed, 3, &[], CHUNK).unwrap(), expected);
        let mut rotated = servers;
        rotated.rotate_left(2);
        assert_eq!(place(&rotated, 3, &[], CHUNK).unwrap(), expected);
    }

    #[test]
    fn errors_say_what_is_missing() {
        let mut servers: Vec<_> = (1..=6).map(|i| server(i, "a")).collect();
        servers[1].alive = false;
        servers[2].draining = true;
        servers[3].free_bytes = 0;
        let err = place(&servers, 3, &ids(&[5]), CHUNK).unwrap_err();
        assert_eq!(
            err,
            PlacementError::NotEnoughServers {
                wanted: 3,
                usable: 2,
                chunk_size: CHUNK,
                excluded: 1,
                dead: 1,
                draining: 1,
                full: 1
            }
        );
        assert!(err.to_string().contains("3 replicas wanted but only 2 servers"), "{err}");
        assert_eq!(place(&servers, 0, &[], CHUNK), Err(PlacementError::NoReplicas));
        assert!(matches!(place(&[], 1, &[], CHUNK), Err(PlacementError::NotEnoughServers { usable: 0, .. })));
    }

    #[test]
    fn repeated_ids_count_once() {
        let servers = [server(1, "a"), server(1, "b"), server(2, "a")];
        assert_eq!(place(&servers, 2, &[], CHUNK), Ok(ids(&[1, 2])));
        assert!(matches!(place(&servers, 3, &[], CHUNK), Err(PlacementError::NotEnoughServers { usable: 2, .. })));
    }

    #[test]
    fn repair_goes_to_an_unused_rack() {
        let servers: Vec<_> =
            [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")].iter().map(|&(i, r)| server(i, r)).collect();
        // Replicas left on a and b: the new one goes to c.
        assert_eq!(place_repair(&servers, &ids(&[1, 3]), CHUNK), Some(ServerId(5)));
        // Every rack used: any other usable server, the best first.
        assert_eq!(place_repair(&servers, &ids(&[1, 3, 5]), CHUNK), Some(ServerId(2)));
        // Rack c unusable: fall back to a used rack rather than give up.
        let mut degraded = servers.clone();
        degraded[4].alive = false;
        degraded[5].draining = true;
        assert_eq!(place_repair(&degraded, &ids(&[1, 3]), CHUNK), Some(ServerId(2)));
        // Nowhere to go.
        assert_eq!(place_repair(&servers, &ids(&[1, 2, 3, 4, 5, 6]), CHUNK), None);
        let full: Vec<_> = servers.iter().map(|s| ServerInfo { free_bytes: 10, ..s.clone() }).collect();
        assert_eq!(place_repair(&full, &ids(&[1]), CHUNK), None);
    }

    #[test]
    fn repair_ranked_orders_within_equal_racks_only() {
        let servers: Vec<_> = [(1, "a"), (2, "b"), (3, "c"), (4, "a")].iter().map(|&(i, r)| server(i, r)).collect();
        // 3 is in the unused rack, so it wins although its tier is worse.
        let tier = |s: &ServerInfo| Some(if s.id == ServerId(3) { 1 } else { 0 });
        assert_eq!(place_repair_ranked(&servers, &ids(&[1, 2]), CHUNK, tier), Some(ServerId(3)));
        // Refused outright: the next rack count up.
        let refuse = |s: &ServerInfo| if s.id == ServerId(3) { None } else { Some(0) };
        assert_eq!(place_repair_ranked(&servers, &ids(&[1, 2]), CHUNK, refuse), Some(ServerId(4)));
    }

    /// Many random clusters: the result is always distinct, usable servers, and never
    /// doubles up a rack while a rack with a usable server is unused.
    #[test]
    fn random_clusters_keep_the_rules() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        };
        for _ in 0..2000 {
            let count = 1 + next(12);
            let servers: Vec<_> = (0..count)
                .map(|_| ServerInfo {
                    id: ServerId(next(20)),
                    rack: format!("r{}", next(5)),
                    free_bytes: next(4) * CHUNK,
                    alive: next(8) != 0,
                    draining: next(8) == 0,
                    load: next(3) as u32,
                })
                .collect();
            let exclude: Vec<_> = (0..next(3)).map(|_| ServerId(next(20))).collect();
            let replicas = 1 + next(4) as usize;
            let usable: Vec<&ServerInfo> =
                distinct(&servers).filter(|s| s.can_take(CHUNK) && !exclude.contains(&s.id)).collect();
            match place(&servers, replicas, &exclude, CHUNK) {
                Ok(chosen) => {
                    assert_eq!(chosen.len(), replicas);
                    let unique: BTreeSet<_> = chosen.iter().collect();
                    assert_eq!(unique.len(), replicas);
                    for id in &chosen {
                        assert!(usable.iter().any(|s| s.id == *id), "{id} is not usable");
                    }
                    let usable_racks: BTreeSet<&str> = usable.iter().map(|s| s.rack.as_str()).collect();
                    let used = |id: &ServerId| usable.iter().find(|s| s.id == *id).unwrap().rack.as_str();
                    let used_racks: BTreeSet<&str> = chosen.iter().map(used).collect();
                    assert_eq!(used_racks.len(), replicas.min(usable_racks.len()), "{servers:?} -> {chosen:?}");
                }
                Err(PlacementError::NotEnoughServers { usable: n, .. }) => {
                    assert_eq!(n, usable.len());
                    assert!(n < replicas);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}
