//! The built-in guest image for real (QEMU) instances.
//!
//! [`build`] makes, from Debian 12 packages and without installing anything on the host, a small
//! guest that boots in seconds:
//! - `vmlinuz`: the kernel of `linux-image-cloud-amd64` (the real package it depends on,
//!   `linux-image-6.1.0-NN-cloud-amd64`);
//! - `initrd.img`: an uncompressed cpio (newc) initramfs with `busybox-static`, the virtio,
//!   ACPI button and evdev modules and an `/init` ([`GUEST_INITRAMFS_INIT`]) that loads them,
//!   waits for `/dev/vda`, mounts it and `switch_root`s to busybox init on it;
//! - `rootfs.qcow2`: an ext4 disk (`/dev/vda`) with busybox and its applet links, `dropbear`
//!   (from `dropbear-bin`), OpenSSH's `scp` (from `openssh-client`, for the legacy `scp -t`/`-f`
//!   protocol that Packer's SCP uploads drive) and `sftp-server` (from `openssh-sftp-server`, at
//!   `/usr/lib/sftp-server`, where Debian's dropbear runs it for the `sftp` subsystem that
//!   Ansible and OpenSSH 9's `scp` use), with the shared libraries they need and the dynamic
//!   loader, `resize2fs` and `mke2fs`, the same modules, and a tiny cloud-init written as busybox shell scripts (`crates/compute/guest/`).
//!   Instances get qcow2 overlays with this file as their backing file, so it is never changed
//!   once built;
//! - `image.json`: the [`Manifest`] (packages and versions, the kernel command line base).
//!
//! The guest's contract, which the QEMU driver relies on: boot with `-kernel vmlinuz -initrd
//! initrd.img -append "<cmdline>"`, the disk as `-drive file=<overlay>,if=virtio`, one
//! virtio-net NIC and the serial console on ttyS0. The command line is
//! [`Manifest::kernel_cmdline_base`] plus `feitian.ip=A.B.C.D/N feitian.gw=G.G.G.G
//! feitian.mac=aa:bb:cc:dd:ee:ff feitian.hostname=NAME` (see [`kernel_cmdline`]). The guest
//! then, in order: mounts proc, sys, devtmpfs, devpts, /run and /tmp; sets the host name;
//! configures the NIC with that MAC (no `feitian.ip`: no network); fetches instance-id,
//! hostname, `public-keys/0/openssh-key` (to `/root/.ssh/authorized_keys`) and user-data from
//! `http://100.100.100.200/latest/` (at most ~20 s, never hanging); starts dropbear on port 22
//! and prints `feitian-guest: ssh ready` on the console; runs a `#!` user-data script once per
//! instance id (output to `/var/log/user-data.log` and the console, then `feitian-guest:
//! user-data exit CODE`; on later boots `feitian-guest: user-data already ran`). The ACPI
//! power button (QMP `system_powerdown`) powers it off cleanly, as do `poweroff` and `reboot`
//! typed in it; shutdown leaves the root file system clean.
//!
//! For a fast boot, QEMU should also get `-device virtio-rng-pci` (the image has the driver;
//! without it a TCG guest waits seconds for entropy before dropbear starts) and the NIC
//! `romfile=` (no iPXE option ROM, which `-kernel` boots never use and TCG is slow to run).
//! Under TCG the guest prints `feitian-guest: ssh ready` some 5 to 8 s after QEMU starts.
//!
//! Host tools the build runs (none of them is installed by it): `apt-get` and `apt-cache`
//! (Debian package `apt`, with package lists: `apt-get update`), `dpkg-deb` (`dpkg`),
//! `mke2fs` (`e2fsprogs`; also `debugfs` when not run as root) and `qemu-img`
//! (`qemu-utils`). The initramfs cpio archive is written by this module itself (no `cpio`
//! needed), which also lets it hold a `/dev/console` node without root. The downloaded
//! `.deb` files are kept in `images_dir/.cache/debs` and reused (checked against the
//! archive's SHA-256).
//!
//! The build's parts, one job each (this file holds the public API, the recipe and the
//! orchestration that runs them in order):
//! - `debs`: finds the Debian packages (`apt-cache show`), downloads and checks them
//!   (`apt-get download`, SHA-256) and unpacks them (`dpkg-deb -x`);
//! - `kmod`: the kernel release, the guest's modules with their dependencies, `modules.dep`;
//! - `elf`: reads ELF files (a module's `.modinfo`, a program's libraries and loader);
//! - `rootfs`: assembles the root file system tree and makes the ext4/qcow2 disk of it;
//! - `initramfs`: what the initramfs holds, written through `cpio` (the archive format);
//! - `tools`: the host tools the build runs; `fsutil`: file operations with the path in
//!   their errors; `lock`: one builder at a time.
//!
//! Beside it, [`debian`] builds the Debian 12 public image (a full Debian system by
//! `mmdebstrap`), which boots with this image's kernel and initramfs.

