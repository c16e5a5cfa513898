//! Snapshot blocks in the region's system bucket (docs/snapshots.md): the host's
//! [`BlockStore`] over the object store, in process.
//!
//! A block object is `blocks/<hex sha256>` in `feitian-system-<region>`. The name is the
//! hash of the bytes, so storing one that exists is skipped by the uploader (`has`) and
//! harmless if it races (the same bytes again).

use std::sync::Arc;

use bytes::Bytes;
use feitian_agent_api::{BlockStore, ContractError, Fut};
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
