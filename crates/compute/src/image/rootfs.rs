//! The guest's root file system: the tree (busybox and its applet links, dropbear, resize2fs,
//! scp and sftp-server with exactly the shared libraries they need, found by reading their ELF headers
//! in the unpacked packages rather than installing the packages, the kernel modules, `/etc`
//! and the guest scripts) and the disk made of it (ext4 by `mke2fs -d`, converted to qcow2).
//! Paths from packages are resolved as if the package were `/`, never outside it, so an odd
//! symlink in a package cannot pull a host file into the image.

use super::debs::AptPackage;
use super::elf::Elf;
use super::fsutil::{copy_file, mkdirs, set_mode, symlink, write_file};
use super::kmod::{modules_dep, Module};
use super::tools::{is_root, run, stderr_of, tool};
use super::{
    ImageError, ETC_GROUP, ETC_HOSTS, ETC_NSSWITCH, ETC_OS_RELEASE, ETC_PASSWD, ETC_PROFILE, ETC_SHADOW, ETC_SHELLS,
    GUEST_ACPI_POWER, GUEST_HALT, GUEST_INITTAB, GUEST_RC_BOOT, GUEST_RC_SHUTDOWN, GUEST_RC_USERDATA, REQUIRED_FILES,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Assembles the guest's root file system in the directory `root`: the directory tree,
/// busybox and its `applets`, the `programs` (each an unpacked package and files from it)
/// with the shared libraries they need from the unpacked packages `roots` and the dynamic
/// loader, the kernel `modules` with their `modules.dep`, `/etc` and the guest scripts.
#[allow(clippy::too_many_arguments)]
pub(super) fn assemble_rootfs(
    root: &Path,
    busybox: &Path,
    applets: &[String],
    programs: &[(&Path, &[&str])],
    roots: &BTreeMap<String, PathBuf>,
    pkgs: &[AptPackage],
    kroot: &Path,
    release: &str,
    modules: &[Module],
) -> Result<(), ImageError> {
    for (d, mode) in [
        ("", 0o755),
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("lib", 0o755),
        ("lib/x86_64-linux-gnu", 0o755),
        ("lib64", 0o755),
        ("etc", 0o755),
        ("etc/feitian", 0o755),
        ("etc/acpi", 0o755),
        ("etc/acpi/PWRF", 0o755),
        ("etc/dropbear", 0o700),
        ("root", 0o700),
        ("root/.ssh", 0o700),
        ("home", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("mnt", 0o755),
        ("var", 0o755),
        ("var/log", 0o755),
        ("var/lib", 0o755),
        ("var/lib/feitian", 0o755),
        ("var/tmp", 0o1777),
    ] {
        let p = root.join(d);
        mkdirs(&p)?;
        set_mode(&p, mode)?;
    }
    symlink("../run", &root.join("var/run"))?;
    symlink("/proc/mounts", &root.join("etc/mtab"))?;

    copy_file(busybox, &root.join("bin/busybox"))?;
    for a in applets {
        let link = root.join(a);
        if let Some(parent) = link.parent() {
            mkdirs(parent)?;
        }
        if fs::symlink_metadata(&link).is_err() {
            symlink("/bin/busybox", &link)?;
        }
    }

    // dropbear's, e2fsprogs' and OpenSSH's programs, their shared libraries (resolved from the
    // unpacked packages, recursively) and the dynamic loader.
    let lib_roots: Vec<&PathBuf> = pkgs
        .iter()
        .filter(|p| p.name != "busybox-static" && !p.name.starts_with("linux-image-"))
        .map(|p| &roots[&p.name])
        .collect();
    let mut needed: Vec<String> = Vec::new();
    let mut interps: BTreeSet<String> = BTreeSet::new();
    for (dir, f) in programs.iter().flat_map(|(dir, files)| files.iter().map(move |f| (*dir, f))) {
        // Resolved inside the package (a listed path may be a link in it, as sftp-server's is),
        // so that a link's target is the package's file, never the host's.
        let Some(src) = resolve_in_root(dir, f).filter(|p| p.is_file()) else {
            if REQUIRED_FILES.contains(f) {
                return Err(ImageError::Recipe(format!("no unpacked package has {f}")));
            }
            continue;
        };
        let bytes = fs::read(&src).map_err(|e| ImageError::io(format!("reading {}", src.display()), e))?;
        let elf = Elf::parse(&bytes).ok_or_else(|| ImageError::Recipe(format!("{f} is not an x86-64 ELF file")))?;
        needed.extend(elf.needed());
        interps.extend(elf.interp());
        // A program replaces busybox's applet of the same name (busybox has a small mke2fs):
        // the applet's link goes first, or the copy would write through it to /bin/busybox,
        // outside the tree.
        let dst = root.join(f);
        if fs::symlink_metadata(&dst).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&dst).map_err(|e| ImageError::io(format!("removing {}", dst.display()), e))?;
        }
        copy_file(&src, &dst)?;
    }
    let mut installed: BTreeSet<String> = BTreeSet::new();
    while let Some(soname) = needed.pop() {
        if !installed.insert(soname.clone()) {
            continue;
        }
        let src = find_library(&lib_roots, &soname).ok_or_else(|| {
            ImageError::Recipe(format!(
                "no unpacked package provides {soname}, which a program of the image needs (a package in \
                 DEPENDS_NOT_FOLLOWED may now need a library)"
            ))
        })?;
        let bytes = fs::read(&src).map_err(|e| ImageError::io(format!("reading {}", src.display()), e))?;
        if let Some(elf) = Elf::parse(&bytes) {
            needed.extend(elf.needed());
        }
        write_file(&root.join("lib/x86_64-linux-gnu").join(&soname), &bytes, 0o755)?;
    }
    for interp in interps {
        let rel = interp.trim_start_matches('/');
        if !safe_rel(rel) {
            return Err(ImageError::Recipe(format!("odd program interpreter {interp}")));
        }
        let src = lib_roots
            .iter()
            .find_map(|r| resolve_in_root(r, rel))
            .ok_or_else(|| ImageError::Recipe(format!("no unpacked package provides the dynamic loader {interp}")))?;
        let dst = root.join(rel);
        if let Some(parent) = dst.parent() {
            mkdirs(parent)?;
        }
        copy_file(&src, &dst)?;
    }

    // Kernel modules (the initramfs loads them; busybox modprobe finds them here too).
    let mbase = root.join("lib/modules").join(release);
    for m in modules {
        let dst = mbase.join(&m.rel);
        mkdirs(dst.parent().expect("has parent"))?;
        copy_file(&kroot.join("lib/modules").join(release).join(&m.rel), &dst)?;
    }
    write_file(&mbase.join("modules.dep"), modules_dep(modules).as_bytes(), 0o644)?;
    for f in ["modules.builtin", "modules.order"] {
        let src = kroot.join("lib/modules").join(release).join(f);
        if src.is_file() {
            copy_file(&src, &mbase.join(f))?;
        }
    }

    // /etc and the guest scripts.
    for (path, text, mode) in [
        ("etc/passwd", ETC_PASSWD, 0o644),
        ("etc/group", ETC_GROUP, 0o644),
        ("etc/shadow", ETC_SHADOW, 0o600),
        ("etc/shells", ETC_SHELLS, 0o644),
        ("etc/nsswitch.conf", ETC_NSSWITCH, 0o644),
        ("etc/hosts", ETC_HOSTS, 0o644),
        ("etc/hostname", "localhost\n", 0o644),
        ("etc/profile", ETC_PROFILE, 0o644),
        ("etc/os-release", ETC_OS_RELEASE, 0o644),
        ("etc/inittab", GUEST_INITTAB, 0o644),
        ("etc/feitian/rc.boot", GUEST_RC_BOOT, 0o755),
        ("etc/feitian/rc.userdata", GUEST_RC_USERDATA, 0o755),
        ("etc/feitian/rc.shutdown", GUEST_RC_SHUTDOWN, 0o755),
        ("etc/acpi/PWRF/00000080", GUEST_ACPI_POWER, 0o755),
    ] {
        write_file(&root.join(path), text.as_bytes(), mode)?;
    }
    // poweroff, reboot and halt go through a script (it tells rc.shutdown which one it was).
    write_file(&root.join("etc/feitian/halt"), GUEST_HALT.as_bytes(), 0o755)?;
    for cmd in ["poweroff", "reboot", "halt"] {
        let link = root.join("sbin").join(cmd);
        let _ = fs::remove_file(&link);
        symlink("/etc/feitian/halt", &link)?;
    }
    Ok(())
}