mod cpio;
pub mod debian;
mod debs;
mod elf;
mod fsutil;
mod initramfs;
mod kmod;
mod lock;
mod rootfs;
mod tools;

pub use tools::{find_in_path, is_root};

use debs::AptPackage;
use fsutil::{copy_file, mkdirs, publish, remove_all, write_file};
use lock::BuildLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use tools::{run, stderr_of};

/// The image's directory name under the images directory.
pub const BUILTIN_IMAGE_NAME: &str = "feitian-debian12-busybox";
/// The kernel meta package; the image uses the real kernel package it depends on.
pub const KERNEL_META_PACKAGE: &str = "linux-image-cloud-amd64";
/// What every boot of this image passes to the kernel, before the `feitian.*` parameters.
pub const KERNEL_CMDLINE_BASE: &str = "console=ttyS0 root=/dev/vda rw quiet panic=-1";
/// The root disk's virtual size (the ext4 file system fills it).
pub const ROOTFS_SIZE_MIB: u64 = 256;
/// The line the guest prints on its console once sshd is listening.
pub const SSH_READY_LINE: &str = "feitian-guest: ssh ready";
/// What the guest prints on its console when it shuts down (poweroff, reboot, the power button).
pub const SHUTDOWN_LINE: &str = "feitian-guest: shutting down";
/// The prefix of the line printed after user-data ran: `feitian-guest: user-data exit CODE`.
pub const USER_DATA_EXIT_PREFIX: &str = "feitian-guest: user-data exit ";
/// The metadata service address the guest fetches from (port 80).
pub const METADATA_ADDR: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

/// The layout version of the files and of [`Manifest`].
const FORMAT: u32 = 1;
const MANIFEST_FILE: &str = "image.json";
const BASE_PACKAGES: &[&str] =
    &["busybox-static", "dropbear-bin", "e2fsprogs", "openssh-client", "openssh-sftp-server"];
/// Packages whose dependencies are not fetched: busybox-static is self-contained, and the
/// OpenSSH files the image takes ([`SCP_FILES`], [`SFTP_FILES`]) need only libc (dropbear's
/// closure brings it), while the packages depend on what `ssh`, `ssh-agent` and the user set-up
/// need (Kerberos, FIDO, OpenSSL, SELinux, `adduser`, `passwd`: some 20 packages more to
/// download). Should a new version need another library, the library closure in `rootfs`
/// fails the build naming it, rather than making a guest whose program cannot start.
const DEPENDS_NOT_FOLLOWED: &[&str] = &["busybox-static", "openssh-client", "openssh-sftp-server"];
/// The dropbear files installed (from `dropbear-bin`).
const DROPBEAR_FILES: &[&str] =
    &["usr/sbin/dropbear", "usr/bin/dropbearkey", "usr/bin/dbclient", "usr/bin/dropbearconvert"];
/// From `openssh-client`: only `scp`, which the remote side of an SCP transfer runs as
/// `scp -t DIR` (upload) or `scp -f FILE` (download); it needs no `ssh` for that.
const SCP_FILES: &[&str] = &["usr/bin/scp"];
/// From `openssh-sftp-server`: Debian's dropbear runs `/usr/lib/sftp-server` for the `sftp`
/// subsystem (its `SFTPSERVER_PATH`); the package has it there as a link to
/// `openssh/sftp-server`, which the image holds as one file at the path dropbear uses.
const SFTP_FILES: &[&str] = &["usr/lib/sftp-server"];
/// From `e2fsprogs`: the guest grows its root file system to fill the system disk at boot,
/// and makes file systems on its data disks (ext4, whose inode tables are initialised lazily:
/// busybox's mke2fs writes every one of them, gigabytes on a large disk).
const E2FS_FILES: &[&str] = &["sbin/resize2fs", "sbin/mke2fs"];
/// Files the image cannot do without.
const REQUIRED_FILES: &[&str] = &["usr/sbin/dropbear", "sbin/resize2fs", "usr/bin/scp", "usr/lib/sftp-server"];
/// Kernel modules the guest needs, in a sensible load order (dependencies are added and put
/// first from each module's `.modinfo`). `true`: the build fails without it (unless built in).
const GUEST_MODULES: &[(&str, bool)] = &[
    ("virtio", true),
    ("virtio_ring", true),
    ("virtio_pci_modern_dev", false),
    ("virtio_pci_legacy_dev", false),
    ("virtio_pci", true),
    ("virtio_blk", true),
    ("failover", false),
    ("net_failover", false),
    ("virtio_net", true),
    ("button", true),
    ("evdev", true),
    // Entropy from the host when QEMU has `-device virtio-rng-pci`: without it, a TCG guest
    // waits seconds for its random pool, and dropbear with it.
    ("virtio_rng", false),
];

