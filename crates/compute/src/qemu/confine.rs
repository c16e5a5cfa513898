//! How a guest's QEMU is confined when feitian runs as root (issue 14).
//!
//! Each instance's QEMU runs as **its own uid** (and a gid of the same number, no
//! supplementary groups but `/dev/kvm`'s group under KVM), picked at random from
//! [`UID_BASE`]`..+`[`UID_COUNT`], a range with no passwd entries; the instance directory's
//! owner records it, so a restarted feitian and every later boot reuse it. Two guests'
//! QEMUs therefore cannot signal, trace or read each other (the kernel's ptrace and
//! `/proc` checks are per uid), which one shared QEMU user would allow.
//!
//! feitian, not QEMU, drops the privileges: in the forked child, before `exec`, it enters
//! the VPC's namespace, starts a session, clears the groups, sets the gid and uid and
//! forbids new privileges. QEMU's own `-runas` and `-daemonize` call `setuid`, `setsid` and
//! `fork` after its seccomp filter is loaded, which `-sandbox
//! …,elevateprivileges=deny,spawn=deny` kills, so QEMU here neither daemonizes nor drops
//! privileges itself; it loads the full [`SANDBOX`] filter and is never root.
//!
//! What QEMU opens after `exec` it opens as that uid, from its working directory, the
//! instance's private directory (mode 0700, owned by the uid): the system disk's overlay,
//! its backing image (`base.qcow2`), the kernel and initramfs, the console log, the QMP
//! socket and the pid file, all by relative names. The image files are hard links to the
//! built image when it is readable by others (its contents are public: Debian packages), or
//! copies otherwise; they are root's and read-only to the guest's uid. The tap is opened by
//! feitian inside the VPC's namespace and handed to QEMU as a descriptor (`-netdev
//! tap,fd=N`): opening a tap by name needs `CAP_NET_ADMIN`.
//!
//! The directory is the guest's uid's, so a QEMU taken over can put anything under any
//! name in it: a symbolic or hard link to a host file, a FIFO. feitian (root) therefore
//! never follows a name there: it reads only regular files with one link owned by whom it
//! expects ([`open_owned`]: the console log, the pid file), makes files afresh after
//! unlinking the name ([`create_fresh`], and `fchown`s the descriptor, never a path), and
//! talks QMP only to a peer whose pid is the instance's QEMU. The overlay is made while the
//! directory is still root's; a directory that is already the uid's and lost its overlay or
//! its backing file is refused, not repaired (its backing file name is the guest's to write).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The seccomp filter every confined QEMU loads: QEMU's default deny list, plus obsolete
/// system calls, `setuid` and friends, `fork`/`exec`, and scheduler and resource controls.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The first uid of the range guests' QEMUs run as. systemd leaves 1879048192–2147483647
/// unassigned (its container range ends below it); nothing on a Debian host has a passwd
/// entry there.
pub const UID_BASE: u32 = 0x7000_0000;
/// How many uids the range holds (16 Mi): feitians sharing a host pick at random, so two of
/// them pick the same free uid at the same moment with odds of about one in 16 million.
pub const UID_COUNT: u32 = 1 << 24;

/// How the driver confines QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Whether this QEMU was built with seccomp (`-sandbox`).
    pub sandbox: bool,
    /// A supplementary group for `/dev/kvm`, when guests run under KVM.
    pub kvm_gid: Option<u32>,
}

/// Whether `uid` belongs to the range guests' QEMUs run as.
pub fn is_guest_uid(uid: u32) -> bool {
    (UID_BASE..UID_BASE + UID_COUNT).contains(&uid)
}

/// Picks a uid of the range, starting at `random` and probing forward: the first that
/// `taken` does not claim, or `None` after `tries` taken ones.
pub fn pick_uid(random: u32, tries: u32, taken: impl Fn(u32) -> bool) -> Option<u32> {
    (0..tries).map(|i| UID_BASE + random.wrapping_add(i) % UID_COUNT).find(|uid| !taken(*uid))
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        // Uniqueness is still checked below; the randomness only spreads feitians apart.
        std::process::id().wrapping_mul(2_654_435_761) ^ std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.subsec_nanos())
    }
}

/// Whether `uid` is in use on this host: a passwd entry, a running process, or another
/// instance directory in `run_dir`.
fn uid_in_use(uid: u32, run_dir: &Path) -> bool {
    // SAFETY: getpwuid returns a pointer into static storage or null; only nullness is read.
    if !unsafe { libc::getpwuid(uid) }.is_null() {
        return true;
    }
    let owned_by = |dir: &Path| {
        std::fs::read_dir(dir).map(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.uid() == uid))).unwrap_or(false)
    };
    owned_by(Path::new("/proc")) || owned_by(run_dir)
}

