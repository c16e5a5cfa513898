//! The control-plane store.
//!
//! Services write desired state here in one transaction and return; everything a client
//! was told succeeded is in this store, durably (`synchronous=FULL` on SQLite: a commit is
//! on disk before the answer leaves). The embedded default is SQLite under the data
//! directory; all engine-specific SQL (pragmas, upserts) stays in `sqlite` so that a
//! PostgreSQL backend can take its place for clusters.
//!
//! One module per resource, named for it, holds its rows, its status enum (if it has one)
//! and every query of its tables: the SQL of table `vswitches` is in [`vswitch`], of
//! `oss_extents` in [`extent`]. Async code reaches the store through [`Store::call`] and
//! its `read_async`/`write_async`/`write_grouped_async` (see `task`).
//!
//! Isolation between accounts is structural: resource queries go through an
//! [`AccountScope`](resource::AccountScope), which only ever sees its own account's rows.

// Accounts, keys, ownership, idempotency.
pub mod account;
mod client_token;
pub mod ids;
pub mod resource;
pub mod tag;
// VPC networking.
pub mod eip;
pub mod route_table;
pub mod vpc;
pub mod vswitch;
// ECS.
pub mod auto_snapshot_policy;
pub mod disk;
pub mod disk_restore;
pub mod image;
pub mod image_task;
pub mod instance;
pub mod instance_event;
pub mod key_pair;
pub mod network_interface;
pub mod security_group;
pub mod snapshot;
// Quotas.
pub mod quota;
// OSS.
pub mod bucket;
pub mod extent;
mod listing;
pub mod object;
pub mod upload;
// The machinery.
mod filter;
mod migrations;
pub mod query;
mod sqlite;
pub mod status;
mod task;
#[cfg(test)]
mod testing;

pub use filter::Filter;
pub use rusqlite::Transaction;
pub use sqlite::Store;

/// What the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("account {0:?} already exists")]
    AccountExists(String),
    #[error("account {0:?} does not exist; create it with `feitian account create {0}`")]
    AccountNotFound(String),
    #[error("AccessKey {0} not found; `feitian accesskey list` shows the keys")]
    AccessKeyNotFound(String),
    #[error(
        "AccessKey {0} is the root account's last active key; create another with `feitian accesskey create --account root` first"
    )]
    LastRootKey(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the ClientToken was used before with different parameters")]
    IdempotencyMismatch,
    #[error(
        "the database was written by a newer feitian (schema version {found}, this one knows {known}); upgrade feitian"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("cannot open the database at {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    /// A write would take a bucket's bytes beyond its storage capacity (bucket.rs); the
    /// transaction that asked must be rolled back.
    #[error("bucket {bucket:?} would hold more than its storage capacity of {capacity_gb} GB")]
    StorageCapacityExceeded { bucket: String, capacity_gb: i64 },
    /// Store work on the blocking pool panicked or was cancelled (see [`Store::call`]).
    #[error("a store task failed: {0}")]
    TaskFailed(String),
}

/// Now, as the store writes times (`2026-11-22T08:00:00Z`).
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
