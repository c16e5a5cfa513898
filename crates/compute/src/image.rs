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
//!   (from `dropbear-bin`) with the shared libraries it needs and the dynamic loader, the same
//!   modules, and a tiny cloud-init written as busybox shell scripts (`crates/compute/guest/`).
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

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
const BASE_PACKAGES: &[&str] = &["busybox-static", "dropbear-bin", "e2fsprogs"];
/// The dropbear files installed (from `dropbear-bin`).
const DROPBEAR_FILES: &[&str] =
    &["usr/sbin/dropbear", "usr/bin/dropbearkey", "usr/bin/dbclient", "usr/bin/dropbearconvert"];
/// From `e2fsprogs`: the guest grows its root file system to fill the system disk at boot.
const E2FS_FILES: &[&str] = &["sbin/resize2fs"];
/// Files the image cannot do without.
const REQUIRED_FILES: &[&str] = &["usr/sbin/dropbear", "sbin/resize2fs"];
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
const LIB_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"];

/// The initramfs `/init`.
pub const GUEST_INITRAMFS_INIT: &str = include_str!("../guest/init");
const GUEST_INITTAB: &str = include_str!("../guest/inittab");
const GUEST_RC_BOOT: &str = include_str!("../guest/rc.boot");
const GUEST_RC_USERDATA: &str = include_str!("../guest/rc.userdata");
const GUEST_RC_SHUTDOWN: &str = include_str!("../guest/rc.shutdown");
const GUEST_ACPI_POWER: &str = include_str!("../guest/acpi-power");
const GUEST_HALT: &str = include_str!("../guest/halt");

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
    #[error("{0}: has the Debian package changed? (the image recipe is in crates/compute/src/image.rs)")]
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
    for f in BASE_PACKAGES.iter().chain(DROPBEAR_FILES).chain(E2FS_FILES) {
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
    check_tools()?;
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
    let first = apt_show(
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
    // busybox-static is self-contained and the kernel needs nothing in the guest; the rest is
    // the shared-library closure of dropbear and resize2fs (Depends and Pre-Depends,
    // recursively).
    let mut level: Vec<String> = vec![kernel_name.clone()];
    level.extend(pkgs.iter().filter(|p| p.name != "busybox-static").flat_map(|p| p.depends.clone()));
    loop {
        level.retain(|n| seen.insert(n.clone()));
        if level.is_empty() {
            break;
        }
        let got = apt_show(&level)?;
        level = got.iter().filter(|p| p.name != kernel_name).flat_map(|p| p.depends.clone()).collect();
        pkgs.extend(got);
    }
    let kernel = pkgs.iter().find(|p| p.name == kernel_name).cloned().expect("kernel resolved");
    pkgs.sort_by(|a, b| (a.name != kernel.name).cmp(&(b.name != kernel.name)).then(a.name.cmp(&b.name)));

    let debs = download(&pkgs, &cache, progress)?;
    let mut roots: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (p, deb) in pkgs.iter().zip(&debs) {
        progress(&format!("unpacking {} {}", p.name, p.version));
        let dir = work.join("pkgs").join(&p.name);
        mkdirs(&dir)?;
        let o = run(tool("dpkg-deb").arg("-x").arg(deb).arg(&dir), "dpkg-deb", "dpkg")?;
        if !o.status.success() {
            return Err(ImageError::Unpack { deb: deb.clone(), stderr: stderr_of(&o) });
        }
        roots.insert(p.name.clone(), dir);
    }
    let kroot = &roots[&kernel.name];
    let bbroot = &roots["busybox-static"];
    let dbroot = &roots["dropbear-bin"];
    let e2root = &roots["e2fsprogs"];

    // The kernel.
    let release = kernel_release(kroot)?;
    let vmlinuz = kroot.join("boot").join(format!("vmlinuz-{release}"));
    copy_file(&vmlinuz, &staged.kernel())?;

    // Modules, with their dependencies first.
    let modules = resolve_modules(kroot, &release)?;
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
        .filter(|l| !l.is_empty() && l != "bin/busybox" && safe_rel(l))
        .collect();
    if !applets.iter().any(|a| a == "sbin/switch_root") || !applets.iter().any(|a| a == "bin/sh") {
        return Err(ImageError::Recipe("busybox-static lacks sh or switch_root".into()));
    }

    // The root file system.
    progress("assembling the root file system");
    let rootfs = work.join("rootfs");
    let programs = [(dbroot.as_path(), DROPBEAR_FILES), (e2root.as_path(), E2FS_FILES)];
    assemble_rootfs(&rootfs, &busybox, &applets, &programs, &roots, &pkgs, kroot, &release, &modules)?;

    progress(&format!("making the ext4 root disk ({ROOTFS_SIZE_MIB} MiB)"));
    let raw = work.join("rootfs.raw");
    let o = run(
        tool("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-L", "feitian-root", "-m", "0"])
            .args(["-E", "root_owner=0:0"])
            .arg("-d")
            .arg(&rootfs)
            .arg(&raw)
            .arg(format!("{ROOTFS_SIZE_MIB}M")),
        "mke2fs",
        "e2fsprogs",
    )?;
    if !o.status.success() {
        return Err(ImageError::Tool { what: "mke2fs".into(), stderr: stderr_of(&o) });
    }
    if !is_root() {
        // Unpacked as another user, the files would belong to it in the image; make them root's.
        chown_in_image(&raw, &rootfs, &work)?;
    }
    progress("converting the root disk to qcow2");
    let o = run(
        tool("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(staged.rootfs()),
        "qemu-img",
        "qemu-utils",
    )?;
    if !o.status.success() {
        return Err(ImageError::Tool { what: "qemu-img convert".into(), stderr: stderr_of(&o) });
    }
    fs::remove_file(&raw).map_err(|e| ImageError::io(format!("removing {}", raw.display()), e))?;

    progress("writing the initramfs");
    write_initramfs(&staged.initrd(), &busybox, &applets, kroot, &release, &modules)?;

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
    for f in [staged.kernel(), staged.initrd(), staged.rootfs(), staged.manifest()] {
        fsync(&f)?;
    }
    fsync(&staged.dir)?;

    // Into place. A directory left there without a complete image is a broken earlier attempt.
    if out.dir.exists() {
        remove_all(&out.dir)?;
    }
    fs::rename(&staged.dir, &out.dir)
        .map_err(|e| ImageError::io(format!("renaming {} to {}", staged.dir.display(), out.dir.display()), e))?;
    fsync(images_dir)?;
    // Keep only the packages this build used in the cache.
    let used: BTreeSet<&Path> = debs.iter().map(|d| d.as_path()).collect();
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

// ---- host tools --------------------------------------------------------------------------

fn check_tools() -> Result<(), ImageError> {
    let mut tools = vec![
        ("apt-get", "apt"),
        ("apt-cache", "apt"),
        ("dpkg-deb", "dpkg"),
        ("mke2fs", "e2fsprogs"),
        ("qemu-img", "qemu-utils"),
    ];
    if !is_root() {
        tools.push(("debugfs", "e2fsprogs"));
    }
    for (tool, package) in tools {
        if find_in_path(tool).is_none() {
            return Err(ImageError::ToolMissing { tool: tool.to_string(), package });
        }
    }
    Ok(())
}

/// `tool` in `$PATH` or the sbin directories (which a non-root `$PATH` may lack).
/// Where `tool` is: on `$PATH`, or in the sbin directories a non-root `$PATH` may lack.
pub fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command for a host tool, found also in the sbin directories a non-root `$PATH` may lack.
fn tool(name: &str) -> Command {
    Command::new(find_in_path(name).unwrap_or_else(|| PathBuf::from(name)))
}

/// Runs a command to completion; a missing program becomes [`ImageError::ToolMissing`].
fn run(cmd: &mut Command, what: &str, package: &'static str) -> Result<Output, ImageError> {
    cmd.stdin(Stdio::null()).output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            let prog = Path::new(cmd.get_program()).file_name().unwrap_or_default().to_string_lossy().into_owned();
            ImageError::ToolMissing { tool: prog, package }
        } else {
            ImageError::io(format!("running {what}"), e)
        }
    })
}