/// Makes the root disk `qcow2` of the tree `tree`: an ext4 file system of `size_mib` MiB
/// made in `work` (`mke2fs -d`, no loop mount, so no root needed), every inode root's,
/// converted to qcow2.
pub(super) fn make_disk(
    tree: &Path,
    work: &Path,
    qcow2: &Path,
    size_mib: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    progress(&format!("making the ext4 root disk ({size_mib} MiB)"));
    let raw = work.join("rootfs.raw");
    let o = run(
        tool("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-L", "feitian-root", "-m", "0"])
            .args(["-E", "root_owner=0:0"])
            .arg("-d")
            .arg(tree)
            .arg(&raw)
            .arg(format!("{size_mib}M")),
        "mke2fs",
        "e2fsprogs",
    )?;
    if !o.status.success() {
        return Err(ImageError::Tool { what: "mke2fs".into(), stderr: stderr_of(&o) });
    }
    if !is_root() {
        // Unpacked as another user, the files would belong to it in the image; make them root's.
        chown_in_image(&raw, tree, work)?;
    }
    progress("converting the root disk to qcow2");
    let o = run(
        tool("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(qcow2),
        "qemu-img",
        "qemu-utils",
    )?;
    if !o.status.success() {
        return Err(ImageError::Tool { what: "qemu-img convert".into(), stderr: stderr_of(&o) });
    }
    fs::remove_file(&raw).map_err(|e| ImageError::io(format!("removing {}", raw.display()), e))?;
    Ok(())
}

