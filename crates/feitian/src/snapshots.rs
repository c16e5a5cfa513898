//! Snapshot blocks in the region's system bucket (docs/snapshots.md): the host's
//! [`BlockStore`] over the object store, in process.
//!
//! A block object is `blocks/<hex sha256>` in `feitian-system-<region>`. The name is the
//! hash of the bytes, so storing one that exists is skipped by the uploader (`has`) and
//! harmless if it races (the same bytes again).
//!
//! The sweeper ([`run_sweeper`]) deletes the objects nothing names any more (guarantee 4),
//! in the three steps of `feitian_meta::snapshot`: list the dead blocks, mark one `sweeping`
//! after rechecking its count (a claim or commit naming it meanwhile keeps it), delete the
//! object, forget the row. A crash between two steps leaves the row listed, so the next pass
//! finishes the job; deleting an object that is already gone is not an error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use feitian_agent_api::{BlockStore, ContractError, Fut};
use feitian_meta::snapshot;
use feitian_meta::Store;
use feitian_oss::errors::OssError;
use feitian_oss::service::Oss;

/// The key of a block object.
pub fn block_key(hash: &str) -> String {
    format!("blocks/{hash}")
}

/// The region's block objects in its system bucket.
pub struct SystemBlocks {
    oss: Arc<Oss>,
    bucket: String,
}

impl SystemBlocks {
    /// Makes the system bucket if it is missing.
    pub async fn open(oss: Arc<Oss>) -> anyhow::Result<SystemBlocks> {
        let bucket = oss
            .ensure_system_bucket()
            .await
            .map_err(|e| anyhow::anyhow!("cannot make the system bucket for snapshots: {}", e.message))?;
        Ok(SystemBlocks { oss, bucket })
    }

    /// Deletes a block object; `false` if it was not stored.
    pub async fn delete(&self, hash: &str) -> Result<bool, ContractError> {
        checked(hash)?;
        self.oss.system_delete(&self.bucket, &block_key(hash)).await.map_err(unavailable)
    }
}

/// Blocks the sweeper takes per pass.
const SWEEP_BATCH: u64 = 256;

/// One pass of the sweeper: deletes the objects of dead blocks; how many it deleted.
pub async fn sweep_once(store: &Store, blocks: &SystemBlocks) -> anyhow::Result<usize> {
    let dead = store.read_async(|tx| snapshot::dead_blocks(tx, SWEEP_BATCH)).await?;
    let mut deleted = 0;
    for b in dead {
        let hash = b.hash.clone();
        if !store.write_async(move |tx| snapshot::begin_sweep(tx, &hash)).await? {
            continue; // named again: it lives on
        }
        blocks.delete(&b.hash).await?;
        let hash = b.hash.clone();
        store.write_async(move |tx| snapshot::forget_block(tx, &hash)).await?;
        deleted += 1;
    }
    Ok(deleted)
}

/// Deletes block objects no row counts ([`snapshot::orphan_blocks`]): each is adopted as a
/// row already being swept, deleted, and its row forgotten. How many it deleted.
pub async fn sweep_orphans(store: &Store, blocks: &SystemBlocks) -> anyhow::Result<usize> {
    let bucket = blocks.bucket.clone();
    let orphans = store.read_async(move |tx| snapshot::orphan_blocks(tx, &bucket, SWEEP_BATCH)).await?;
    let mut deleted = 0;
    for hash in orphans {
        let (h, at) = (hash.clone(), feitian_api::service::now());
        if !store.write_async(move |tx| snapshot::adopt_orphan(tx, &h, &at)).await? {
            continue; // claimed meanwhile: not an orphan
        }
        blocks.delete(&hash).await?;
        store.write_async(move |tx| snapshot::forget_block(tx, &hash)).await?;
        deleted += 1;
    }
    Ok(deleted)
}

/// How many sweeps between two looks for orphans (a query over the whole system bucket).
const ORPHANS_EVERY: u64 = 60;

/// Runs the sweeper every `every`, forever; orphans at the start and every
/// [`ORPHANS_EVERY`] passes.
pub async fn run_sweeper(store: Store, blocks: Arc<SystemBlocks>, every: Duration) {
    for pass in 0u64.. {
        match sweep_once(&store, &blocks).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(blocks = n, "deleted snapshot blocks nothing names"),
            Err(e) => tracing::warn!(error = %e, "the snapshot block sweeper failed; retrying"),
        }
        if pass % ORPHANS_EVERY == 0 {
            match sweep_orphans(&store, &blocks).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(blocks = n, "deleted snapshot block objects no row counted"),
                Err(e) => tracing::warn!(error = %e, "the orphan sweep failed; retrying later"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Every failure of the object store is one to retry (the names are ours, not a user's).
fn unavailable(e: OssError) -> ContractError {
    ContractError::Unavailable(format!("system bucket: {} {}", e.code, e.message))
}

/// Checks a name before it becomes a key: 64 lowercase hex digits.
fn checked(hash: &str) -> Result<(), ContractError> {
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(ContractError::Refused(format!("{hash:?} is not a block name (hex SHA-256)")))
    }
}

impl BlockStore for SystemBlocks {
    fn has(&self, hash: String) -> Fut<'_, bool> {
        Box::pin(async move {
            checked(&hash)?;
            self.oss.system_has(&self.bucket, &block_key(&hash)).await.map_err(unavailable)
        })
    }

    fn put(&self, hash: String, data: Bytes) -> Fut<'_, ()> {
        Box::pin(async move {
            checked(&hash)?;
            self.oss.system_put(&self.bucket, &block_key(&hash), data).await.map_err(unavailable)
        })
    }

    fn get(&self, hash: String) -> Fut<'_, Option<Bytes>> {
        Box::pin(async move {
            checked(&hash)?;
            self.oss.system_get(&self.bucket, &block_key(&hash)).await.map_err(unavailable)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_sha256_names_become_keys() {
        let h = "ab".repeat(32);
        assert!(checked(&h).is_ok());
        assert_eq!(block_key(&h), format!("blocks/{h}"));
        for bad in ["", "../x", &"AB".repeat(32), &"ab".repeat(31), &format!("{}/", "a".repeat(63))] {
            assert!(checked(bad).is_err(), "{bad}");
        }
    }
}
