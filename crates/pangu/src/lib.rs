//! Pangu: an append-only, replicated, end-to-end checksummed distributed file system.
//!
//! - [`chunk`]: one chunk replica on a chunkserver's disk: append-only, a CRC32C per block,
//!   verified on every read.

pub mod chunk;