fn stderr_of(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stderr);
    let s = s.trim();
    let s = if s.is_empty() { String::from_utf8_lossy(&o.stdout).trim().to_string() } else { s.to_string() };
    // The end says what went wrong; keep the message short.
    let chars: Vec<char> = s.chars().collect();
    if chars.len() > 1500 {
        format!("…{}", chars[chars.len() - 1500..].iter().collect::<String>())
    } else {
        s
    }
}

// ---- apt ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct AptPackage {
    name: String,
    version: String,
    arch: String,
    sha256: String,
    /// Depends and Pre-Depends, the first alternative of each, without versions.
    depends: Vec<String>,
}

impl AptPackage {
    /// The file name `apt-get download` gives it.
    fn deb_file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.arch)
    }
}

/// The candidate versions of `names`, in that order.
fn apt_show(names: &[String]) -> Result<Vec<AptPackage>, ImageError> {
    let o = run(tool("apt-cache").args(["show", "--no-all-versions"]).args(names), "apt-cache show", "apt")?;
    let text = String::from_utf8_lossy(&o.stdout);
    let mut found: HashMap<String, AptPackage> = HashMap::new();
    for stanza in text.split("\n\n") {
        let fields = parse_stanza(stanza);
        let (Some(name), Some(version), Some(arch)) =
            (fields.get("Package"), fields.get("Version"), fields.get("Architecture"))
        else {
            continue;
        };
        let mut depends = Vec::new();
        for key in ["Pre-Depends", "Depends"] {
            if let Some(v) = fields.get(key) {
                depends.extend(parse_depends(v));
            }
        }
        found.entry(name.clone()).or_insert_with(|| AptPackage {
            name: name.clone(),
            version: version.clone(),
            arch: arch.clone(),
            sha256: fields.get("SHA256").cloned().unwrap_or_default(),
            depends,
        });
    }
    names
        .iter()
        .map(|n| {
            found.get(n).cloned().ok_or_else(|| {
                let detail = if o.status.success() { "no candidate version".to_string() } else { stderr_of(&o) };
                ImageError::PackageUnknown { package: n.clone(), detail }
            })
        })
        .collect()
}

