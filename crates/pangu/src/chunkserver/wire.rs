//! What goes over the wire between a chunkserver and its clients: the JSON bodies, the
//! error codes, and the header that carries the end-to-end checksum. Shared by the server
//! ([`super`]) and [`crate::chunk_client`], so the two cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::chunk::ChunkId;

/// The CRC32C (decimal `u32`) of a request's or response's body: sent by a writer with an
/// append, and by the chunkserver with the bytes of a read, so that corruption in transit is
/// caught as surely as corruption on disk.
pub const CRC32C_HEADER: &str = "x-pangu-crc32c";

/// Why a chunkserver refused a request. Serialised as the variant's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A query parameter or header is missing or malformed.
    InvalidParameter,
    InvalidChunkId,
    InvalidMaxSize,
    ChunkAlreadyExists,
    ChunkNotFound,
    /// The bytes do not match the CRC32C the writer sent; nothing was written.
    ChecksumMismatch,
    /// The append's offset is not the chunk's end; `chunk_len` says where it ends.
    OffsetMismatch,
    /// The append's range is already committed with different bytes.
    RetryMismatch,
    ChunkFull,
    ChunkSealed,
    SealBeyondEnd,
    OutOfRange,
    /// The request asks for more bytes than one request may carry.
    TooLarge,
    /// A block failed verification (or the replica could not be opened): the replica is
    /// listed in `GET /corrupt` and must be re-replicated; its bytes are never served.
    ChunkCorrupt,
    /// An earlier write or fsync on the chunk failed; the chunkserver must reopen it.
    ChunkPoisoned,
    /// `replicate` could not read from its source chunkserver.
    ReplicationSourceFailed,
    /// The request is not signed, or not with a key this server accepts (401).
    Unauthenticated,
    /// The request's timestamp is outside the replay window (401).
    RequestExpired,
    /// The request was already received once (401).
    RequestReplayed,
    /// The signer may not do this: only the master orders creates, deletes and replicates
    /// (403).
    Forbidden,
    /// The server remembers as many signatures as it may; retry shortly (503).
    Busy,
    /// A local I/O failure or a bug: the server's fault, never the client's.
    InternalError,
    /// A code this client does not know (a newer server).
    #[serde(other)]
    Unknown,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// The chunk's committed length, for `OffsetMismatch`, `ChunkSealed` and `OutOfRange`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_len: Option<u64>,
    /// The failed block, for `ChunkCorrupt` found by a read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_index: Option<u64>,
}

/// The answer to an append, a seal and a replicate: the chunk's committed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LenResponse {
    pub len: u64,
}

/// One replica in `GET /chunks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    #[serde(with = "chunk_id_hex")]
    pub id: ChunkId,
    pub len: u64,
    pub max_size: u64,
    pub sealed: bool,
}

/// One replica in `GET /corrupt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptChunk {
    #[serde(with = "chunk_id_hex")]
    pub id: ChunkId,
    pub reason: String,
}

/// `GET /status`: what the master's heartbeat needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub server_id: u64,
    pub rack: String,
    /// The configured capacity (see [`super::ChunkServerConfig::capacity_bytes`]).
    pub capacity_bytes: u64,
    /// The committed bytes of every open replica.
    pub used_bytes: u64,
    /// `capacity_bytes - used_bytes` (at least 0), or what the file system has left if that
    /// is less (see [`super::free_bytes`]).
    pub free_bytes: u64,
    pub chunks: u64,
    pub corrupt_chunks: u64,
}

/// Chunk ids travel as their `Display` form (16 hex digits), as in URLs and file names: a
/// JSON number would lose precision above 2^53 in many readers.
pub(crate) mod chunk_id_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::chunk::ChunkId;

    pub fn serialize<S: Serializer>(id: &ChunkId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChunkId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
