//! OSS, the object store: the pure building blocks.
//!
//! Everything here is a plain function or type with no sockets, files or clocks (callers pass
//! `now`), so the protocol rules can be tested exhaustively against what `oss2` — the official
//! Python SDK, version 2.19.1 — sends and parses. One module per job:
//!
//! - [`names`]: bucket names, object keys, and which bucket/key a request addresses
//!   (path-style or virtual-hosted).
//! - [`range`]: `Range: bytes=…` with OSS's lenient default and `x-oss-range-behavior: standard`.
//! - [`conditional`]: `If-Match` / `If-None-Match` / `If-Modified-Since` /
//!   `If-Unmodified-Since` → proceed, 304 or 412.
//! - [`dates`]: HTTP dates and the ISO 8601 form of XML bodies.
//! - [`etag`]: ETags of simple, multipart and appendable objects; the `Content-MD5` check.
//! - [`crc64`]: CRC-64/ECMA as `oss2` computes it for `x-oss-hash-crc64ecma`, with
//!   continuation and combination.
//! - [`listing`]: the paging cores of ListObjects (V1, V2), ListBuckets,
//!   ListMultipartUploads and ListParts.
//! - [`xml`]: the answers `oss2` parses and the request bodies it sends.
//! - [`errors`]: `OssError`, with the real codes and statuses and the `<Error>` body.
//! - [`model`]: the nouns those share (storage classes, ACLs, summaries).
//! - [`request_id`]: the shape of `x-oss-request-id`.
//! - [`access`]: who may do what (owner, bucket and object ACLs).
//! - [`metadata`]: an object's stored headers, in from requests and out to answers.
//! - `grant`: what a write was authorized against, asked again in its commit transaction.
//!
//! The service itself — I/O, on the edge port — is [`service`] (routing, bucket actions),
//! [`objects`] and [`multipart`] (the object actions), over [`blobs`] (object bytes on Pangu)
//! and `feitian_meta`'s `bucket`, `object`, `upload` and `extent` (the records).

pub mod access;
pub mod blobs;
pub mod conditional;
pub mod crc64;
pub mod dates;
pub mod errors;
pub mod etag;
mod grant;
pub mod listing;
pub mod md5batch;
pub mod metadata;
pub mod model;
pub mod multipart;
pub mod names;
pub mod objects;
pub mod owner;
pub mod range;
pub mod request_id;
pub mod xml;

pub use errors::OssError;
pub mod service;
pub mod system;