/// A Debian control stanza's fields (continuation lines joined).
fn parse_stanza(stanza: &str) -> HashMap<String, String> {
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut last: Option<String> = None;
    for line in stanza.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(k) = &last {
                let v = fields.get_mut(k).expect("field exists");
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.insert(k.trim().to_string(), v.trim().to_string());
            last = Some(k.trim().to_string());
        }
    }
    fields
}

/// `a (>= 1), b:any | c, d` → `[a, b, d]`.
fn parse_depends(v: &str) -> Vec<String> {
    v.split(',')
        .filter_map(|alt| {
            let first = alt.split('|').next()?.trim();
            let name = first.split(|c: char| c.is_whitespace() || c == '(').next()?.trim();
            let name = name.split(':').next()?.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The packages' `.deb` files in `cache`, downloading the ones missing (or damaged).
fn download(pkgs: &[AptPackage], cache: &Path, progress: &mut dyn FnMut(&str)) -> Result<Vec<PathBuf>, ImageError> {
    let files: Vec<PathBuf> = pkgs.iter().map(|p| cache.join(p.deb_file_name())).collect();
    let mut missing = Vec::new();
    for (p, f) in pkgs.iter().zip(&files) {
        if f.is_file() && sha256_matches(f, &p.sha256)? {
            continue;
        }
        let _ = fs::remove_file(f);
        missing.push(p);
    }
    if missing.is_empty() {
        progress(&format!("all {} packages are in the cache {}", pkgs.len(), cache.display()));
        return Ok(files);
    }
    let names = missing.iter().map(|p| format!("{} {}", p.name, p.version)).collect::<Vec<_>>().join(", ");
    progress(&format!("downloading {names}"));
    let o = run(
        tool("apt-get")
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .args(missing.iter().map(|p| format!("{}={}", p.name, p.version)))
            .current_dir(cache),
        "apt-get download",
        "apt",
    )?;
    if !o.status.success() {
        return Err(ImageError::Download { packages: names, stderr: stderr_of(&o) });
    }
    for p in missing {
        let f = cache.join(p.deb_file_name());
        if !f.is_file() {
            return Err(ImageError::Download {
                packages: p.name.clone(),
                stderr: format!("apt-get reported success but {} is not there", f.display()),
            });
        }
        if !sha256_matches(&f, &p.sha256)? {
            let _ = fs::remove_file(&f);
            return Err(ImageError::Checksum { file: f });
        }
    }
    Ok(files)
}

fn sha256_matches(file: &Path, want: &str) -> Result<bool, ImageError> {
    if want.is_empty() {
        return Ok(true);
    }
    let mut f = fs::File::open(file).map_err(|e| ImageError::io(format!("reading {}", file.display()), e))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).map_err(|e| ImageError::io(format!("reading {}", file.display()), e))?;
    Ok(hex::encode(h.finalize()).eq_ignore_ascii_case(want))
}

// ---- kernel and modules ------------------------------------------------------------------

fn kernel_release(kroot: &Path) -> Result<String, ImageError> {
    let dir = kroot.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| ImageError::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|r| kroot.join("boot").join(format!("vmlinuz-{r}")).is_file())
        .collect();
    releases.sort();
    match releases.len() {
        1 => Ok(releases.remove(0)),
        _ => Err(ImageError::Recipe(format!(
            "the kernel package should have one lib/modules/RELEASE with boot/vmlinuz-RELEASE, found {releases:?}"
        ))),
    }
}

#[derive(Debug, Clone)]
struct Module {
    name: String,
    /// Relative to `lib/modules/RELEASE`, e.g. `kernel/drivers/block/virtio_blk.ko`.
    rel: String,
    /// Direct dependencies (module names).
    deps: Vec<String>,
}

fn module_name(file_name: &str) -> String {
    file_name.trim_end_matches(".ko").replace('-', "_")
}

/// The guest's modules and their dependencies, dependencies first. Modules built into the
/// kernel (`modules.builtin`) are left out.
fn resolve_modules(kroot: &Path, release: &str) -> Result<Vec<Module>, ImageError> {
    let base = kroot.join("lib/modules").join(release);
    let builtin: BTreeSet<String> = fs::read_to_string(base.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(module_name)
        .collect();
    let mut index: HashMap<String, String> = HashMap::new();
    let mut stack = vec![base.join("kernel")];
    while let Some(dir) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(|e| ImageError::io(format!("reading {}", dir.display()), e))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ko") {
                let rel = p.strip_prefix(&base).expect("under base").to_string_lossy().into_owned();
                index.insert(module_name(&e.file_name().to_string_lossy()), rel);
            }
        }
    }
    let mut order: Vec<Module> = Vec::new();
    let mut visiting = BTreeSet::new();
    for (name, required) in GUEST_MODULES {
        if builtin.contains(*name) {
            continue;
        }
        if !index.contains_key(*name) {
            if *required {
                return Err(ImageError::Recipe(format!("kernel module {name} is neither built in nor in the package")));
            }
            continue;
        }
        add_module(name, &base, &index, &builtin, &mut order, &mut visiting)?;
    }
    Ok(order)
}

