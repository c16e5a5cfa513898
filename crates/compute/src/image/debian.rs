//! The Debian 12 public image (`debian_12_x64_20G_alibase_…` in DescribeImages): a real Debian
//! 12 (bookworm) system with systemd, OpenSSH, Python 3, sudo and curl, installed by Debian's
//! own tools from Debian's packages, as a user of Alibaba Cloud's Debian image expects it.
//!
//! Why `mmdebstrap` and not the package resolver the built-in image uses (`debs`): that one
//! unpacks files and never runs the packages' maintainer scripts, which is right for a busybox
//! guest of a dozen files but cannot make a Debian system (users, `dpkg` status, systemd's
//! units, alternatives, `ca-certificates`, Python's byte code are all made by those scripts).
//! Of the tools that do this, `mmdebstrap` (Debian's package) is the one that resolves with
//! apt (one parallel download, no second-stage), takes dpkg's `path-exclude` (so the image has
//! no manual pages, documentation or translations), runs hooks, and writes a tarball from a
//! working directory it mounts and cleans itself: a build interrupted here leaves no mounts in
//! the images directory. It needs root (`--mode=root`), as the `qemu` driver does anyway;
//! `debootstrap` would take about twice as long and has no path filters.
//!
//! What the build does ([`build`]), given the built-in image (whose kernel boots this image
//! too: the QEMU driver boots every instance with `-kernel`/`-initrd` from the built-in image,
//! and its initramfs mounts `/dev/vda` and runs `/sbin/init`, which here is systemd):
//! 1. fetches that kernel's package (the same version, from the `.deb` cache) and unpacks it,
//!    so that the image carries the modules of the kernel that boots it;
//! 2. runs `mmdebstrap` with [`PACKAGES`] from [`SOURCES`] (security updates included), its
//!    downloads kept in `IMAGES/.cache/debian-archives` for the next build, and the customize
//!    hook `guest/debian/customize`, which installs feitian's first-boot service
//!    (`guest/debian/feitian-guest`: network from the kernel command line, `resize2fs` of the
//!    root file system, hostname, SSH host keys, root's key and UserData from the metadata
//!    service, the console lines the host waits for), the kernel's modules (`depmod`), and
//!    removes what instances must not share (SSH host keys, the machine id);
//! 3. makes an ext4 disk of [`ROOTFS_SIZE_MIB`] from the tarball (`mke2fs -d`), as qcow2,
//!    and writes `image.json` ([`DebianManifest`]).
//!
//! The directory is `IMAGES/feitian-debian12-DIGEST`, the digest over the recipe, the guest
//! files and the booting kernel's release ([`digest`]): a new recipe or a rebuilt built-in
//! image with another kernel makes a new image beside the old one.