/// The initramfs `/init`.
pub const GUEST_INITRAMFS_INIT: &str = include_str!("../../guest/init");
const GUEST_INITTAB: &str = include_str!("../../guest/inittab");
const GUEST_RC_BOOT: &str = include_str!("../../guest/rc.boot");
const GUEST_RC_USERDATA: &str = include_str!("../../guest/rc.userdata");
const GUEST_RC_SHUTDOWN: &str = include_str!("../../guest/rc.shutdown");
const GUEST_ACPI_POWER: &str = include_str!("../../guest/acpi-power");
const GUEST_HALT: &str = include_str!("../../guest/halt");

const ETC_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const ETC_GROUP: &str = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n";
/// `*`: no password can match it, so root logs in only with a key (over SSH; the console has
/// no getty).
const ETC_SHADOW: &str = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n";
const ETC_SHELLS: &str = "/bin/sh\n/bin/ash\n";
const ETC_NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n";
const ETC_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
const ETC_PROFILE: &str = "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h:\\w\\$ '\n";
const ETC_OS_RELEASE: &str = "PRETTY_NAME=\"feitian guest (Debian 12 kernel, busybox)\"\nNAME=\"feitian guest\"\n\
ID=feitian-guest\nID_LIKE=debian\nVERSION_ID=\"12\"\n";

/// Where an image's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayout {
    pub dir: PathBuf,
}

impl ImageLayout {
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs.qcow2")
    }
    pub fn manifest(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }
    /// The manifest, parsed.
    pub fn read_manifest(&self) -> Result<Manifest, ImageError> {
        let path = self.manifest();
        let text = fs::read(&path).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
        serde_json::from_slice(&text).map_err(|e| ImageError::Manifest {
            path: path.clone(),
            detail: e.to_string(),
            dir: self.dir.clone(),
        })
    }
}

/// One Debian package the image was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    pub name: String,
    pub version: String,
}

/// `image.json`: what the image is made of and how to boot it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`BUILTIN_IMAGE_NAME`].
    pub name: String,
    /// The layout version (1).
    pub format: u32,
    /// The real kernel package (`linux-image-6.1.0-NN-cloud-amd64`) and its version.
    pub kernel_package: PackageRef,
    /// `uname -r` in the guest, e.g. `6.1.0-NN-cloud-amd64`.
    pub kernel_release: String,
    /// Every package the image was made from, with its version.
    pub packages: Vec<PackageRef>,
    /// The kernel modules in the initramfs and on the disk, in load order.
    pub modules: Vec<String>,
    /// `rootfs.qcow2`'s virtual size in bytes.
    pub rootfs_virtual_size: u64,
    /// When it was built (RFC 3339, UTC).
    pub built_at: String,
    /// The kernel command line to which the `feitian.*` parameters are appended.
    pub kernel_cmdline_base: String,
    /// SHA-256 of the guest scripts and the build recipe this image was made with; see
    /// [`is_current`].
    pub guest_digest: String,
}

/// The per-instance part of the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestParams {
    /// The instance's address and prefix length; `None`: the guest configures no network.
    pub ip: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    /// The NIC's MAC (`aa:bb:cc:dd:ee:ff`); the guest configures the interface that has it.
    pub mac: Option<String>,
    pub hostname: Option<String>,
}