fn add_module(
    name: &str,
    base: &Path,
    index: &HashMap<String, String>,
    builtin: &BTreeSet<String>,
    order: &mut Vec<Module>,
    visiting: &mut BTreeSet<String>,
) -> Result<(), ImageError> {
    if builtin.contains(name) || order.iter().any(|m| m.name == name) {
        return Ok(());
    }
    if !visiting.insert(name.to_string()) {
        return Err(ImageError::Recipe(format!("kernel module dependency cycle through {name}")));
    }
    let rel = index
        .get(name)
        .ok_or_else(|| ImageError::Recipe(format!("kernel module {name} (a dependency) is not in the package")))?;
    let path = base.join(rel);
    let bytes = fs::read(&path).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
    let deps: Vec<String> = modinfo(&bytes)
        .into_iter()
        .filter_map(|kv| kv.strip_prefix("depends=").map(str::to_string))
        .flat_map(|v| v.split(',').map(|d| d.trim().replace('-', "_")).collect::<Vec<_>>())
        .filter(|d| !d.is_empty())
        .collect();
    for d in &deps {
        add_module(d, base, index, builtin, order, visiting)?;
    }
    visiting.remove(name);
    order.push(Module { name: name.to_string(), rel: rel.clone(), deps });
    Ok(())
}

