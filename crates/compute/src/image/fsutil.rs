//! The file operations the build does, each turning an `io::Error` into an [`ImageError`]
//! that names the path, so a failed build says which file it could not make. Modes are set
//! explicitly (not left to the umask): they end up in the image as they are here.

use super::ImageError;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

pub(super) fn mkdirs(p: &Path) -> Result<(), ImageError> {
    fs::create_dir_all(p).map_err(|e| ImageError::io(format!("creating {}", p.display()), e))
}

pub(super) fn set_mode(p: &Path, mode: u32) -> Result<(), ImageError> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| ImageError::io(format!("setting the mode of {}", p.display()), e))
}

pub(super) fn write_file(p: &Path, data: &[u8], mode: u32) -> Result<(), ImageError> {
    if let Some(parent) = p.parent() {
        mkdirs(parent)?;
    }
    let mut f = fs::File::create(p).map_err(|e| ImageError::io(format!("creating {}", p.display()), e))?;
    f.write_all(data).map_err(|e| ImageError::io(format!("writing {}", p.display()), e))?;
    drop(f);
    set_mode(p, mode)
}

/// Copies a file's content (following symlinks) and its permission bits.
pub(super) fn copy_file(src: &Path, dst: &Path) -> Result<(), ImageError> {
    if let Some(parent) = dst.parent() {
        mkdirs(parent)?;
    }
    fs::copy(src, dst).map_err(|e| ImageError::io(format!("copying {} to {}", src.display(), dst.display()), e))?;
    let mode = fs::metadata(src).map(|m| m.mode() & 0o7777).unwrap_or(0o644);
    set_mode(dst, mode)
}

pub(super) fn symlink(target: &str, link: &Path) -> Result<(), ImageError> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| ImageError::io(format!("linking {} to {target}", link.display()), e))
}

pub(super) fn remove_all(p: &Path) -> Result<(), ImageError> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io(format!("removing {}", p.display()), e)),
    }
}

pub(super) fn fsync(p: &Path) -> Result<(), ImageError> {
    fs::File::open(p).and_then(|f| f.sync_all()).map_err(|e| ImageError::io(format!("syncing {}", p.display()), e))
}

/// Puts a staged image directory into place: its `files` and the directory itself made
/// durable, an earlier directory at `out` (a broken attempt) removed, the rename, and the
/// parent `images_dir` made durable, so a crash leaves the old state or the whole new image.
pub(super) fn publish(
    staged: &Path,
    files: &[std::path::PathBuf],
    out: &Path,
    images_dir: &Path,
) -> Result<(), ImageError> {
    for f in files {
        fsync(f)?;
    }
    fsync(staged)?;
    if out.exists() {
        remove_all(out)?;
    }
    fs::rename(staged, out)
        .map_err(|e| ImageError::io(format!("renaming {} to {}", staged.display(), out.display()), e))?;
    fsync(images_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_the_mode_and_writes_make_parents() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("a/b/tool");
        write_file(&src, b"#!/bin/sh\n", 0o750).unwrap();
        let dst = t.path().join("c/d/tool");
        copy_file(&src, &dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"#!/bin/sh\n");
        assert_eq!(fs::metadata(&dst).unwrap().mode() & 0o7777, 0o750);
    }

    #[test]
    fn removing_what_is_not_there_is_fine() {
        let t = tempfile::tempdir().unwrap();
        remove_all(&t.path().join("absent")).unwrap();
        mkdirs(&t.path().join("x/y")).unwrap();
        remove_all(&t.path().join("x")).unwrap();
        assert!(!t.path().join("x").exists());
    }
}
