//! Pangu: an append-only, replicated, end-to-end checksummed distributed file system.
//!
//! - [`chunk`]: one chunk replica on a chunkserver's disk: append-only, a CRC32C per block,
//!   verified on every read.
//! - [`placement`]: which chunkservers get a chunk's replicas: distinct, usable, spread
//!   across racks (failure domains), least loaded first.
//! - [`repair`]: the master's health check: which replicas are lost (dead server, corrupt,
//!   stale), and the prioritised, rate-bounded re-replication tasks that restore them.
//! - [`flow`]: token buckets, and the scheduler that shares a server's bandwidth between
//!   client writes and repair so that neither starves and repair never storms.

pub mod chunk;
pub mod flow;
pub mod placement;
pub mod repair;