/// `modules.dep` for the modules (depmod's format: dependencies listed last-loaded first).
fn modules_dep(modules: &[Module]) -> String {
    let by_name: HashMap<&str, &Module> = modules.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut out = String::new();
    for m in modules {
        // The transitive closure, in load order, then reversed.
        let mut closure: Vec<&Module> = Vec::new();
        let mut todo: Vec<&str> = m.deps.iter().map(String::as_str).collect();
        while let Some(d) = todo.pop() {
            if let Some(dm) = by_name.get(d) {
                if !closure.iter().any(|c| c.name == dm.name) {
                    closure.push(dm);
                    todo.extend(dm.deps.iter().map(String::as_str));
                }
            }
        }
        closure.sort_by_key(|c| modules.iter().position(|x| x.name == c.name));
        closure.reverse();
        out.push_str(&m.rel);
        out.push(':');
        for c in closure {
            out.push(' ');
            out.push_str(&c.rel);
        }
        out.push('\n');
    }
    out
}

// ---- ELF (64-bit little-endian, what x86-64 Debian ships) --------------------------------

struct Elf<'a> {
    b: &'a [u8],
}

struct Section {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

impl<'a> Elf<'a> {
    fn parse(b: &'a [u8]) -> Option<Elf<'a>> {
        (b.len() >= 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1).then_some(Elf { b })
    }
    fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(self.b.get(at..at + 2)?.try_into().ok()?))
    }
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.b.get(at..at + 4)?.try_into().ok()?))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(self.b.get(at..at + 8)?.try_into().ok()?))
    }
    fn sections(&self) -> Vec<Section> {
        let (Some(off), Some(size), Some(num)) = (self.u64(0x28), self.u16(0x3A), self.u16(0x3C)) else {
            return Vec::new();
        };
        (0..num as usize)
            .filter_map(|i| {
                let at = off as usize + i * size as usize;
                Some(Section {
                    name: self.u32(at)?,
                    kind: self.u32(at + 4)?,
                    offset: self.u64(at + 24)?,
                    size: self.u64(at + 32)?,
                    link: self.u32(at + 40)?,
                })
            })
            .collect()
    }
    fn data(&self, s: &Section) -> &'a [u8] {
        let start = (s.offset as usize).min(self.b.len());
        let end = (s.offset.saturating_add(s.size) as usize).min(self.b.len());
        &self.b[start..end]
    }
    fn section_named(&self, want: &str) -> Option<&'a [u8]> {
        let secs = self.sections();
        let shstrndx = self.u16(0x3E)? as usize;
        let names = self.data(secs.get(shstrndx)?);
        secs.iter().find(|s| cstr_at(names, s.name as usize) == Some(want)).map(|s| self.data(s))
    }
    /// DT_NEEDED entries.
    fn needed(&self) -> Vec<String> {
        let secs = self.sections();
        let mut out = Vec::new();
        for s in secs.iter().filter(|s| s.kind == 6) {
            let Some(strtab) = secs.get(s.link as usize) else { continue };
            let strs = self.data(strtab);
            for entry in self.data(s).chunks_exact(16) {
                let tag = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
                let val = u64::from_le_bytes(entry[8..].try_into().expect("8 bytes"));
                if tag == 0 {
                    break;
                }
                if tag == 1 {
                    if let Some(n) = cstr_at(strs, val as usize) {
                        out.push(n.to_string());
                    }
                }
            }
        }
        out
    }
    /// The PT_INTERP program interpreter.
    fn interp(&self) -> Option<String> {
        let (off, size, num) = (self.u64(0x20)?, self.u16(0x36)?, self.u16(0x38)?);
        (0..num as usize).find_map(|i| {
            let at = off as usize + i * size as usize;
            if self.u32(at)? != 3 {
                return None;
            }
            let (o, n) = (self.u64(at + 8)? as usize, self.u64(at + 32)? as usize);
            cstr_at(self.b.get(o..o + n)?, 0).map(str::to_string)
        })
    }
}

