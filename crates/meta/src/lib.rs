//! The control-plane store.
//!
//! Services write desired state here in one transaction and return; everything a client
//! was told succeeded is in this store, durably (`synchronous=FULL` on SQLite: a commit is
//! on disk before the answer leaves). The embedded default is SQLite under the data
//! directory; all engine-specific SQL (pragmas, upserts) stays in [`sqlite`] so that a
//! PostgreSQL backend can take its place for clusters.
//!
//! Isolation between accounts is structural: resource queries go through an
//! [`AccountScope`], which only ever sees its own account's rows.

pub mod ecs;
mod filter;
pub mod ids;
mod migrations;
pub mod network;
pub mod oss;
pub mod pangu;
mod sqlite;

pub use filter::Filter;
pub use rusqlite::Transaction;

pub use sqlite::{AccessKey, Account, AccountScope, KeyRecord, ResourceRow, Store};

/// What the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("account {0:?} already exists")]
    AccountExists(String),
    #[error("account {0:?} does not exist; create it with `feitian account create {0}`")]
    AccountNotFound(String),
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
}

/// Account names: 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit.
pub fn validate_account_name(name: &str) -> Result<(), MetaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(MetaError::Invalid(format!(
            "account name {name:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}
