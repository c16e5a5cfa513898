//! The engine's knobs.

use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// How a volume writes, checkpoints and compacts.
#[derive(Debug, Clone)]
pub struct Config {
    /// A segment is rolled before an append would take it past this (Pangu's chunk size).
    pub segment_bytes: u64,
    /// Group commit packs queued writes into appends of at most this (one larger write
    /// goes alone).
    pub batch_bytes: u64,
    /// A checkpoint is written after this many bytes of log (and on close), bounding the
    /// log an open replays.
    pub checkpoint_every: u64,
    /// Writes that may wait for the appender before `write` itself waits.
    pub queue_depth: usize,
    pub compaction: CompactionConfig,
}

/// How compaction picks segments and shares the log with the guest.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// How often the background pass runs; `None`: only when asked (`Raf::compact`).
    pub interval: Option<Duration>,
    /// A sealed segment is rewritten when at most this fraction of it is live.
    pub live_fraction: f64,
    /// Compaction's pace (bytes moved per second) and burst.
    pub bytes_per_sec: u64,
    pub burst_bytes: u64,
    /// The fraction of each group-commit append compaction keeps however busy the guest.
    pub min_share: f64,
    /// Live data is moved in pieces of at most this.
    pub chunk_bytes: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            segment_bytes: 64 * MIB,
            batch_bytes: 4 * MIB,
            // docs/disks.md: replay after a crash reads at most this much log.
            checkpoint_every: 256 * MIB,
            queue_depth: 256,
            compaction: CompactionConfig::default(),
        }
    }
}

impl Default for CompactionConfig {
    fn default() -> CompactionConfig {
        CompactionConfig {
            interval: Some(Duration::from_secs(30)),
            live_fraction: 0.5,
            bytes_per_sec: 64 * MIB,
            burst_bytes: 8 * MIB,
            min_share: 0.1,
            chunk_bytes: MIB,
        }
    }
}
