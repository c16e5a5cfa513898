//! The block device a disk server serves: the seam between the NBD protocol and storage.
//!
//! The product's disks are RAF volumes (`crates/raf`); tests and the benchmark use
//! [`crate::FileDevice`]. The server checks alignment and range before it calls a device, so
//! a device sees only whole 4 KiB blocks inside its size. The trait is object-safe (the
//! server holds an `Arc<dyn BlockDevice>`) and async through boxed futures.
//!
//! Durability contract: a completed `write`, `write_zeroes` or `trim` may sit in a volatile
//! cache until `flush` completes; `flush` makes every operation that completed before it was
//! called durable. (RAF keeps completed writes on every replica, outliving any process, and
//! makes them durable at `flush`.)

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

/// What a device operation returns.
pub type DeviceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DeviceError>> + Send + 'a>>;

/// A device operation's failure; the server turns it into an NBD errno.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no space left for the write")]
    NoSpace,
    #[error("request outside the device: offset {offset}, length {length}")]
    OutOfRange { offset: u64, length: u64 },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Any other backend's failure (a Pangu append refused, a stale epoch …).
    #[error("{0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl DeviceError {
    /// The NBD errno the guest sees.
    pub fn errno(&self) -> u32 {
        use crate::nbd::proto::{EINVAL, EIO, ENOSPC};
        match self {
            DeviceError::NoSpace => ENOSPC,
            DeviceError::OutOfRange { .. } => EINVAL,
            DeviceError::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => ENOSPC,
            DeviceError::Io(_) | DeviceError::Backend(_) => EIO,
        }
    }
}

/// A block device of 4 KiB blocks.
pub trait BlockDevice: Send + Sync + 'static {
    /// Size in bytes (a multiple of 4096).
    fn size(&self) -> u64;
    /// `length` bytes from `offset`.
    fn read(&self, offset: u64, length: u32) -> DeviceFuture<'_, Bytes>;
    /// Writes `data` at `offset`.
    fn write(&self, offset: u64, data: Bytes) -> DeviceFuture<'_, ()>;
    /// The range reads as zeros afterwards.
    fn write_zeroes(&self, offset: u64, length: u64) -> DeviceFuture<'_, ()>;
    /// The range's contents are no longer needed; it reads as zeros afterwards (feitian's
    /// devices guarantee that, so a guest's discarded blocks never leak old data).
    fn trim(&self, offset: u64, length: u64) -> DeviceFuture<'_, ()>;
    /// Makes every operation completed before this call durable.
    fn flush(&self) -> DeviceFuture<'_, ()>;
}
