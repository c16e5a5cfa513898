//! RAF ("random-access file"): a cloud disk kept as a log on Pangu.
//!
//! A volume is a log of records in append-only segment files, an index from 4 KiB blocks
//! to their newest place in the log, and a root in Pangu's volume registry. Writes are
//! written through to every replica with group commit (acknowledged once every replica
//! holds them, so a restarted server can honour whatever QEMU's NBD client replays) and
//! made durable by a flush, which syncs the log once for every flush waiting.
//! See `docs/disks.md` for the design and why.
//!
//! - [`store`]: what the engine needs of Pangu (the volume registry and files), as a trait.
//! - [`index`]: the extent map from blocks to log locations, with exact live bytes per
//!   segment (pure).
//! - [`record`]: the log record codec; a torn tail is a clean stop, a bad CRC is an error
//!   (pure).
//! - [`changes`]: when each 1 MiB range last changed, for incremental snapshots (pure).
//! - [`checkpoint`]: the index written out with the log position it covers (pure).
//! - [`coalesce`]: the pieces of one read merged into fewer store reads (pure).
//! - [`flow`]: compaction's token bucket and its share of each append (pure).
//! - [`pangu`]: the store of real volumes: Pangu's volume registry and files.
//! - [`Raf`] (`volume`): the engine; `writer` (group commit), `replay` (open), `compact`
//!   (checkpoints and compaction), `pin` (pins for snapshots) and `layers` (reads through
//!   the index and the frozen parents) are its parts.
//! - [`PinnedView`]: a pin read-only, the volume at the pin's instant.

pub mod changes;
pub mod checkpoint;
pub mod coalesce;
mod compact;
mod config;
mod error;
pub mod flow;
pub mod index;
mod layers;
pub mod pangu;
mod pin;
pub mod record;
mod replay;
pub mod store;
mod volume;
mod writer;

pub use compact::CompactionReport;
pub use config::{CompactionConfig, Config};
pub use error::RafError;
pub use pin::PinnedView;
pub use store::{Appender, CheckpointRef, FileId, Lease, LogStore, PinRef, SegmentRef, StoreError, StoreFuture};
pub use volume::{Raf, Stats};
