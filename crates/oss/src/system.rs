//! System buckets: buckets feitian keeps for itself (the region's snapshot and image blocks,
//! `docs/snapshots.md`, "The system bucket").
//!
//! A system bucket is an ordinary bucket of the object store (its objects are rows and
//! extents like any other, so they share the store's durability and space reclaiming),
//! owned by the *system account*: an account that has no AccessKey, so no request can be
//! signed for it, and whose buckets no user lists or reaches (the bucket is private, and
//! a user is never its owner). Its name, `feitian-system-<region>`, is reserved: no user
//! may create a bucket with that prefix ([`is_reserved_bucket_name`]), so the name is free
//! on every start even before the bucket is made.
//!
//! The code that keeps snapshots reads and writes these objects through the calls here,
//! in process, never over HTTP. The bucket counts toward no user's quota.

use axum::body::Bytes;
use feitian_meta::bucket::{self, Bucket};
use feitian_meta::object::{self, Object, ObjectHeaders};
use feitian_meta::Transaction;

use crate::errors::OssError;
use crate::etag;
use crate::service::{from_meta, Oss};

/// Bucket names with this prefix are feitian's own.
pub const SYSTEM_BUCKET_PREFIX: &str = "feitian-system-";

pub use feitian_meta::account::SYSTEM_ACCOUNT;

/// The system bucket of `region`.
pub fn system_bucket_name(region: &str) -> String {
    format!("{SYSTEM_BUCKET_PREFIX}{region}")
}

/// Whether `name` is kept for feitian's own buckets.
pub fn is_reserved_bucket_name(name: &str) -> bool {
    name.starts_with(SYSTEM_BUCKET_PREFIX)
}

/// The row of an object feitian stores itself (a system block, an exported image): bytes as
/// written, `application/octet-stream`, no user metadata, the bucket's ACL and class.
pub(crate) fn plain_object(bucket: &str, key: &str, written: &crate::blobs::Written) -> Object {
    Object {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size: written.len,
        etag: etag::simple(&written.md5),
        crc64: written.crc64,
        object_type: "Normal".into(),
        headers: ObjectHeaders {
            content_type: "application/octet-stream".into(),
            user_meta: "{}".into(),
            ..Default::default()
        },
        acl: "default".into(),
        storage_class: "Standard".into(),
        last_modified_ms: crate::objects::now_ms(),
    }
}

impl Oss {
    /// Makes the region's system bucket (and the system account) if they are missing;
    /// returns its name.
    pub async fn ensure_system_bucket(&self) -> Result<String, OssError> {
        let name = system_bucket_name(&self.region.id);
        let account = self.store.ensure_system_account().map_err(from_meta)?;
        let b = Bucket {
            name: name.clone(),
            account_id: account.id,
            region_id: self.region.id.clone(),
            acl: "private".into(),
            storage_class: "Standard".into(),
            created_at: feitian_api::service::now(),
            generation: 0,
        };
        self.store
            .write_async(move |tx| {
                match bucket::get_bucket(tx, &b.name).map_err(from_meta)? {
                    Some(existing) if existing.account_id == b.account_id => {}
                    Some(_) => {
                        return Err(system_fault(format!(
                            "bucket {} exists and is not the system account's: rename it and start again",
                            b.name
                        )))
                    }
                    None => {
                        bucket::insert_bucket(tx, &b).map_err(from_meta)?;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(name)
    }

    /// Stores `data` as `key` of system bucket `bucket` (replacing an object there).
    pub async fn system_put(&self, bucket: &str, key: &str, data: Bytes) -> Result<(), OssError> {
        let written = self.blobs.write_bytes(data).await?;
        let o = plain_object(bucket, key, &written);
        let extents = written.extents.clone();
        self.commit(written.extents, move |tx| {
            system_bucket(tx, &o.bucket)?;
            Ok(((), object::put_object(tx, &o, &extents)?))
        })
        .await
    }

    /// Whether `key` is stored in system bucket `bucket`.
    pub async fn system_has(&self, bucket: &str, key: &str) -> Result<bool, OssError> {
        let (b, k) = (bucket.to_owned(), key.to_owned());
        self.store
            .read_async(move |tx| {
                system_bucket(tx, &b)?;
                Ok(object::get_object(tx, &b, &k)?.is_some())
            })
            .await
    }

    /// The bytes of `key` in system bucket `bucket`; `None` if it is not stored.
    pub async fn system_get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, OssError> {
        let (b, k) = (bucket.to_owned(), key.to_owned());
        let found = self
            .store
            .read_async(move |tx| {
                system_bucket(tx, &b)?;
                Ok::<_, OssError>(object::get_object_with_extents(tx, &b, &k)?)
            })
            .await?;
        match found {
            Some((o, extents)) => Ok(Some(self.blobs.read_all(&extents, 0..o.size).await?)),
            None => Ok(None),
        }
    }

    /// Deletes `key` of system bucket `bucket`; `false` if it was not stored.
    pub async fn system_delete(&self, bucket: &str, key: &str) -> Result<bool, OssError> {
        let (b, k) = (bucket.to_owned(), key.to_owned());
        self.commit(Vec::new(), move |tx| {
            system_bucket(tx, &b)?;
            Ok(match object::delete_object(tx, &b, &k)? {
                Some(freed) => (true, freed),
                None => (false, Vec::new()),
            })
        })
        .await
    }
}

/// A misuse of the system calls by feitian's own code: logged, and a 500 (a bug).
fn system_fault(message: String) -> OssError {
    tracing::error!(%message, "system bucket call refused");
    OssError::new(500, "InternalError", message)
}

/// Refuses a bucket that is not a system bucket (a caller's bug, not a user's input).
fn system_bucket(tx: &Transaction<'_>, name: &str) -> Result<(), OssError> {
    if !is_reserved_bucket_name(name) {
        return Err(system_fault(format!("{name} is not a system bucket")));
    }
    match bucket::get_bucket(tx, name)? {
        Some(_) => Ok(()),
        None => Err(system_fault(format!("system bucket {name} is not made yet"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_bucket_names_are_reserved() {
        assert_eq!(system_bucket_name("cn-hangzhou"), "feitian-system-cn-hangzhou");
        assert!(is_reserved_bucket_name("feitian-system-cn-hangzhou"));
        assert!(is_reserved_bucket_name("feitian-system-"));
        assert!(!is_reserved_bucket_name("feitian-systems"));
        assert!(!is_reserved_bucket_name("my-feitian-system-x"));
    }
}
