//! [`FileDevice`]: a raw file as a block device, the reference-style backend of the tests
//! and of `scripts/bench disk` (the same thing `qemu-nbd` serves there). It is not the
//! product's disk: that is a RAF volume on Pangu.
//!
//! `pread`/`pwrite` on tokio's blocking pool, `fdatasync` for `flush` (so completed writes
//! sit in the page cache until a flush, as with `qemu-nbd --cache=writeback`), and holes
//! punched for trim and write-zeroes (zeros written instead where the file system cannot
//! punch).
//!
//! Operations go through a queue that up to [`MAX_WORKERS`] blocking-pool threads drain:
//! handing each 4 KiB operation to the pool on its own cost more than the `pwrite` itself
//! (a profile of 4 KiB random writes at queue depth 32 spent two thirds of the server's time
//! waking and parking pool threads); a worker that finds more work keeps going.

use crate::device::{BlockDevice, DeviceError, DeviceFuture};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Blocking-pool threads that may work for one file at once (its queue depth at the disk).
pub const MAX_WORKERS: usize = 8;

type Job = Box<dyn FnOnce(&File) + Send>;

/// The file and its queue of operations.
struct Inner {
    file: File,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Workers running now.
    workers: usize,
}

/// A raw image file served as a block device.
pub struct FileDevice {
    inner: Arc<Inner>,
    size: u64,
}

impl FileDevice {
    /// Opens an existing file; its length, rounded down to 4 KiB, is the device's size.
    pub fn open(path: &Path) -> io::Result<FileDevice> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let size = file.metadata()?.len() / 4096 * 4096;
        Ok(FileDevice::new(file, size))
    }

    /// Creates (or truncates) a sparse file of `size` bytes, rounded down to 4 KiB.
    pub fn create(path: &Path, size: u64) -> io::Result<FileDevice> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        let size = size / 4096 * 4096;
        file.set_len(size)?;
        Ok(FileDevice::new(file, size))
    }

    fn new(file: File, size: u64) -> FileDevice {
        FileDevice { inner: Arc::new(Inner { file, queue: Mutex::new(Queue::default()) }), size }
    }

    fn check(&self, offset: u64, length: u64) -> Result<(), DeviceError> {
        match offset.checked_add(length) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(DeviceError::OutOfRange { offset, length }),
        }
    }

    /// Queues blocking file work; a worker on tokio's blocking pool runs it.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&File) -> io::Result<T> + Send + 'static,
    ) -> DeviceFuture<'_, T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |file| {
            let _ = tx.send(f(file));
        });
        let start_worker = {
            let mut q = self.inner.queue.lock();
            q.jobs.push_back(job);
            let more = q.workers < MAX_WORKERS;
            if more {
                q.workers += 1;
            }
            more
        };
        if start_worker {
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || work(&inner));
        }
        Box::pin(async move {
            match rx.await {
                Ok(r) => r.map_err(DeviceError::from),
                Err(_) => Err(DeviceError::Io(io::Error::other("the file worker stopped before the operation ran"))),
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

/// A worker: runs queued operations until the queue is empty.
fn work(inner: &Inner) {
    /// Counts a panicking worker out, so that the next submission starts another.
    struct OnPanic<'a>(&'a Inner);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.queue.lock().workers -= 1;
            }
        }
    }
    let _guard = OnPanic(inner);
    loop {
        let job = {
            let mut q = inner.queue.lock();
            match q.jobs.pop_front() {
                Some(job) => job,
                None => {
                    // Counted out under the same lock that saw the queue empty: a submission
                    // after this sees one worker fewer and starts one.
                    q.workers -= 1;
                    return;
                }
            }
        };
        job(&inner.file);
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
