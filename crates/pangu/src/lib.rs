//! Pangu: an append-only, replicated, end-to-end checksummed distributed file system.
//!
//! - [`auth`]: who may call the master and the chunkservers: the cluster secret, servers'
//!   identity tokens, signed requests with a bounded replay window.
//! - [`chunk`]: one chunk replica on a chunkserver's disk: append-only, a CRC32C per block,
//!   verified on every read.
//! - [`chunkserver`]: the HTTP service over a directory of chunk replicas: create, append,
//!   verified reads, seal, delete, re-replication from a peer, and the corrupt-replica list
//!   the master learns from.
//! - [`chunk_client`]: the async HTTP client to one chunkserver, with typed errors that tell
//!   a server's refusal from a dead replica.
//! - [`master_client`]: what the file client needs of the master, as a trait whose arguments
//!   and results are data: the master in this process today, one across the network
//!   tomorrow.
//! - [`placement`]: which chunkservers get a chunk's replicas: distinct, usable, spread
//!   across racks (failure domains), least loaded first.
//! - [`repair`]: the master's health check: which replicas are lost (dead server, corrupt,
//!   stale), and the prioritised, rate-bounded re-replication tasks that restore them.
//! - [`parts`]: bytes in several buffers, appended as one without first being copied into one.
//! - [`flow`]: token buckets, and the scheduler that shares a server's bandwidth between
//!   client writes and repair so that neither starves and repair never storms.
//! - [`serve`]: the HTTP loop of Pangu's listeners, with a connection cap and a header
//!   timeout.
//! - [`volume`]: volumes, the roots of cloud disks' random-access files that the master
//!   keeps (size, writer epoch, parent, segment and checkpoint files), and the rules that
//!   fence a writer that lost its volume.
//! - `test_support` (feature `test-support`): a cluster for other crates' integration tests,
//!   its chunkservers in child processes that a test can `kill -9`.

pub mod auth;
pub mod chunk;
pub mod chunk_client;
pub mod chunkserver;
pub mod client;
pub mod crc;
pub mod flow;
pub mod master;
pub mod master_client;
pub mod node;
pub mod parts;
pub mod placement;
pub mod repair;
pub mod serve;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod volume;
