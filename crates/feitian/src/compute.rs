//! Which compute driver `feitian up` runs, and everything the `qemu` driver needs first: the
//! built-in image (built from Debian packages on first use), the KVM probe, and host
//! networking.

use crate::config::ComputeConfig;
use feitian_agent::network::NetworkAgent;
use feitian_agent_api::{ControlPlane, Nudges};
use feitian_compute::image;
use feitian_compute::qemu::{self, confine, Accel, Confinement, QemuConfig, QemuDriver};
use feitian_compute::Driver;
use feitian_hostnet::host::HostNet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct Compute {
    pub driver: Arc<dyn Driver>,
    pub net: Option<Arc<NetworkAgent>>,
    /// One line for `feitian up`'s banner.
    pub summary: String,
    /// The guest image (none with the `sim` driver): its root disk becomes the parent volume
    /// of every system disk.
    pub image: Option<image::ImageLayout>,
    /// The Debian 12 image (none with the `sim` driver, or when it could not be built): its
    /// root disk is the parent volume of the system disks of its instances.
    pub debian_image: Option<image::ImageLayout>,
}

/// Why this host cannot run real instances, if it cannot.
pub fn qemu_missing() -> Option<String> {
    if !image::is_root() {
        return Some("not running as root (bridges, taps, nftables and namespaces need it)".into());
    }
    for (tool, package) in
        [("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"), ("nft", "nftables"), ("ip", "iproute2")]
    {
        if image::find_in_path(tool).is_none() {
            return Some(format!("{tool} not found (apt-get install {package})"));
        }
    }
    None
}

pub fn images_dir(cfg: &ComputeConfig, data_dir: &Path) -> PathBuf {
    cfg.images_dir.clone().unwrap_or_else(|| data_dir.join("images"))
}

fn sim(cfg: &ComputeConfig, why: &str) -> Compute {
    Compute {
        driver: Arc::new(feitian_compute::sim::SimDriver::from_env().with_host(cfg.sim_vcpus, cfg.sim_memory_mib)),
        net: None,
        image: None,
        debian_image: None,
        summary: format!("compute driver: sim (instances are modelled, not booted: {why}); `feitian doctor` says what this host lacks"),
    }
}

fn host_memory_mib() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64 / (1 << 20)
    } else {
        1024
    }
}

/// KVM or TCG, as configured; `auto` boots the image once under KVM (the answer is kept per
/// host kernel in the images directory, so the probe runs once).
async fn accel(cfg: &ComputeConfig, images: &Path, layout: &image::ImageLayout, cmdline: &str) -> Accel {
    match cfg.accel.as_str() {
        "kvm" => return Accel::Kvm,
        "tcg" => return Accel::Tcg,
        _ => {}
    }
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    let cache = images.join("kvm-probe.json");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v["host_kernel"] == host_kernel.as_str() {
                return if v["kvm_works"] == true { Accel::Kvm } else { Accel::Tcg };
            }
        }
    }
    let works = qemu::kvm_works("qemu-system-x86_64", layout, cmdline, Duration::from_secs(30)).await;
    let _ = std::fs::write(&cache, serde_json::json!({"host_kernel": host_kernel, "kvm_works": works}).to_string());
    if works {
        Accel::Kvm
    } else {
        tracing::warn!("KVM did not boot the probe guest in 30 s: guests run under TCG (software emulation)");
        Accel::Tcg
    }
}

/// How guests' QEMUs are confined here (feitian is root: [`qemu_missing`] saw to it), and
/// the accelerator they can use confined: KVM needs `/dev/kvm` open to a group the guests'
/// uids can join.
fn confinement(qemu: &str, accel: Accel, data_dir: &Path) -> (Confinement, Accel) {
    let sandbox = confine::sandbox_supported(qemu);
    if !sandbox {
        tracing::warn!("{qemu} has no seccomp sandbox (-sandbox): guests' QEMUs run without a system-call filter");
    }
    let kvm_gid = confine::kvm_group();
    let accel = if accel == Accel::Kvm && kvm_gid.is_none() {
        tracing::warn!(
            "/dev/kvm is open to root only, and guests' QEMUs do not run as root: guests run under TCG \
             (give /dev/kvm a group that may read and write it, as Debian's kvm group, 0660)"
        );
        Accel::Tcg
    } else {
        accel
    };
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata(data_dir).is_ok_and(|m| m.permissions().mode() & 0o007 != 0) {
        tracing::warn!(
            "{} is open to other users, guests' QEMUs among them: make it 0700 (feitian creates it so)",
            data_dir.display()
        );
    }
    (Confinement { sandbox, kvm_gid }, accel)
}