/// `base` (a manifest's [`Manifest::kernel_cmdline_base`]) plus the `feitian.*` parameters.
/// Values that could break the command line (spaces, quotes) are left out or filtered.
pub fn kernel_cmdline(base: &str, params: &GuestParams) -> String {
    let mut line = base.trim().to_string();
    if let Some((ip, prefix)) = params.ip {
        line.push_str(&format!(" feitian.ip={ip}/{}", prefix.min(32)));
    }
    if let Some(gw) = params.gateway {
        line.push_str(&format!(" feitian.gw={gw}"));
    }
    if let Some(mac) = &params.mac {
        let mac: String = mac.chars().filter(|c| c.is_ascii_hexdigit() || *c == ':').collect();
        if !mac.is_empty() {
            line.push_str(&format!(" feitian.mac={}", mac.to_ascii_lowercase()));
        }
    }
    if let Some(host) = &params.hostname {
        let host: String =
            host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.').take(64).collect();
        if !host.is_empty() {
            line.push_str(&format!(" feitian.hostname={host}"));
        }
    }
    line
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{tool} not found: apt-get install {package}")]
    ToolMissing { tool: String, package: &'static str },
    #[error(
        "apt-cache knows no package {package}: run apt-get update, and check that a Debian 12 (bookworm) \
         source is configured ({detail})"
    )]
    PackageUnknown { package: String, detail: String },
    #[error("apt-get download failed for {packages}: is a Debian mirror reachable? ({stderr})")]
    Download { packages: String, stderr: String },
    #[error("{file} does not have the SHA-256 the package lists give: run apt-get update and build again")]
    Checksum { file: PathBuf },
    #[error("dpkg-deb could not unpack {deb}: delete it and build again ({stderr})")]
    Unpack { deb: PathBuf, stderr: String },
    #[error("{what} failed: {stderr}")]
    Tool { what: String, stderr: String },
    #[error("{0}: has the Debian package changed? (the image recipe is in crates/compute/src/image/)")]
    Recipe(String),
    #[error("image manifest {path} is unreadable ({detail}): delete {dir} and build again")]
    Manifest { path: PathBuf, detail: String, dir: PathBuf },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        ImageError::Io { context: context.into(), source }
    }
}

/// `images_dir/BUILTIN_IMAGE_NAME-DIGEST`: the directory is named after the guest scripts and
/// recipe it is built from ([`guest_digest`]), so a feitian with other scripts builds its own
/// image beside the old one, which stays as the backing file of the instances made from it.
pub fn layout(images_dir: &Path) -> ImageLayout {
    ImageLayout { dir: images_dir.join(format!("{BUILTIN_IMAGE_NAME}-{}", &guest_digest()[..12])) }
}

/// True when the image is complete: its manifest parses and every file is there.
pub fn is_built(images_dir: &Path) -> bool {
    let l = layout(images_dir);
    l.read_manifest().is_ok() && [l.kernel(), l.initrd(), l.rootfs()].iter().all(|p| p.is_file())
}

/// True when the image is built and was made from this code's guest scripts and recipe. An
/// image that is built but not current still works; it is never replaced behind running
/// instances' backs (their overlays use its root disk as backing file), so whoever wants the
/// new scripts removes the old image first.
pub fn is_current(images_dir: &Path) -> bool {
    is_built(images_dir) && layout(images_dir).read_manifest().is_ok_and(|m| m.guest_digest == guest_digest())
}

/// SHA-256 over what the image's content depends on in this code.
pub fn guest_digest() -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.to_le_bytes());
    for part in [
        KERNEL_CMDLINE_BASE,
        GUEST_INITRAMFS_INIT,
        GUEST_INITTAB,
        GUEST_RC_BOOT,
        GUEST_RC_USERDATA,
        GUEST_RC_SHUTDOWN,
        GUEST_ACPI_POWER,
        GUEST_HALT,
        ETC_PASSWD,
        ETC_GROUP,
        ETC_SHADOW,
        ETC_SHELLS,
        ETC_NSSWITCH,
        ETC_HOSTS,
        ETC_PROFILE,
        ETC_OS_RELEASE,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for (m, _) in GUEST_MODULES {
        h.update(m.as_bytes());
    }
    for f in BASE_PACKAGES
        .iter()
        .chain(DEPENDS_NOT_FOLLOWED)
        .chain(DROPBEAR_FILES)
        .chain(E2FS_FILES)
        .chain(SCP_FILES)
        .chain(SFTP_FILES)
    {
        h.update(f.as_bytes());
        h.update([0]);
    }
    h.update(ROOTFS_SIZE_MIB.to_le_bytes());
    hex::encode(h.finalize())
}

