//! The product's block device: a RAF volume (`crates/raf`), served as it is.
//!
//! The server has already checked alignment and range, so every call maps one to one onto
//! the engine. A completed write is on every replica (`docs/disks.md`, guarantee 1) and
//! `flush` makes it durable (guarantee 2).

use crate::device::{BlockDevice, DeviceError, DeviceFuture};
use bytes::Bytes;
use feitian_raf::{Raf, RafError};
use std::sync::Arc;

/// A RAF volume as an NBD export's device.
pub struct RafDevice {
    raf: Arc<Raf>,
}

impl RafDevice {
    pub fn new(raf: Arc<Raf>) -> RafDevice {
        RafDevice { raf }
    }

    pub fn raf(&self) -> &Arc<Raf> {
        &self.raf
    }
}

fn device_error(e: RafError) -> DeviceError {
    match e {
        RafError::OutOfRange { offset, len, .. } => DeviceError::OutOfRange { offset, length: len },
        other => DeviceError::Backend(Box::new(other)),
    }
}

impl BlockDevice for RafDevice {
    fn size(&self) -> u64 {
        self.raf.size()
    }

    fn read(&self, offset: u64, length: u32) -> DeviceFuture<'_, Bytes> {
        Box::pin(async move { self.raf.read(offset, u64::from(length)).await.map_err(device_error) })
    }

    fn write(&self, offset: u64, data: Bytes) -> DeviceFuture<'_, ()> {
        Box::pin(async move { self.raf.write(offset, data).await.map_err(device_error) })
    }

    fn write_zeroes(&self, offset: u64, length: u64) -> DeviceFuture<'_, ()> {
        Box::pin(async move { self.raf.write_zeroes(offset, length).await.map_err(device_error) })
    }

    fn trim(&self, offset: u64, length: u64) -> DeviceFuture<'_, ()> {
        Box::pin(async move { self.raf.trim(offset, length).await.map_err(device_error) })
    }

    fn flush(&self) -> DeviceFuture<'_, ()> {
        Box::pin(async move { self.raf.flush().await.map_err(device_error) })
    }
}
