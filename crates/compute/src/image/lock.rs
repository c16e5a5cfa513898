//! One image builder at a time, also across processes: two `feitian up` (or a test and a
//! `feitian up`) that find no image would otherwise build into the same scratch directory.
//! An `flock` rather than a lock file's existence, so a builder that dies (even `kill -9`)
//! releases it and never leaves a stale lock behind.

use super::ImageError;
use std::fs;
use std::io;
use std::path::Path;

/// An exclusive `flock` on a file, released on drop (or when the process dies).
pub(super) struct BuildLock {
    _file: fs::File,
}

impl BuildLock {
    pub(super) fn acquire(path: &Path) -> Result<BuildLock, ImageError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| ImageError::io(format!("opening {}", path.display()), e))?;
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(BuildLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(ImageError::io(format!("locking {}", path.display()), e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Whether another open file description could take the lock now.
    fn free(path: &Path) -> bool {
        let f = fs::File::open(path).unwrap();
        // SAFETY: flock on a descriptor this function owns.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }

    #[test]
    fn the_lock_is_held_until_dropped() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(".build.lock");
        let lock = BuildLock::acquire(&path).unwrap();
        assert!(!free(&path));
        drop(lock);
        assert!(free(&path));
    }
}