/// Builds the image under `images_dir` unless it is built already (then returns at once).
/// Everything is made in `images_dir/.build-NAME` and renamed into place when complete, so an
/// interrupted build never leaves an image [`is_built`] accepts; concurrent builders (also in
/// other processes) wait for one another through a lock file.
pub fn build(images_dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<ImageLayout, ImageError> {
    let out = layout(images_dir);
    if is_built(images_dir) {
        return Ok(out);
    }
    fs::create_dir_all(images_dir).map_err(|e| ImageError::io(format!("creating {}", images_dir.display()), e))?;
    let _lock = BuildLock::acquire(&images_dir.join(".build.lock"))?;
    if is_built(images_dir) {
        return Ok(out);
    }
    let started = std::time::Instant::now();
    tools::check_tools()?;
    let scratch = images_dir.join(format!(".build-{BUILTIN_IMAGE_NAME}"));
    remove_all(&scratch)?;
    let result = build_in(images_dir, &scratch, &out, progress);
    let cleanup = remove_all(&scratch);
    result?;
    cleanup?;
    progress(&format!("image built in {:.1} s: {}", started.elapsed().as_secs_f64(), out.dir.display()));
    Ok(out)
}

fn build_in(
    images_dir: &Path,
    scratch: &Path,
    out: &ImageLayout,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let work = scratch.join("work");
    let staged = ImageLayout { dir: scratch.join("image") };
    mkdirs(&work)?;
    mkdirs(&staged.dir)?;
    let cache = images_dir.join(".cache").join("debs");
    mkdirs(&cache)?;

    // Packages: the kernel behind the meta package, busybox, dropbear and what it depends on.
    progress(&format!("resolving packages ({KERNEL_META_PACKAGE}, {})", BASE_PACKAGES.join(", ")));
    // apt-cache is slow to start (seconds without a pkgcache.bin): ask for one level at a time.
    let first = debs::apt_show(
        &std::iter::once(KERNEL_META_PACKAGE)
            .chain(BASE_PACKAGES.iter().copied())
            .map(String::from)
            .collect::<Vec<_>>(),
    )?;
    let meta = &first[0];
    let kernel_name = meta.depends.iter().find(|d| d.starts_with("linux-image-")).cloned().ok_or_else(|| {
        ImageError::Recipe(format!("{KERNEL_META_PACKAGE} depends on no linux-image-* package ({:?})", meta.depends))
    })?;
    let mut pkgs: Vec<AptPackage> = first[1..].to_vec();
    let mut seen: BTreeSet<String> = pkgs.iter().map(|p| p.name.clone()).collect();
    // The kernel needs nothing in the guest and DEPENDS_NOT_FOLLOWED are taken alone; the rest
    // is what the shared-library closure of dropbear and e2fsprogs' programs comes from
    // (Depends and Pre-Depends, recursively).
    let mut level: Vec<String> = vec![kernel_name.clone()];
    level.extend(
        pkgs.iter().filter(|p| !DEPENDS_NOT_FOLLOWED.contains(&p.name.as_str())).flat_map(|p| p.depends.clone()),
    );
    loop {
        level.retain(|n| seen.insert(n.clone()));
        if level.is_empty() {
            break;
        }
        let got = debs::apt_show(&level)?;
        level = got.iter().filter(|p| p.name != kernel_name).flat_map(|p| p.depends.clone()).collect();
        pkgs.extend(got);
    }
    let kernel = pkgs.iter().find(|p| p.name == kernel_name).cloned().expect("kernel resolved");
    pkgs.sort_by(|a, b| (a.name != kernel.name).cmp(&(b.name != kernel.name)).then(a.name.cmp(&b.name)));

    let deb_files = debs::download(&pkgs, &cache, progress)?;
    let mut roots: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (p, deb) in pkgs.iter().zip(&deb_files) {
        progress(&format!("unpacking {} {}", p.name, p.version));
        let dir = work.join("pkgs").join(&p.name);
        debs::unpack(deb, &dir)?;
        roots.insert(p.name.clone(), dir);
    }
    let kroot = &roots[&kernel.name];
    let bbroot = &roots["busybox-static"];
    let dbroot = &roots["dropbear-bin"];
    let e2root = &roots["e2fsprogs"];
    let scproot = &roots["openssh-client"];
    let sftproot = &roots["openssh-sftp-server"];

    // The kernel.
    let release = kmod::kernel_release(kroot)?;
    let vmlinuz = kroot.join("boot").join(format!("vmlinuz-{release}"));
    copy_file(&vmlinuz, &staged.kernel())?;

    // Modules, with their dependencies first.
    let modules = kmod::resolve_modules(kroot, &release, GUEST_MODULES)?;
    progress(&format!(
        "kernel {release}; modules: {}",
        modules.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(" ")
    ));

    // Busybox and its applets.
    let busybox = bbroot.join("bin/busybox");
    let o = run(Command::new(&busybox).arg("--list-full"), "busybox --list-full", "busybox-static")?;
    if !o.status.success() {
        return Err(ImageError::Tool { what: "busybox --list-full".into(), stderr: stderr_of(&o) });
    }
    let applets: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != "bin/busybox" && rootfs::safe_rel(l))
        .collect();
    if !applets.iter().any(|a| a == "sbin/switch_root") || !applets.iter().any(|a| a == "bin/sh") {
        return Err(ImageError::Recipe("busybox-static lacks sh or switch_root".into()));
    }

    // The root file system.
    progress("assembling the root file system");
    let tree = work.join("rootfs");
    let programs = [
        (dbroot.as_path(), DROPBEAR_FILES),
        (e2root.as_path(), E2FS_FILES),
        (scproot.as_path(), SCP_FILES),
        (sftproot.as_path(), SFTP_FILES),
    ];
    rootfs::assemble_rootfs(&tree, &busybox, &applets, &programs, &roots, &pkgs, kroot, &release, &modules)?;
    rootfs::make_disk(&tree, &work, &staged.rootfs(), ROOTFS_SIZE_MIB, progress)?;

    progress("writing the initramfs");
    initramfs::write_initramfs(&staged.initrd(), &busybox, &applets, kroot, &release, &modules)?;

    let mut packages: Vec<PackageRef> =
        pkgs.iter().map(|p| PackageRef { name: p.name.clone(), version: p.version.clone() }).collect();
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = Manifest {
        name: BUILTIN_IMAGE_NAME.to_string(),
        format: FORMAT,
        kernel_package: PackageRef { name: kernel.name.clone(), version: kernel.version.clone() },
        kernel_release: release.clone(),
        packages,
        modules: modules.iter().map(|m| m.name.clone()).collect(),
        rootfs_virtual_size: ROOTFS_SIZE_MIB * 1024 * 1024,
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        kernel_cmdline_base: KERNEL_CMDLINE_BASE.to_string(),
        guest_digest: guest_digest(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    write_file(&staged.manifest(), &json, 0o644)?;
    // Into place. A directory left there without a complete image is a broken earlier attempt.
    publish(
        &staged.dir,
        &[staged.kernel(), staged.initrd(), staged.rootfs(), staged.manifest()],
        &out.dir,
        images_dir,
    )?;
    // Keep only the packages this build used in the cache.
    let used: BTreeSet<&Path> = deb_files.iter().map(|d| d.as_path()).collect();
    if let Ok(rd) = fs::read_dir(&cache) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "deb") && !used.contains(p.as_path()) {
                let _ = fs::remove_file(&p);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_has_the_feitian_parameters() {
        let p = GuestParams {
            ip: Some((Ipv4Addr::new(10, 0, 2, 15), 24)),
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            mac: Some("52:54:00:AB:CD:EF".into()),
            hostname: Some("web 1;x".into()),
        };
        assert_eq!(
            kernel_cmdline(KERNEL_CMDLINE_BASE, &p),
            "console=ttyS0 root=/dev/vda rw quiet panic=-1 feitian.ip=10.0.2.15/24 feitian.gw=10.0.2.2 \
             feitian.mac=52:54:00:ab:cd:ef feitian.hostname=web1x"
        );
        assert_eq!(kernel_cmdline("a b", &GuestParams::default()), "a b");
    }

    #[test]
    fn the_recipe_is_consistent() {
        // Every required file is one the build installs, and every package taken without its
        // dependencies is one it fetches.
        let installed: Vec<&str> =
            [DROPBEAR_FILES, E2FS_FILES, SCP_FILES, SFTP_FILES].iter().flat_map(|l| l.iter().copied()).collect();
        for f in REQUIRED_FILES {
            assert!(installed.contains(f), "{f} is required but not installed");
        }
        for p in DEPENDS_NOT_FOLLOWED {
            assert!(BASE_PACKAGES.contains(p), "{p} is not fetched");
        }
        // dropbear runs the sftp subsystem from this path (Debian 12's SFTPSERVER_PATH).
        assert!(SFTP_FILES.contains(&"usr/lib/sftp-server"));
    }

    #[test]
    fn digest_is_stable() {
        assert_eq!(guest_digest(), guest_digest());
        assert_eq!(guest_digest().len(), 64);
    }
}
