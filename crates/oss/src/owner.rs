//! Objects of a user's bucket that feitian reads and writes itself, on the bucket owner's
//! behalf (ImportImage reads the disk file the owner uploaded; ExportImage writes the image
//! file into the owner's bucket: docs/snapshots.md, "Image import and export"). The real
//! service does this through a RAM role; feitian has no RAM, so the rule is that the bucket
//! is the account's own.
//!
//! Reads stream the object; writes stream a local file in and commit the object's row only
//! once every byte is stored, as a PUT does, so a crash leaves no partial object.

use axum::body::{Body, Bytes};
use feitian_meta::bucket;
use feitian_meta::object;
use futures_util::stream;
use std::path::Path;
use tokio::io::AsyncReadExt;

use crate::errors::OssError;
use crate::objects::MAX_OBJECT_SIZE;
use crate::service::{from_meta, Oss};

/// How much of a file one chunk of a streamed write carries.
const CHUNK: usize = 1 << 20;

impl Oss {
    /// The object `key` of `account`'s bucket `bucket`: its size and its bytes, streamed.
    /// `NoSuchBucket` when the bucket is not the account's, `NoSuchKey` when the key is absent.
    pub async fn owner_read(&self, account: u64, bucket: &str, key: &str) -> Result<(u64, Body), OssError> {
        let (b, k) = (bucket.to_owned(), key.to_owned());
        let (o, extents) = self
            .store
            .read_async(move |tx| {
                match bucket::get_bucket(tx, &b).map_err(from_meta)? {
                    Some(found) if found.account_id == account => {}
                    _ => return Err(OssError::no_such_bucket(&b)),
                }
                object::get_object_with_extents(tx, &b, &k).map_err(from_meta)?.ok_or_else(|| OssError::no_such_key(&k))
            })
            .await?;
        Ok((o.size, self.blobs.read(extents, 0..o.size)))
    }

    /// Stores the file at `path` as `key` of `account`'s bucket `bucket` (replacing an object
    /// there), as one object commit after all its bytes are stored.
    pub async fn owner_put_file(&self, account: u64, bucket: &str, key: &str, path: &Path) -> Result<(), OssError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| io_error(path, e))?;
        let len = file.metadata().await.map_err(|e| io_error(path, e))?.len();
        if len > MAX_OBJECT_SIZE {
            return Err(OssError::internal_error());
        }
        let chunks = stream::unfold(file, |mut f| async move {
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let written = self.blobs.write(Body::from_stream(chunks), Some(len), MAX_OBJECT_SIZE).await?;
        let o = crate::system::plain_object(bucket, key, &written);
        let extents = written.extents.clone();
        self.commit(written.extents, move |tx| {
            match bucket::get_bucket(tx, &o.bucket).map_err(from_meta)? {
                Some(found) if found.account_id == account => {}
                _ => return Err(OssError::no_such_bucket(&o.bucket)),
            }
            Ok(((), object::put_object(tx, &o, &extents).map_err(from_meta)?))
        })
        .await
    }
}

fn io_error(path: &Path, e: std::io::Error) -> OssError {
    tracing::warn!(path = %path.display(), error = %e, "cannot read a file to store");
    OssError::internal_error()
}
