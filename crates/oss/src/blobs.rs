//! Object bytes on Pangu: streaming a request body into Pangu files, reading ranges back as
//! a streaming body, and freeing files no object or part uses any more.
//!
//! (Being written: the signatures below are the contract the object handlers use.)

use std::ops::Range;

use axum::body::{Body, Bytes};
use feitian_meta::oss::Extent;

use crate::errors::OssError;

/// What [`Blobs::write`] stored: where the bytes are, and their digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The bytes, in order, once durable in Pangu.
    pub extents: Vec<Extent>,
    pub len: u64,
    /// For the ETag and `Content-MD5`.
    pub md5: [u8; 16],
    /// CRC-64/ECMA, for `x-oss-hash-crc64ecma`.
    pub crc64: u64,
}

/// The object-bytes store over a Pangu client (cheap to clone).
#[derive(Clone)]
pub struct Blobs {}

impl Blobs {
    /// Streams `body` into Pangu and returns once every byte is durable. `expected_len` is
    /// the request's Content-Length when it has one: a shorter body fails with
    /// `IncompleteBody` and nothing is kept. More than `max_len` bytes fail with
    /// `EntityTooLarge`. Small bodies are packed into shared files; large ones get files of
    /// their own.
    pub async fn write(&self, body: Body, expected_len: Option<u64>, max_len: u64) -> Result<Written, OssError> {
        let _ = (body, expected_len, max_len);
        unimplemented!()
    }

    /// Stores bytes already in memory (as `write`).
    pub async fn write_bytes(&self, data: Bytes) -> Result<Written, OssError> {
        let _ = data;
        unimplemented!()
    }

    /// Copies `range` of the bytes of `src` (extents concatenated) into new storage: for
    /// CopyObject and UploadPartCopy. The copy is independent of the source.
    pub async fn copy(&self, src: &[Extent], range: Range<u64>) -> Result<Written, OssError> {
        let _ = (src, range);
        unimplemented!()
    }

    /// A body streaming `range` of the bytes of `extents` (concatenated). A read failure
    /// after the head is sent ends the body with an error (the client sees a short body).
    pub fn read(&self, extents: Vec<Extent>, range: Range<u64>) -> Body {
        let _ = (extents, range);
        unimplemented!()
    }

    /// `range` of the bytes of `extents`, in memory (for small reads).
    pub async fn read_all(&self, extents: &[Extent], range: Range<u64>) -> Result<Bytes, OssError> {
        let _ = (extents, range);
        unimplemented!()
    }

    /// Says that `extents` are no longer used by what held them (call after the transaction
    /// that dropped them committed). Files that nothing references any more are deleted in
    /// the background.
    pub fn release(&self, extents: Vec<Extent>) {
        let _ = extents;
    }
}