fn cstr_at(b: &[u8], at: usize) -> Option<&str> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// A kernel module's `.modinfo` strings (`key=value`).
fn modinfo(bytes: &[u8]) -> Vec<String> {
    Elf::parse(bytes)
        .and_then(|e| e.section_named(".modinfo"))
        .map(|d| {
            d.split(|&c| c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
        })
        .unwrap_or_default()
}

// ---- paths inside unpacked packages ------------------------------------------------------

/// True for a relative path without `..` (safe to join under a root).
fn safe_rel(p: &str) -> bool {
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

/// Finds a shared library (by soname) in the unpacked packages.
fn find_library(roots: &[&PathBuf], soname: &str) -> Option<PathBuf> {
    roots.iter().find_map(|r| LIB_DIRS.iter().find_map(|d| resolve_in_root(r, &format!("{d}/{soname}"))))
}

// ---- the root file system ----------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn assemble_rootfs(
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

    // dropbear and resize2fs, their shared libraries (resolved from the unpacked packages,
    // recursively) and the dynamic loader.
    let lib_roots: Vec<&PathBuf> = pkgs
        .iter()
        .filter(|p| p.name != "busybox-static" && !p.name.starts_with("linux-image-"))
        .map(|p| &roots[&p.name])
        .collect();
    let mut needed: Vec<String> = Vec::new();
    let mut interps: BTreeSet<String> = BTreeSet::new();
    for (f, src) in programs.iter().flat_map(|(dir, files)| files.iter().map(move |f| (f, dir.join(f)))) {
        if !src.is_file() {
            if REQUIRED_FILES.contains(f) {
                return Err(ImageError::Recipe(format!("no unpacked package has {f}")));
            }
            continue;
        }
        let bytes = fs::read(&src).map_err(|e| ImageError::io(format!("reading {}", src.display()), e))?;
        let elf = Elf::parse(&bytes).ok_or_else(|| ImageError::Recipe(format!("{f} is not an x86-64 ELF file")))?;
        needed.extend(elf.needed());
        interps.extend(elf.interp());
        copy_file(&src, &root.join(f))?;
    }
    let mut installed: BTreeSet<String> = BTreeSet::new();
    while let Some(soname) = needed.pop() {
        if !installed.insert(soname.clone()) {
            continue;
        }
        let src = find_library(&lib_roots, &soname).ok_or_else(|| {
            ImageError::Recipe(format!("no unpacked package provides {soname}, which dropbear or resize2fs needs"))
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

// ---- the initramfs -----------------------------------------------------------------------

fn write_initramfs(
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

/// A cpio archive in the "newc" format the kernel unpacks as initramfs.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields =
            [self.ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        let len = self.out.len().next_multiple_of(4);
        self.out.resize(len, 0);
    }
    fn dir(&mut self, name: &str) {
        if !self.dirs.contains(name) {
            self.parents(name);
        }
        if self.dirs.insert(name.to_string()) {
            self.entry(name, 0o040755, &[], (0, 0));
        }
    }
    fn parents(&mut self, name: &str) {
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent);
        }
    }
    fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.parents(name);
        self.entry(name, 0o100000 | perm, data, (0, 0));
    }
    fn symlink(&mut self, name: &str, target: &str) {
        self.parents(name);
        self.entry(name, 0o120777, target.as_bytes(), (0, 0));
    }
    fn node(&mut self, name: &str, mode: u32, rdev: (u32, u32)) {
        self.parents(name);
        self.entry(name, mode, &[], rdev);
    }
    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        // Whole 512-byte blocks, as cpio(1) writes them.
        let len = self.out.len().next_multiple_of(512);
        self.out.resize(len, 0);
        self.out
    }
}

// ---- small file helpers ------------------------------------------------------------------

fn mkdirs(p: &Path) -> Result<(), ImageError> {
    fs::create_dir_all(p).map_err(|e| ImageError::io(format!("creating {}", p.display()), e))
}

fn set_mode(p: &Path, mode: u32) -> Result<(), ImageError> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| ImageError::io(format!("setting the mode of {}", p.display()), e))
}