/// The guest uid instance directory `dir` was handed to, if it was.
pub fn handed_to(dir: &Path) -> io::Result<Option<u32>> {
    let uid = std::fs::symlink_metadata(dir)?.uid();
    Ok(is_guest_uid(uid).then_some(uid))
}

/// Hands instance directory `dir` (in `run_dir`, which is root's) to a fresh guest uid,
/// mode 0700, and returns the uid. From then on the uid may put anything in it.
pub fn hand_over(dir: &Path, run_dir: &Path) -> io::Result<u32> {
    let uid = pick_uid(random_u32(), 1000, |uid| uid_in_use(uid, run_dir))
        .ok_or_else(|| io::Error::other("no free uid for the guest's QEMU"))?;
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(uid)
}

/// Opens `path`, in a directory the guest's uid may write, for reading: no symbolic link
/// followed, no FIFO waited on, and only a regular file owned by `owner` with one link
/// (anything else is refused as `PermissionDenied`).
pub fn open_owned(path: &Path, owner: u32) -> io::Result<File> {
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let m = f.metadata()?;
    if !m.is_file() || m.uid() != owner || m.nlink() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not {owner}'s own file", path.display()),
        ));
    }
    Ok(f)
}

/// Makes `path` afresh, empty, mode `mode`, owned by `owner`: whatever had the name is
/// unlinked (never followed), the file is created exclusively, and ownership is given
/// through its descriptor.
pub fn create_fresh(path: &Path, owner: u32, mode: u32) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    std::os::unix::fs::fchown(&f, Some(owner), Some(owner))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// Puts a read-only view of image file `src` at `dst`: a hard link when `src` is readable
/// by others (and on the same file system), a root-owned 0644 copy otherwise. `dst` may be
/// in the guest's directory: its name is unlinked, never followed.
pub fn stage_readonly(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(src)?;
    if let Ok(have) = std::fs::symlink_metadata(dst) {
        if have.dev() == meta.dev() && have.ino() == meta.ino() {
            return Ok(());
        }
        std::fs::remove_file(dst)?;
    }
    if meta.mode() & 0o004 != 0 && std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    let tmp = dst.with_extension("tmp");
    let mut out = create_fresh(&tmp, 0, 0o644)?;
    io::copy(&mut File::open(src)?, &mut out)?;
    out.sync_all()?;
    std::fs::rename(&tmp, dst)
}

const TUNSETIFF: libc::c_ulong = 0x400454ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

fn open_tap_here(name: &str) -> io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    // struct ifreq: the name (16 bytes, NUL-terminated), then the flags (a short).
    let mut ifr = [0u8; 40];
    let bytes = name.as_bytes();
    if bytes.len() >= 16 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("tap name {name} is too long")));
    }
    ifr[..bytes.len()].copy_from_slice(bytes);
    ifr[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which ifr is large enough to hold.
    if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f.into())
}

/// Opens tap `name`, which lives in network namespace `ns` (an `ip netns` name), as QEMU
/// opens a tap by name (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`). A thread of its own enters the
/// namespace, so no other work runs there. The descriptor is close-on-exec.
pub fn open_tap(ns: Option<&str>, name: &str) -> io::Result<OwnedFd> {
    let Some(ns) = ns else { return open_tap_here(name) };
    let ns_file = std::fs::File::open(Path::new("/var/run/netns").join(ns))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a descriptor we hold; it changes only this thread's namespace.
            if unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            open_tap_here(name)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the tap-opening thread panicked")))
    })
}

/// The group of `/dev/kvm` if its group may read and write it (Debian: `kvm`, 0660).
pub fn kvm_group() -> Option<u32> {
    let m = std::fs::metadata("/dev/kvm").ok()?;
    (m.mode() & 0o060 == 0o060 && m.gid() != 0).then_some(m.gid())
}

