//! `feitian doctor`: what real components this host offers, and what to install for each
//! missing one. It only looks; it changes nothing.

use std::path::Path;
use std::process::Command;

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    fix: Option<&'static str>,
}

fn run_ok(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| {
        let text = if out.stdout.is_empty() { &out.stderr } else { &out.stdout };
        String::from_utf8_lossy(text).lines().next().unwrap_or("").trim().to_owned()
    })
}

/// Opens /dev/kvm and asks for a VM: proof that the kernel offers KVM to this user. Whether a
/// guest then really runs under KVM needs a probe boot (some hosts pass this and still hang).
fn kvm_creates_vm() -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let f =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map_err(|e| format!("/dev/kvm: {e}"))?;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    // SAFETY: a plain ioctl on a descriptor we own, with an integer argument.
    let vm = unsafe { libc::ioctl(f.as_raw_fd(), KVM_CREATE_VM as _, 0) };
    if vm < 0 {
        return Err(format!("KVM_CREATE_VM failed: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: vm is a descriptor the ioctl just gave us.
    unsafe { libc::close(vm) };
    Ok(())
}

/// Whether guests' QEMUs can be confined (`crates/compute/src/qemu/confine.rs`): a uid of
/// their range for each (feitian must be root to hand them out), and QEMU's seccomp sandbox.
fn confinement(root: bool, qemu_found: bool) -> (bool, String) {
    use feitian_compute::qemu::confine;
    let (first, last) = (confine::UID_BASE, confine::UID_BASE + (confine::UID_COUNT - 1));
    if !root {
        return (false, "not root: QEMU would run as feitian's own user, with no uid per instance".into());
    }
    if !qemu_found {
        return (false, "no QEMU to confine".into());
    }
    // The range's uids must be free: no passwd entry may claim one.
    let taken = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse::<u32>().ok())
        .filter(|uid| confine::is_guest_uid(*uid))
        .count();
    let sandbox = confine::sandbox_supported("qemu-system-x86_64");
    let kvm = match confine::kvm_group() {
        Some(gid) => format!("/dev/kvm through its group {gid}"),
        None => "/dev/kvm is root's only, so confined guests run under TCG".into(),
    };
    let detail = format!(
        "each guest's QEMU runs as its own uid ({first}-{last}; {taken} taken by passwd entries), {}; {kvm}",
        if sandbox {
            "with a seccomp sandbox (-sandbox on, obsolete, elevateprivileges, spawn and resourcecontrol denied)"
        } else {
            "WITHOUT a seccomp sandbox: this QEMU refuses -sandbox (built without libseccomp)"
        }
    );
    (sandbox, detail)
}

fn free_bytes(path: &Path) -> Option<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let c = CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a valid out-pointer.
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

pub fn run(data_dir: &Path) -> anyhow::Result<()> {
    let mut checks = Vec::new();
    let root = feitian_compute::image::is_root();
    checks.push(Check {
        name: "root",
        ok: root,
        detail: if root {
            "running as root".into()
        } else {
            "not root: no bridges, taps, nftables or namespaces".into()
        },
        fix: Some("run feitian as root (or with CAP_NET_ADMIN) for real instance networking"),
    });
    let qemu = run_ok("qemu-system-x86_64", &["--version"]);
    let qemu_found = qemu.is_some();
    checks.push(Check {
        name: "qemu",
        ok: qemu.is_some(),
        detail: qemu.unwrap_or_else(|| "qemu-system-x86_64 not found: instances would use the sim driver".into()),
        fix: Some("apt-get install qemu-system-x86"),
    });
    let kvm = kvm_creates_vm();
    checks.push(Check {
        name: "kvm",
        ok: kvm.is_ok(),
        detail: match kvm {
            Ok(()) => "KVM creates VMs; a probe boot at start decides between KVM and TCG (some hosts hang under KVM)".into(),
            Err(e) => format!("{e}: guests will run under TCG (software emulation), slower but working"),
        },
        fix: Some("enable virtualization in firmware or nested virtualization in the hypervisor, and load kvm_intel or kvm_amd"),
    });
    let (ok, detail) = confinement(root, qemu_found);
    checks.push(Check {
        name: "confine",
        ok,
        detail,
        fix: Some("run feitian as root, and install Debian's qemu-system-x86 (built with libseccomp)"),
    });
    let nft = run_ok("nft", &["--version"]);
    checks.push(Check {
        name: "nftables",
        ok: nft.is_some(),
        detail: nft.unwrap_or_else(|| "nft not found: security groups cannot be enforced on packets".into()),
        fix: Some("apt-get install nftables"),
    });
    let netns = run_ok("ip", &["netns", "list"]).is_some() && Path::new("/proc/self/ns/net").exists();
    checks.push(Check {
        name: "netns",
        ok: netns,
        detail: if netns { "ip netns works".into() } else { "ip (iproute2) or network namespaces are missing".into() },
        fix: Some("apt-get install iproute2"),
    });
    let free = free_bytes(data_dir);
    let enough = free.is_some_and(|b| b >= 2 << 30);
    checks.push(Check {
        name: "disk",
        ok: enough,
        detail: match free {
            Some(b) => format!("{:.1} GiB free for {}", b as f64 / (1u64 << 30) as f64, data_dir.display()),
            None => format!("cannot tell the free space for {}", data_dir.display()),
        },
        fix: Some("free at least 2 GiB where --data-dir points, or point it elsewhere"),
    });

    let images = data_dir.join("images");
    let layout = feitian_compute::image::layout(&images);
    let built = feitian_compute::image::is_built(&images);
    checks.push(Check {
        name: "image",
        ok: built,
        detail: if built {
            format!("the built-in guest image is at {}", layout.dir.display())
        } else {
            format!(
                "the built-in guest image is not built yet: `feitian up` (qemu driver) builds it on first start into {} \
                 from Debian packages (apt-get download of the cloud kernel, busybox-static, dropbear-bin, e2fsprogs and their \
                 libraries; mke2fs and qemu-img make the disk; nothing is installed on the host)",
                layout.dir.display()
            )
        },
        fix: Some("needs a reachable Debian mirror (apt-get update) and e2fsprogs + qemu-utils; `[compute] images_dir` puts it elsewhere"),
    });

    println!("feitian doctor: what this host offers");
    for c in &checks {
        println!("  [{}] {:<9} {}", if c.ok { " ok " } else { "miss" }, c.name, c.detail);
        if !c.ok {
            if let Some(fix) = c.fix {
                println!("  {:>6} {:<9} to fix: {fix}", "", "");
            }
        }
    }
    let missing = checks.iter().filter(|c| !c.ok).count();
    if missing == 0 {
        println!("everything feitian can use is here");
    } else {
        println!(
            "{missing} missing: feitian still runs (the API, storage and the sim compute driver need none of them)"
        );
    }
    Ok(())
}