fn write_file(p: &Path, data: &[u8], mode: u32) -> Result<(), ImageError> {
    if let Some(parent) = p.parent() {
        mkdirs(parent)?;
    }
    let mut f = fs::File::create(p).map_err(|e| ImageError::io(format!("creating {}", p.display()), e))?;
    f.write_all(data).map_err(|e| ImageError::io(format!("writing {}", p.display()), e))?;
    drop(f);
    set_mode(p, mode)
}

/// Copies a file's content (following symlinks) and its permission bits.
fn copy_file(src: &Path, dst: &Path) -> Result<(), ImageError> {
    if let Some(parent) = dst.parent() {
        mkdirs(parent)?;
    }
    fs::copy(src, dst).map_err(|e| ImageError::io(format!("copying {} to {}", src.display(), dst.display()), e))?;
    let mode = fs::metadata(src).map(|m| m.mode() & 0o7777).unwrap_or(0o644);
    set_mode(dst, mode)
}

fn symlink(target: &str, link: &Path) -> Result<(), ImageError> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| ImageError::io(format!("linking {} to {target}", link.display()), e))
}

fn remove_all(p: &Path) -> Result<(), ImageError> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io(format!("removing {}", p.display()), e)),
    }
}

fn fsync(p: &Path) -> Result<(), ImageError> {
    fs::File::open(p).and_then(|f| f.sync_all()).map_err(|e| ImageError::io(format!("syncing {}", p.display()), e))
}

/// An exclusive `flock` on a file, released on drop (or when the process dies).
struct BuildLock {
    _file: fs::File,
}

impl BuildLock {
    fn acquire(path: &Path) -> Result<BuildLock, ImageError> {
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

    #[test]
    fn depends_take_first_alternatives_without_versions() {
        assert_eq!(
            parse_depends("libc6 (>= 2.34), libcrypt1 (>= 1:4.1.0), a:any | b, zlib1g (>= 1:1.1.4)"),
            vec!["libc6", "libcrypt1", "a", "zlib1g"]
        );
    }

    #[test]
    fn stanza_fields_and_deb_names() {
        let f = parse_stanza("Package: busybox-static\nVersion: 1:1.35.0-4\nArchitecture: amd64\nDescription: x\n y\n");
        assert_eq!(f["Version"], "1:1.35.0-4");
        assert_eq!(f["Description"], "x y");
        let p = AptPackage {
            name: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
            arch: "amd64".into(),
            sha256: String::new(),
            depends: vec![],
        };
        assert_eq!(p.deb_file_name(), "busybox-static_1%3a1.35.0-4_amd64.deb");
    }

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
    fn cpio_newc_entries_are_aligned() {
        let mut c = Cpio::default();
        c.file("a/b", b"hello", 0o644);
        c.symlink("bin/sh", "/bin/busybox");
        let out = c.finish();
        assert_eq!(out.len() % 512, 0);
        assert_eq!(&out[..6], b"070701");
        // "a" (a directory) comes before "a/b".
        assert_eq!(&out[110..112], b"a\0");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("a/b\0") && text.contains("hello") && text.contains("TRAILER!!!"));
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
    fn modules_dep_lists_dependencies_last_loaded_first() {
        let m = |n: &str, deps: &[&str]| Module {
            name: n.into(),
            rel: format!("kernel/{n}.ko"),
            deps: deps.iter().map(|d| d.to_string()).collect(),
        };
        let mods = vec![m("failover", &[]), m("net_failover", &["failover"]), m("virtio_net", &["net_failover"])];
        assert_eq!(
            modules_dep(&mods),
            "kernel/failover.ko:\nkernel/net_failover.ko: kernel/failover.ko\n\
             kernel/virtio_net.ko: kernel/net_failover.ko kernel/failover.ko\n"
        );
    }

    #[test]
    fn digest_is_stable() {
        assert_eq!(guest_digest(), guest_digest());
        assert_eq!(guest_digest().len(), 64);
    }
}