/// Makes every inode in the image root's (for builds that did not run as root).
fn chown_in_image(raw: &Path, tree: &Path, work: &Path) -> Result<(), ImageError> {
    let mut cmds = String::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = tree.join(&rel);
        let name = format!("/{}", rel.to_string_lossy());
        cmds.push_str(&format!("sif \"{name}\" uid 0\nsif \"{name}\" gid 0\n"));
        let meta = fs::symlink_metadata(&p).map_err(|e| ImageError::io(format!("reading {}", p.display()), e))?;
        if meta.is_dir() {
            for e in fs::read_dir(&p).map_err(|e| ImageError::io(format!("reading {}", p.display()), e))?.flatten() {
                stack.push(rel.join(e.file_name()));
            }
        }
    }
    let script = work.join("debugfs.cmds");
    write_file(&script, cmds.as_bytes(), 0o644)?;
    let o = run(tool("debugfs").arg("-w").arg("-f").arg(&script).arg(raw), "debugfs", "e2fsprogs")?;
    if !o.status.success() {
        return Err(ImageError::Tool { what: "debugfs (setting owners)".into(), stderr: stderr_of(&o) });
    }
    Ok(())
}

/// True for a relative path without `..` (safe to join under a root).
pub(super) fn safe_rel(p: &str) -> bool {
    Path::new(p).components().all(|c| matches!(c, Component::Normal(_)))
}

/// `rel` resolved inside `root` as if `root` were `/`, following symlinks (also absolute ones)
/// within it; never leaves `root`. `None` when it does not exist.
fn resolve_in_root(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut todo: Vec<String> = rel.split('/').filter(|c| !c.is_empty()).rev().map(str::to_string).collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(cur.iter().chain(std::iter::once(&c)).collect::<PathBuf>());
        let meta = fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = fs::read_link(&candidate).ok()?;
            let t = target.to_string_lossy().into_owned();
            if t.starts_with('/') {
                cur.clear();
            }
            todo.extend(t.split('/').filter(|c| !c.is_empty()).rev().map(str::to_string));
        } else {
            cur.push(c);
        }
    }
    let p = root.join(cur.iter().collect::<PathBuf>());
    p.exists().then_some(p)
}

/// Where shared libraries are in an unpacked Debian package, most likely first.
const LIB_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"];

/// Finds a shared library (by soname) in the unpacked packages.
fn find_library(roots: &[&PathBuf], soname: &str) -> Option<PathBuf> {
    roots.iter().find_map(|r| LIB_DIRS.iter().find_map(|d| resolve_in_root(r, &format!("{d}/{soname}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths_are_relative_without_dot_dot() {
        assert!(safe_rel("bin/sh") && safe_rel("usr/sbin/dropbear"));
        assert!(!safe_rel("/bin/sh") && !safe_rel("../etc/passwd") && !safe_rel("usr/../../etc") && !safe_rel("./x"));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(r.join("lib64")).unwrap();
        fs::write(r.join("lib/x86_64-linux-gnu/ld-2.so"), b"x").unwrap();
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/ld-2.so", r.join("lib64/ld.so")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", r.join("lib64/escape")).unwrap();
        assert_eq!(resolve_in_root(r, "lib64/ld.so"), Some(r.join("lib/x86_64-linux-gnu/ld-2.so")));
        assert_eq!(resolve_in_root(r, "lib64/escape"), None);
    }

    #[test]
    fn libraries_are_found_in_the_first_package_that_has_them() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(a.join("usr/lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(b.join("lib/x86_64-linux-gnu")).unwrap();
        fs::write(a.join("usr/lib/x86_64-linux-gnu/libz.so.1.2"), b"z").unwrap();
        std::os::unix::fs::symlink("libz.so.1.2", a.join("usr/lib/x86_64-linux-gnu/libz.so.1")).unwrap();
        fs::write(b.join("lib/x86_64-linux-gnu/libc.so.6"), b"c").unwrap();
        let roots = [&a, &b];
        assert_eq!(find_library(&roots, "libz.so.1"), Some(a.join("usr/lib/x86_64-linux-gnu/libz.so.1.2")));
        assert_eq!(find_library(&roots, "libc.so.6"), Some(b.join("lib/x86_64-linux-gnu/libc.so.6")));
        assert_eq!(find_library(&roots, "libm.so.6"), None);
    }
}
