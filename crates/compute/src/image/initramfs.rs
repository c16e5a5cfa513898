//! What the initramfs holds: busybox and its applet links, `/dev/console` and `/dev/null`,
//! the guest's modules with the list `/init` loads them from (`etc/feitian-modules`, in load
//! order), and `/init` ([`GUEST_INITRAMFS_INIT`]), which mounts the root disk and
//! `switch_root`s to it. Kept small and uncompressed: the kernel unpacks it in no time, and
//! everything else is on the disk.

use super::cpio::Cpio;
use super::fsutil::write_file;
use super::kmod::Module;
use super::{ImageError, GUEST_INITRAMFS_INIT};
use std::fs;
use std::path::Path;

/// Writes the initramfs to `dst`: `busybox` with `applets` linked to it, and `modules` of
/// the unpacked kernel package `kroot` (of release `release`).
pub(super) fn write_initramfs(
    dst: &Path,
    busybox: &Path,
    applets: &[String],
    kroot: &Path,
    release: &str,
    modules: &[Module],
) -> Result<(), ImageError> {
    let mut cpio = Cpio::default();
    for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "newroot", "etc", "lib", "lib/modules"]
    {
        cpio.dir(d);
    }
    cpio.node("dev/console", 0o020600, (5, 1));
    cpio.node("dev/null", 0o020666, (1, 3));
    cpio.file("init", GUEST_INITRAMFS_INIT.as_bytes(), 0o755);
    let bb = fs::read(busybox).map_err(|e| ImageError::io(format!("reading {}", busybox.display()), e))?;
    cpio.file("bin/busybox", &bb, 0o755);
    for a in applets {
        cpio.symlink(a, "/bin/busybox");
    }
    let mut list = String::new();
    for m in modules {
        let rel = format!("{release}/{}", m.rel);
        let src = kroot.join("lib/modules").join(&rel);
        let bytes = fs::read(&src).map_err(|e| ImageError::io(format!("reading {}", src.display()), e))?;
        cpio.file(&format!("lib/modules/{rel}"), &bytes, 0o644);
        list.push_str(&rel);
        list.push('\n');
    }
    cpio.file("etc/feitian-modules", list.as_bytes(), 0o644);
    write_file(dst, &cpio.finish(), 0o644)
}