/// Whether `qemu` has a seccomp sandbox with [`SANDBOX`]'s options: QEMU parses `-sandbox`
/// before `-version` exits, and one built without libseccomp refuses the option.
pub fn sandbox_supported(qemu: &str) -> bool {
    std::process::Command::new(qemu)
        .args(["-sandbox", SANDBOX, "-version"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the forked child does before `exec`, as root: enter the VPC's namespace (`netns_fd`),
/// start its own session (so it outlives feitian and no terminal signals it), let `keep_fd`
/// (the tap) cross `exec`, and become `uid` for good.
///
/// # Safety
/// Runs between `fork` and `exec`: only async-signal-safe calls, no allocation.
pub unsafe fn drop_privileges(
    netns_fd: Option<i32>,
    keep_fd: Option<i32>,
    uid: u32,
    groups: &[libc::gid_t],
) -> io::Result<()> {
    let check = |r: libc::c_int| if r != 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
    if let Some(fd) = netns_fd {
        check(libc::setns(fd, libc::CLONE_NEWNET))?;
    }
    if libc::setsid() < 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(fd) = keep_fd {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        check(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC))?;
    }
    check(libc::setgroups(groups.len(), groups.as_ptr()))?;
    check(libc::setresgid(uid, uid, uid))?;
    check(libc::setresuid(uid, uid, uid))?;
    // Nothing QEMU might exec may regain privileges (the sandbox forbids exec anyway).
    check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    if libc::setuid(0) == 0 {
        // (No allocation here: a plain errno.)
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_come_from_the_range_and_skip_taken_ones() {
        assert_eq!(pick_uid(0, 10, |_| false), Some(UID_BASE));
        assert_eq!(pick_uid(5, 10, |uid| uid < UID_BASE + 7), Some(UID_BASE + 7));
        // The probe wraps around the end of the range.
        assert_eq!(pick_uid(UID_COUNT - 1, 10, |uid| uid == UID_BASE + UID_COUNT - 1), Some(UID_BASE));
        assert_eq!(pick_uid(u32::MAX, 3, |_| false), Some(UID_BASE + u32::MAX % UID_COUNT));
        assert_eq!(pick_uid(1, 5, |_| true), None);
        for r in [0, 1, 12345, u32::MAX] {
            assert!(is_guest_uid(pick_uid(r, 1, |_| false).unwrap()));
        }
        assert!(!is_guest_uid(0) && !is_guest_uid(65534) && !is_guest_uid(UID_BASE + UID_COUNT));
    }

    #[test]
    fn planted_names_are_neither_followed_nor_read() {
        let d = tempfile::tempdir().unwrap();
        let me = unsafe { libc::geteuid() };
        let secret = d.path().join("secret");
        std::fs::write(&secret, b"host secret").unwrap();
        // A symbolic link, a hard link, a FIFO and another owner's file are all refused.
        let link = d.path().join("console.log");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(open_owned(&link, me).is_err());
        let hard = d.path().join("qemu.pid");
        std::fs::hard_link(&secret, &hard).unwrap();
        assert!(open_owned(&hard, me).is_err());
        let fifo = d.path().join("qemu.log");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(open_owned(&fifo, me).is_err()); // and it did not wait for a writer
        let own = d.path().join("own");
        std::fs::write(&own, b"x").unwrap();
        assert!(open_owned(&own, me).is_ok());
        assert!(open_owned(&own, me.wrapping_add(1)).is_err());
        // Making a file afresh replaces the planted names and leaves their targets alone.
        for planted in [&link, &hard, &fifo] {
            let f = create_fresh(planted, me, 0o600).unwrap();
            assert!(f.metadata().unwrap().is_file());
            assert!(open_owned(planted, me).is_ok());
        }
        assert_eq!(std::fs::read(&secret).unwrap(), b"host secret");
    }

    #[test]
    fn image_files_are_linked_when_public_and_copied_when_not() {
        let d = tempfile::tempdir().unwrap();
        let public = d.path().join("vmlinuz");
        let private = d.path().join("rootfs.qcow2");
        std::fs::write(&public, b"kernel").unwrap();
        std::fs::write(&private, b"disk").unwrap();
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        let inst = d.path().join("i-1");
        std::fs::create_dir(&inst).unwrap();
        stage_readonly(&public, &inst.join("vmlinuz")).unwrap();
        stage_readonly(&public, &inst.join("vmlinuz")).unwrap(); // again: unchanged
        assert_eq!(std::fs::metadata(inst.join("vmlinuz")).unwrap().ino(), std::fs::metadata(&public).unwrap().ino());
        if crate::image::is_root() {
            stage_readonly(&private, &inst.join("base.qcow2")).unwrap();
            let m = std::fs::metadata(inst.join("base.qcow2")).unwrap();
            assert_ne!(m.ino(), std::fs::metadata(&private).unwrap().ino());
            assert_eq!((m.mode() & 0o777, m.uid()), (0o644, 0));
            assert_eq!(std::fs::read(inst.join("base.qcow2")).unwrap(), b"disk");
            // The original keeps its mode.
            assert_eq!(std::fs::metadata(&private).unwrap().mode() & 0o777, 0o600);
        }
    }
}
