//! [`FileDevice`]: a raw file as a block device, the reference-style backend of the tests
//! and of `scripts/bench disk` (the same thing `qemu-nbd` serves there). It is not the
//! product's disk: that is a RAF volume on Pangu.
//!
//! `pread`/`pwrite` on the blocking pool, `fdatasync` for `flush` (so completed writes sit in
//! the page cache until a flush, as with `qemu-nbd --cache=writeback`), and holes punched
//! for trim and write-zeroes (zeros written instead where the file system cannot punch).

use crate::device::{BlockDevice, DeviceError, DeviceFuture};
use bytes::{Bytes, BytesMut};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A raw image file served as a block device.
pub struct FileDevice {
    file: Arc<File>,
    size: u64,
}

impl FileDevice {
    /// Opens an existing file; its length, rounded down to 4 KiB, is the device's size.
    pub fn open(path: &Path) -> io::Result<FileDevice> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let size = file.metadata()?.len() / 4096 * 4096;
        Ok(FileDevice { file: Arc::new(file), size })
    }

    /// Creates (or truncates) a sparse file of `size` bytes, rounded down to 4 KiB.
    pub fn create(path: &Path, size: u64) -> io::Result<FileDevice> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        let size = size / 4096 * 4096;
        file.set_len(size)?;
        Ok(FileDevice { file: Arc::new(file), size })
    }

    fn check(&self, offset: u64, length: u64) -> Result<(), DeviceError> {
        match offset.checked_add(length) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(DeviceError::OutOfRange { offset, length }),
        }
    }

    /// Runs blocking file work on tokio's blocking pool.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&File) -> io::Result<T> + Send + 'static,
    ) -> DeviceFuture<'_, T> {
        let file = self.file.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || f(&file)).await {
                Ok(r) => r.map_err(DeviceError::from),
                Err(e) => Err(DeviceError::Io(io::Error::other(e))),
            }
        })
    }

    /// Makes the range read as zeros: punch a hole, or write zeros where that is unsupported.
    fn zero(&self, offset: u64, length: u64) -> DeviceFuture<'_, ()> {
        if let Err(e) = self.check(offset, length) {
            return Box::pin(async move { Err(e) });
        }
        self.blocking(move |f| {
            let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(length)) else {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            };
            // SAFETY: fallocate on an open descriptor with plain integer arguments.
            let rc = unsafe {
                libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len)
            };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(err);
            }
            let zeros = vec![0u8; 1 << 20];
            let mut at = offset;
            while at < offset + length {
                let n = (offset + length - at).min(zeros.len() as u64) as usize;
                f.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            Ok(())
        })
    }
}

impl BlockDevice for FileDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, length: u32) -> DeviceFuture<'_, Bytes> {
        if let Err(e) = self.check(offset, u64::from(length)) {
            return Box::pin(async move { Err(e) });
        }
        self.blocking(move |f| {
            let mut buf = BytesMut::zeroed(length as usize);
            f.read_exact_at(&mut buf, offset)?;
            Ok(buf.freeze())
        })
    }

    fn write(&self, offset: u64, data: Bytes) -> DeviceFuture<'_, ()> {
        if let Err(e) = self.check(offset, data.len() as u64) {
            return Box::pin(async move { Err(e) });
        }
        self.blocking(move |f| f.write_all_at(&data, offset))
    }

    fn write_zeroes(&self, offset: u64, length: u64) -> DeviceFuture<'_, ()> {
        self.zero(offset, length)
    }

    fn trim(&self, offset: u64, length: u64) -> DeviceFuture<'_, ()> {
        self.zero(offset, length)
    }

    fn flush(&self) -> DeviceFuture<'_, ()> {
        self.blocking(|f| f.sync_data())
    }
}