use super::fsutil::{mkdirs, publish, remove_all, write_file};
use super::lock::BuildLock;
use super::tools::{find_in_path, is_root, run, stderr_of, tool};
use super::{debs, ImageError, ImageLayout, Manifest, PackageRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The image directory's name, before its digest.
pub const DEBIAN_IMAGE_NAME: &str = "feitian-debian12";
/// The Debian release.
pub const SUITE: &str = "bookworm";
/// Where the packages come from, as the guest's own `/etc/apt/sources.list` then says: the
/// release, its updates and its security updates (all on Debian's own mirror network).
pub const SOURCES: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];
/// What the image has beyond `apt` and Debian's essential packages: an init, device manager
/// (module loading, the power button) and D-Bus for logind; SSH with SFTP; Python 3; what
/// users and provisioners (Packer's shell provisioner) expect to find; `e2fsprogs` and `kmod`
/// for the first boot's `resize2fs` and the modules.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "openssh-sftp-server",
    "python3",
    "sudo",
    "curl",
    "ca-certificates",
    "iproute2",
    "iputils-ping",
    "e2fsprogs",
    "kmod",
    "netbase",
    "procps",
    "less",
];
/// dpkg's filters: no manual pages, documentation (but each package's copyright) or
/// translations, which keep a cloud image lean (Debian's own cloud images do the same).
const DPKG_OPTIONS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/info/*",
];
/// The root disk's virtual size: the system some 250 MiB, room for what a first boot and a
/// provisioner add; instances grow it to their system disk's size.
pub const ROOTFS_SIZE_MIB: u64 = 1024;
/// The layout version of the files and of [`DebianManifest`].
const FORMAT: u32 = 1;

const GUEST_SCRIPT: &str = include_str!("../../guest/debian/feitian-guest");
const GUEST_SERVICE: &str = include_str!("../../guest/debian/feitian-guest.service");
const GUEST_READY_SERVICE: &str = include_str!("../../guest/debian/feitian-guest-ready.service");
const GUEST_FSTAB: &str = include_str!("../../guest/debian/fstab");
const CUSTOMIZE_HOOK: &str = include_str!("../../guest/debian/customize");

/// `image.json` of the Debian image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebianManifest {
    /// [`DEBIAN_IMAGE_NAME`].
    pub name: String,
    /// The layout version (1).
    pub format: u32,
    /// `/etc/debian_version` in the image, e.g. `12.15`.
    pub debian_version: String,
    /// The release of the kernel that boots it (the built-in image's), whose modules it has.
    pub kernel_release: String,
    /// Every installed package, with its version (`dpkg-query`).
    pub packages: Vec<PackageRef>,
    /// `rootfs.qcow2`'s virtual size in bytes.
    pub rootfs_virtual_size: u64,
    /// When it was built (RFC 3339, UTC).
    pub built_at: String,
    /// [`digest`] of the recipe it was made with.
    pub digest: String,
}

/// SHA-256 over what the image's content depends on: the recipe, the guest files, and the
/// release of the kernel it is booted with (its modules are in the image).
pub fn digest(kernel_release: &str) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.to_le_bytes());
    let parts = [SUITE, GUEST_SCRIPT, GUEST_SERVICE, GUEST_READY_SERVICE, GUEST_FSTAB, CUSTOMIZE_HOOK, kernel_release];
    for part in parts.iter().chain(SOURCES).chain(PACKAGES).chain(DPKG_OPTIONS) {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(ROOTFS_SIZE_MIB.to_le_bytes());
    hex::encode(h.finalize())
}

/// `images_dir/feitian-debian12-DIGEST` for an image booted by `kernel_release`. Only its
/// [`ImageLayout::rootfs`] and [`ImageLayout::manifest`] exist: the kernel and initramfs are
/// the built-in image's.
pub fn layout(images_dir: &Path, kernel_release: &str) -> ImageLayout {
    ImageLayout { dir: images_dir.join(format!("{DEBIAN_IMAGE_NAME}-{}", &digest(kernel_release)[..12])) }
}

/// The manifest of the image at `layout`, parsed.
pub fn read_manifest(layout: &ImageLayout) -> Result<DebianManifest, ImageError> {
    let path = layout.manifest();
    let text = fs::read(&path).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&text).map_err(|e| ImageError::Manifest {
        path: path.clone(),
        detail: e.to_string(),
        dir: layout.dir.clone(),
    })
}

/// True when the image for `kernel_release` is complete: its manifest parses and its disk is
/// there.
pub fn is_built(images_dir: &Path, kernel_release: &str) -> bool {
    let l = layout(images_dir, kernel_release);
    read_manifest(&l).is_ok() && l.rootfs().is_file()
}

/// The environment the customize hook reads (see `guest/debian/customize`).
struct HookEnv<'a> {
    files: &'a Path,
    kernel: &'a Path,
    kernel_release: &'a str,
    apt_cache: &'a Path,
}

/// `mmdebstrap`'s arguments: a root-mode build of [`PACKAGES`] into the tarball `tar`, with
/// the apt downloads kept in the directory named by `$FEITIAN_APT_CACHE` between builds (the
/// essential packages' archives are kept too: `essential/unlink` skipped) and `hook` as the
/// last customize step.
fn mmdebstrap_args(hook: &Path, tar: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["--mode=root", "--variant=apt", "--format=tar", "--skip=essential/unlink"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(format!("--include={}", PACKAGES.join(",")).into());
    for o in DPKG_OPTIONS {
        a.push(format!("--dpkgopt={o}").into());
    }
    // Hooks run on the host with the new root as $1; paths come from the environment so that
    // no path is ever parsed as shell.
    a.push(r#"--setup-hook=mkdir -p "$1/var/cache/apt/archives" && cp -a "$FEITIAN_APT_CACHE/." "$1/var/cache/apt/archives/""#.into());
    a.push(
        r#"--customize-hook=find "$FEITIAN_APT_CACHE" -maxdepth 1 -name '*.deb' -delete && cp -a "$1/var/cache/apt/archives/." "$FEITIAN_APT_CACHE/" && rm -rf "$FEITIAN_APT_CACHE/partial" "$FEITIAN_APT_CACHE/lock""#
            .into(),
    );
    let mut h = OsString::from("--customize-hook=");
    h.push(hook);
    a.push(h);
    a.push(SUITE.into());
    a.push(tar.into());
    for s in SOURCES {
        a.push(OsString::from(*s));
    }
    a
}

/// `dpkg-query -W -f '${Package}\t${Version}\n'` as [`PackageRef`]s, sorted by name.
fn parse_packages(text: &str) -> Vec<PackageRef> {
    let mut v: Vec<PackageRef> = text
        .lines()
        .filter_map(|l| {
            let (name, version) = l.split_once('\t')?;
            let (name, version) = (name.trim(), version.trim());
            (!name.is_empty() && !version.is_empty())
                .then(|| PackageRef { name: name.to_owned(), version: version.to_owned() })
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Fails unless this host can build the image.
fn check_tools() -> Result<(), ImageError> {
    if !is_root() {
        return Err(ImageError::Tool {
            what: "the Debian 12 image build".into(),
            stderr: "mmdebstrap installs packages as root (run feitian as root, as the qemu driver needs)".into(),
        });
    }
    for (t, package) in [
        ("mmdebstrap", "mmdebstrap"),
        ("tar", "tar"),
        ("apt-cache", "apt"),
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("mke2fs", "e2fsprogs"),
        ("qemu-img", "qemu-utils"),
    ] {
        if find_in_path(t).is_none() {
            return Err(ImageError::ToolMissing { tool: t.to_string(), package });
        }
    }
    Ok(())
}

/// Builds the Debian image under `images_dir` for the built-in image `base` (whose kernel
/// boots it), unless it is built already (then returns at once). Everything is made in
/// `images_dir/.build-feitian-debian12` and renamed into place when complete; builders wait
/// for one another on the same lock as the built-in image's.
pub fn build(images_dir: &Path, base: &ImageLayout, progress: &mut dyn FnMut(&str)) -> Result<ImageLayout, ImageError> {
    let base_manifest = base.read_manifest()?;
    let out = layout(images_dir, &base_manifest.kernel_release);
    if is_built(images_dir, &base_manifest.kernel_release) {
        return Ok(out);
    }
    let _lock = BuildLock::acquire(&images_dir.join(".build.lock"))?;
    if is_built(images_dir, &base_manifest.kernel_release) {
        return Ok(out);
    }
    let started = std::time::Instant::now();
    check_tools()?;
    let scratch = images_dir.join(format!(".build-{DEBIAN_IMAGE_NAME}"));
    remove_all(&scratch)?;
    let result = build_in(images_dir, &scratch, &out, &base_manifest, progress);
    let cleanup = remove_all(&scratch);
    result?;
    cleanup?;
    progress(&format!("Debian 12 image built in {:.1} s: {}", started.elapsed().as_secs_f64(), out.dir.display()));
    Ok(out)
}

fn build_in(
    images_dir: &Path,
    scratch: &Path,
    out: &ImageLayout,
    base: &Manifest,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let work = scratch.join("work");
    let files = work.join("files");
    let staged = ImageLayout { dir: scratch.join("image") };
    for d in [&work, &files, &staged.dir] {
        mkdirs(d)?;
    }
    let debs_cache = images_dir.join(".cache").join("debs");
    let apt_cache = images_dir.join(".cache").join("debian-archives");
    mkdirs(&debs_cache)?;
    mkdirs(&apt_cache)?;

    // 1. The booting kernel's package, for its modules.
    let k = &base.kernel_package;
    progress(&format!("Debian 12: the modules of {} {}", k.name, k.version));
    let found = debs::apt_show(std::slice::from_ref(&k.name))?;
    let Some(pkg) = found.into_iter().next().filter(|p| p.version == k.version) else {
        return Err(ImageError::Tool {
            what: format!("fetching {} {}", k.name, k.version),
            stderr: "the package lists no longer have the built-in image's kernel: run apt-get update, or \
                     remove the built-in image's directory so that both images are built with the current kernel"
                .into(),
        });
    };
    let deb = debs::download(std::slice::from_ref(&pkg), &debs_cache, progress)?;
    let kernel = work.join("kernel");
    debs::unpack(&deb[0], &kernel)?;

    // 2. The system, by mmdebstrap, with feitian's files put in by the customize hook.
    for (name, text, mode) in [
        ("feitian-guest", GUEST_SCRIPT, 0o755),
        ("feitian-guest.service", GUEST_SERVICE, 0o644),
        ("feitian-guest-ready.service", GUEST_READY_SERVICE, 0o644),
        ("fstab", GUEST_FSTAB, 0o644),
    ] {
        write_file(&files.join(name), text.as_bytes(), mode)?;
    }
    let hook = work.join("customize");
    write_file(&hook, CUSTOMIZE_HOOK.as_bytes(), 0o755)?;
    let tar = work.join("rootfs.tar");
    progress(&format!("Debian 12: installing {} with mmdebstrap (about a minute)", PACKAGES.join(", ")));
    let env = HookEnv { files: &files, kernel: &kernel, kernel_release: &base.kernel_release, apt_cache: &apt_cache };
    run_mmdebstrap(&mmdebstrap_args(&hook, &tar), &env, progress)?;

    // 3. The disk.
    progress("Debian 12: unpacking the system");
    let tree = work.join("rootfs");
    mkdirs(&tree)?;
    let o = run(
        tool("tar")
            .args(["-x", "-p", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-f"])
            .arg(&tar)
            .arg("-C")
            .arg(&tree),
        "tar",
        "tar",
    )?;
    if !o.status.success() {
        return Err(ImageError::Tool { what: "tar -x (the Debian system)".into(), stderr: stderr_of(&o) });
    }
    fs::remove_file(&tar).map_err(|e| ImageError::io(format!("removing {}", tar.display()), e))?;
    super::rootfs::make_disk(&tree, &work, &staged.rootfs(), ROOTFS_SIZE_MIB, progress)?;

    let read = |name: &str| {
        let p = files.join(name);
        fs::read_to_string(&p).map_err(|e| ImageError::io(format!("reading {}", p.display()), e))
    };
    let manifest = DebianManifest {
        name: DEBIAN_IMAGE_NAME.to_string(),
        format: FORMAT,
        debian_version: read("debian_version")?.trim().to_string(),
        kernel_release: base.kernel_release.clone(),
        packages: parse_packages(&read("packages.txt")?),
        rootfs_virtual_size: ROOTFS_SIZE_MIB << 20,
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        digest: digest(&base.kernel_release),
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ImageError::Tool { what: "writing image.json".into(), stderr: e.to_string() })?;
    write_file(&staged.manifest(), &json, 0o644)?;
    publish(&staged.dir, &[staged.rootfs(), staged.manifest()], &out.dir, images_dir)
}

/// Runs mmdebstrap (with umask 022: feitian's own 077 would make the system's new files
/// unreadable to its users), passing its `I:` lines on as progress; a failure says what its
/// last lines said.
fn run_mmdebstrap(args: &[OsString], env: &HookEnv, progress: &mut dyn FnMut(&str)) -> Result<(), ImageError> {
    let mut cmd = tool("sh");
    cmd.arg("-c")
        .arg(r#"umask 022; exec "$0" "$@""#)
        .arg(find_in_path("mmdebstrap").unwrap_or_else(|| PathBuf::from("mmdebstrap")))
        .args(args)
        .env("FEITIAN_FILES", env.files)
        .env("FEITIAN_KERNEL", env.kernel)
        .env("FEITIAN_KERNEL_RELEASE", env.kernel_release)
        .env("FEITIAN_APT_CACHE", env.apt_cache)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| ImageError::io("running mmdebstrap", e))?;
    let mut last: VecDeque<String> = VecDeque::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let line = line.map_err(|e| ImageError::io("reading mmdebstrap's output", e))?;
            if let Some(info) = line.strip_prefix("I: ") {
                progress(&format!("Debian 12: {info}"));
            }
            if last.len() == 30 {
                last.pop_front();
            }
            last.push_back(line);
        }
    }
    let status = child.wait().map_err(|e| ImageError::io("waiting for mmdebstrap", e))?;
    if !status.success() {
        return Err(ImageError::Tool {
            what: "mmdebstrap (its last lines say why: is deb.debian.org reachable, is there room in $TMPDIR?)".into(),
            stderr: last.into_iter().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_the_booting_kernel() {
        assert_eq!(digest("6.1.0-1-cloud-amd64"), digest("6.1.0-1-cloud-amd64"));
        assert_ne!(digest("6.1.0-1-cloud-amd64"), digest("6.1.0-2-cloud-amd64"));
        let images = Path::new("/images");
        assert_ne!(layout(images, "a"), layout(images, "b"));
        assert!(layout(images, "a").dir.file_name().unwrap().to_string_lossy().starts_with("feitian-debian12-"));
    }

    #[test]
    fn mmdebstrap_gets_the_packages_filters_sources_and_hook() {
        let args: Vec<String> = mmdebstrap_args(Path::new("/w/customize"), Path::new("/w/rootfs.tar"))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--mode=root".to_string()));
        assert!(args.contains(&"--format=tar".to_string()));
        let include = args.iter().find(|a| a.starts_with("--include=")).unwrap();
        for p in ["systemd", "openssh-server", "python3", "sudo", "curl", "e2fsprogs", "kmod"] {
            assert!(include.trim_start_matches("--include=").split(',').any(|x| x == p), "{p} missing");
        }
        assert!(args.contains(&"--dpkgopt=path-exclude=/usr/share/man/*".to_string()));
        // The user hook runs last of the customize hooks (after the cache is saved).
        let hooks: Vec<&String> = args.iter().filter(|a| a.starts_with("--customize-hook=")).collect();
        assert_eq!(hooks.last().unwrap().as_str(), "--customize-hook=/w/customize");
        // Positional: suite, target, then each source line as one argument.
        let n = args.len();
        assert_eq!(&args[n - SOURCES.len() - 2..n - SOURCES.len()], ["bookworm", "/w/rootfs.tar"]);
        assert_eq!(&args[n - SOURCES.len()..], SOURCES);
    }

    #[test]
    fn installed_packages_are_parsed_and_sorted() {
        let text = "systemd\t252.39-1~deb12u1\nbash\t5.2.15-2+b9\n\nbroken\n\t1.0\n";
        assert_eq!(
            parse_packages(text),
            vec![
                PackageRef { name: "bash".into(), version: "5.2.15-2+b9".into() },
                PackageRef { name: "systemd".into(), version: "252.39-1~deb12u1".into() },
            ]
        );
    }

    #[test]
    fn the_manifest_round_trips() {
        let m = DebianManifest {
            name: DEBIAN_IMAGE_NAME.into(),
            format: FORMAT,
            debian_version: "12.15".into(),
            kernel_release: "6.1.0-57-cloud-amd64".into(),
            packages: vec![PackageRef { name: "bash".into(), version: "5.2".into() }],
            rootfs_virtual_size: ROOTFS_SIZE_MIB << 20,
            built_at: "2026-12-07T00:00:00Z".into(),
            digest: digest("6.1.0-57-cloud-amd64"),
        };
        let t = tempfile::tempdir().unwrap();
        let l = ImageLayout { dir: t.path().to_path_buf() };
        fs::write(l.manifest(), serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(read_manifest(&l).unwrap(), m);
        fs::write(l.manifest(), b"{").unwrap();
        assert!(matches!(read_manifest(&l), Err(ImageError::Manifest { .. })));
    }
}