/// The Debian 12 image, built on first use beside the built-in one (whose kernel boots it). It
/// is not needed to serve: a failure is said, with what to do, and its instances' system disks
/// wait (their parent volume does not exist) until a later start builds it.
async fn debian_image(
    images: &Path,
    base: &image::ImageLayout,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Option<image::ImageLayout>> {
    let built = {
        let (images, base) = (images.to_path_buf(), base.clone());
        tokio::task::spawn_blocking(move || {
            image::debian::build(&images, &base, &mut |line: &str| println!("image: {line}"))
        })
        .await?
    };
    match built {
        Ok(l) => Ok(Some(l)),
        Err(e) => {
            writeln!(
                out,
                "image: the Debian 12 image could not be built ({e}); instances of it will not start until a \
                 later start builds it (it needs root, mmdebstrap and a reachable deb.debian.org)"
            )?;
            Ok(None)
        }
    }
}

/// Picks and prepares the driver. `out` receives progress lines (the image build).
pub async fn start(
    cfg: &ComputeConfig,
    data_dir: &Path,
    eip_pool: ipnet::Ipv4Net,
    control: Arc<dyn ControlPlane>,
    nudges: Nudges,
    disks: Arc<dyn feitian_compute::DiskServers>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Compute> {
    let wanted = cfg.driver()?;
    if wanted == "sim" {
        return Ok(sim(cfg, "configured"));
    }
    if let Some(why) = qemu_missing() {
        if wanted == "qemu" {
            anyhow::bail!("compute.driver is qemu but {why}");
        }
        return Ok(sim(cfg, &why));
    }
    let images = images_dir(cfg, data_dir);
    std::fs::create_dir_all(&images)?;
    if !image::is_built(&images) {
        writeln!(
            out,
            "image: building the built-in guest image from Debian packages into {} (once)",
            images.display()
        )?;
        out.flush()?;
    }
    let built = {
        let images = images.clone();
        tokio::task::spawn_blocking(move || image::build(&images, &mut |line: &str| println!("image: {line}"))).await?
    };
    let layout = match built {
        Ok(l) => l,
        Err(e) if wanted == "auto" => return Ok(sim(cfg, &format!("the guest image could not be built: {e}"))),
        Err(e) => anyhow::bail!("cannot build the guest image: {e}"),
    };
    let manifest = layout.read_manifest()?;
    let debian_image = debian_image(&images, &layout, out).await?;
    let accel = accel(cfg, &images, &layout, &manifest.kernel_cmdline_base).await;
    let (confinement, accel) = confinement("qemu-system-x86_64", accel, data_dir);
    let confined = format!(
        "QEMU confined (a uid per instance, {})",
        if confinement.sandbox { "seccomp sandbox" } else { "no seccomp sandbox: this QEMU lacks it" }
    );
    let host_cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let driver = QemuDriver::new(QemuConfig {
        qemu: "qemu-system-x86_64".into(),
        run_dir: data_dir.join("instances"),
        image: layout.clone(),
        kernel_cmdline_base: manifest.kernel_cmdline_base.clone(),
        accel,
        stop_grace: Duration::from_secs(cfg.stop_grace_secs),
        boot_timeout: Duration::from_secs(cfg.boot_timeout_secs),
        host_cpus,
        host_memory_mib: host_memory_mib(),
        confine: Some(confinement),
        disks: Some(disks),
    })?;
    let host = Arc::new(HostNet::new(data_dir, eip_pool));
    let prefix = host.prefix().to_owned();
    let net = NetworkAgent::new(control, host, nudges);
    net.start().await.map_err(|e| anyhow::anyhow!("cannot set up host networking: {e}"))?;
    Ok(Compute {
        driver: Arc::new(driver),
        net: Some(net),
        image: Some(layout.clone()),
        debian_image,
        summary: format!(
            "compute driver: qemu ({}, image {}), {confined}, networks in namespaces {}-*, EIP pool {eip_pool} routed from this host",
            accel.name(),
            layout.dir.display(),
            prefix
        ),
    })
}
