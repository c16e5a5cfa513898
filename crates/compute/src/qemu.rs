//! The `qemu` driver: one `qemu-system-x86_64` per instance, controlled over QMP.
//!
//! Each instance has a directory `RUN_DIR/<instance-id>/` holding its serial console log, its
//! QMP socket, QEMU's pid file and its disks' NBD sockets. After a feitian restart,
//! [`QemuDriver::observe`] finds a live QEMU from its pid file and the driver adopts it as it
//! is (the guest keeps running, its connections survive).
//!
//! **Disks** ([`disks`], `docs/disks.md`): with the host's disk servers
//! ([`QemuConfig::disks`]), every disk of the instance's plan, the system disk first, is a RAF
//! volume served on an NBD socket in the instance's directory and opened by QEMU's NBD client
//! with a reconnect delay; data disks are hot-plugged and unplugged over QMP, and grown online.
//! The servers start before QEMU and stop only after it ended (a QEMU whose disk server is
//! gone waits the reconnect delay, even to quit); an adopted QEMU's disks are served again by
//! `start`, and its NBD client reconnects on its own. Which volumes are served for which
//! instance is kept in memory ([`served`]), as the servers are. Without disk servers (tests
//! that build a driver alone), the system disk is a qcow2 overlay over the built-in image in
//! the instance's directory, and disks cannot be hot-plugged.
//!
//! QEMU runs in its own session, inside the VPC namespace of its network interface, and
//! outlives a feitian that is killed. A guest that powers itself off ends its QEMU; the
//! reconciler sees the instance's process gone and records it Stopped.
//!
//! **Confinement** ([`confine`], when feitian is root, which the driver needs anyway): each
//! instance's QEMU runs as a uid of its own, never root, under QEMU's seccomp sandbox, from
//! its instance directory (0700, that uid's), naming every file relative to it. What feitian
//! still does as root for it: enter the VPC's network namespace, open the tap and pass its
//! descriptor, own and hand out the directory, make the overlay and stage the image's
//! files; host networking (namespaces, bridges, taps, nftables) is root's work throughout.
//! A QEMU taken over by its guest reaches that guest's memory and disk, its directory, the
//! tap's packets, ordinary sockets in the VPC's namespace, and what any unprivileged user
//! can read; not the data directory, another guest's QEMU, the image (read-only), or root.
//! Not root (tests only: `feitian up` picks the sim driver then), QEMU runs as feitian's
//! user, daemonized by itself, unconfined.
//!
//! Sizes: vCPUs are the instance type's, capped at the host's cores; memory is the type's,
//! capped at a sixteenth of the host's memory (at least 256 MiB), so that a type meant for a
//! large server still boots on a laptop (see [`scaled`]). Guest memory is only touched as the
//! guest uses it.

pub mod confine;
pub mod disks;
pub mod qmp;
pub mod served;

use crate::image::{kernel_cmdline, GuestParams, ImageLayout, SSH_READY_LINE};
use crate::{DiskPlan, DiskServers, Driver, DriverError, DriverFuture, HostCapacity, InstanceSpec, Observed};
pub use confine::Confinement;
use disks::GuestDisk;
use served::Served;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the guest prints on its console once SSH listens.
pub const READY_MARKER: &str = SSH_READY_LINE;
const CONSOLE_TAIL: u64 = 64 * 1024;

/// How guests are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization, when a probe boot proved it works.
    Kvm,
    /// Software emulation: slower, works everywhere.
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn args(self) -> Vec<String> {
        match self {
            Accel::Kvm => vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
            // A bounded translation cache: QEMU's default (1 GiB per guest) adds up with many
            // guests on one host.
            Accel::Tcg => vec!["-accel".into(), "tcg,tb-size=64".into(), "-cpu".into(), "max".into()],
        }
    }
}

#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub qemu: String,
    pub run_dir: PathBuf,
    pub image: ImageLayout,
    pub kernel_cmdline_base: String,
    pub accel: Accel,
    /// How long an ACPI shutdown may take before the instance is powered off.
    pub stop_grace: Duration,
    /// How long a boot may take to reach [`READY_MARKER`] before start reports the instance
    /// running anyway (its guest may be slow, or not print the marker).
    pub boot_timeout: Duration,
    pub host_cpus: u32,
    pub host_memory_mib: u64,
    /// How QEMU is confined ([`confine`]); `None` runs it as feitian's own user, daemonized
    /// by QEMU itself (feitian not root).
    pub confine: Option<Confinement>,
    /// The host's disk servers: the instances' disks are RAF volumes served over NBD
    /// ([`disks`]). `None`: the system disk is a qcow2 overlay on the image (tests that run
    /// a driver without Pangu).
    pub disks: Option<Arc<dyn DiskServers>>,
}

/// What a confined launch leaves running: QEMU as feitian's child (it reaps it when dropped).
type Launched = Option<tokio::process::Child>;

/// vCPUs and memory for a type of `cpu` vCPUs and `memory_mib`, on this host.
pub fn scaled(cpu: u32, memory_mib: u32, host_cpus: u32, host_memory_mib: u64) -> (u32, u32) {
    let cpus = cpu.clamp(1, host_cpus.max(1));
    let cap = (host_memory_mib / 16).max(256);
    let mem = (memory_mib as u64).clamp(128, cap) as u32;
    (cpus, mem)
}

pub struct QemuDriver {
    cfg: QemuConfig,
    /// The volumes served for each instance's QEMU.
    served: Served,
}

/// How long a hot-plug, a hot-unplug or an online grow may take over QMP (the unplug waits
/// for the guest to release the disk: [`disks::UNPLUG_LIMIT`]).
const DISK_OP_LIMIT: Duration = Duration::from_secs(60);

fn failed(what: impl std::fmt::Display) -> DriverError {
    DriverError::Failed(what.to_string())
}

/// Waits for `cond` with small sleeps, up to `limit`.
async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

impl QemuDriver {
    pub fn new(cfg: QemuConfig) -> std::io::Result<QemuDriver> {
        std::fs::create_dir_all(&cfg.run_dir)?;
        if cfg.confine.is_some() {
            // Guests' uids may not even list the instances, let alone enter another's.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cfg.run_dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(QemuDriver { cfg, served: Served::default() })
    }

    pub fn accel(&self) -> Accel {
        self.cfg.accel
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.cfg.run_dir.join(id)
    }

    fn console_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("console.log")
    }

    fn qmp_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("qmp.sock")
    }

    fn pid_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("qemu.pid")
    }

    /// Who owns the instance's files: its guest uid when confined (once handed out), else root.
    fn owner(&self, id: &str) -> u32 {
        if self.cfg.confine.is_none() {
            return 0;
        }
        confine::handed_to(&self.dir(id)).ok().flatten().unwrap_or(0)
    }

    /// QEMU's own output (a confined QEMU is not daemonized by QEMU, so its errors land here).
    fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("qemu.log")
    }

    /// The pid of the instance's live QEMU, if there is one. The pid must still be a QEMU
    /// named after this instance (a pid file can outlive its process, and pids are reused).
    pub fn pid(&self, id: &str) -> Option<i32> {
        // The pid file is root's (feitian writes it for a confined QEMU; an unconfined one is
        // root): one the guest's uid planted is not read.
        let mut text = String::new();
        confine::open_owned(&self.pid_path(id), 0).ok()?.take(32).read_to_string(&mut text).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The state follows the parenthesised command name; a zombie has exited.
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().chars().next());
        if state == Some(Some('Z')) {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let wanted = format!("process=feitian-{id}");
        cmdline.split(|b| *b == 0).any(|arg| String::from_utf8_lossy(arg).contains(&wanted)).then_some(pid)
    }

    /// QEMU's command line. Confined, every file is named relative to the instance's
    /// directory (QEMU's working directory: its uid cannot reach it by its full path), the tap
    /// is the descriptor `tap_fd`, and QEMU neither daemonizes nor changes its user (feitian
    /// did both before `exec`); it loads its seccomp filter. `disks` are the served disks,
    /// the system disk first (empty: the qcow2 system disk).
    fn args(&self, spec: &InstanceSpec, tap_fd: Option<i32>, disks: &[GuestDisk]) -> Vec<String> {
        let confined = self.cfg.confine.is_some();
        let id = &spec.plan.id;
        let d = self.dir(id);
        let path = |name: &str, full: PathBuf| if confined { name.to_owned() } else { full.display().to_string() };
        let (cpus, mem) = scaled(spec.plan.cpu, spec.plan.memory_mib, self.cfg.host_cpus, self.cfg.host_memory_mib);
        let ip = spec.tap.is_some().then_some(spec.plan.nic.ip);
        let params = GuestParams {
            ip: ip.map(|ip| (ip, spec.plan.nic.prefix_len)),
            gateway: ip.map(|_| spec.plan.nic.gateway),
            mac: ip.map(|_| spec.plan.nic.mac.clone()),
            hostname: Some(spec.plan.host_name.clone()).filter(|h| !h.is_empty()),
        };
        let cmdline = kernel_cmdline(&self.cfg.kernel_cmdline_base, &params);
        let mut a: Vec<String> = vec![
            "-name".into(),
            format!("{},process=feitian-{}", spec.plan.id, spec.plan.id),
            "-machine".into(),
            "pc".into(),
        ];
        a.extend(self.cfg.accel.args());
        a.extend([
            "-smp".into(),
            cpus.to_string(),
            "-m".into(),
            mem.to_string(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-kernel".into(),
            path("vmlinuz", self.cfg.image.kernel()),
            "-initrd".into(),
            path("initrd.img", self.cfg.image.initrd()),
            "-append".into(),
            cmdline,
        ]);
        // The disks come first among the PCI devices, the system disk before the data disks:
        // the guest names them in that order (its root is /dev/vda).
        if disks.is_empty() {
            a.extend([
                "-drive".into(),
                format!("file={},if=virtio,format=qcow2,discard=unmap", path("system.qcow2", d.join("system.qcow2"))),
            ]);
        }
        for (n, disk) in disks.iter().enumerate() {
            a.extend(disk.args((n == 0).then_some(1)));
        }
        a.extend([
            "-chardev".into(),
            format!("file,id=console,path={},append=on", path("console.log", self.console_path(id))),
            "-serial".into(),
            "chardev:console".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", path("qmp.sock", self.qmp_path(id))),
            // Entropy for the guest: without it a TCG guest waits seconds before dropbear starts.
            "-device".into(),
            "virtio-rng-pci".into(),
        ]);
        match &self.cfg.confine {
            None => a.extend(["-pidfile".into(), self.pid_path(id).display().to_string(), "-daemonize".into()]),
            Some(c) if c.sandbox => a.extend(["-sandbox".into(), confine::SANDBOX.into()]),
            Some(_) => {}
        }
        if let Some(tap) = &spec.tap {
            let netdev = match tap_fd {
                Some(fd) => format!("tap,id=net0,fd={fd}"),
                None => format!("tap,id=net0,ifname={tap},script=no,downscript=no"),
            };
            a.extend([
                "-netdev".into(),
                netdev,
                "-device".into(),
                // romfile=: no iPXE option ROM (seconds under TCG, unused with -kernel).
                format!("virtio-net-pci,netdev=net0,mac={},romfile=", spec.plan.nic.mac),
            ]);
        }
        a
    }

    /// Creates the system disk on first start: a qcow2 overlay whose backing file is the image,
    /// as large as the instance's system disk (sparse: only written clusters take space; the
    /// guest grows its root file system to fill it at boot).
    ///
    /// Confined, the backing file is `base.qcow2` beside the overlay (named relatively, so the
    /// guest's uid reaches it from its directory): a read-only view of the image as it was
    /// when the disk was made. A disk made before confinement, whose backing file is the
    /// image's full path, gets one the same way.
    fn ensure_disk(&self, id: &str, size_gib: u64) -> Result<(), DriverError> {
        let disk = self.dir(id).join("system.qcow2");
        let confined = self.cfg.confine.is_some();
        let base_view = self.dir(id).join("base.qcow2");
        if disk.exists() {
            if confined && !base_view.exists() {
                let backing = backing_file(&disk)?;
                confine::stage_readonly(&backing, &base_view)
                    .map_err(|e| failed(format!("cannot give {id} its image {}: {e}", backing.display())))?;
                qemu_img(&[
                    "rebase".as_ref(),
                    "-u".as_ref(),
                    "-F".as_ref(),
                    "qcow2".as_ref(),
                    "-b".as_ref(),
                    "base.qcow2".as_ref(),
                    disk.as_os_str(),
                ])?;
            }
            return Ok(());
        }
        let tmp = self.dir(id).join("system.qcow2.tmp");
        let base = if confined {
            confine::stage_readonly(&self.cfg.image.rootfs(), &base_view)
                .map_err(|e| failed(format!("cannot give {id} the image: {e}")))?;
            PathBuf::from("base.qcow2")
        } else {
            self.cfg.image.rootfs()
        };
        let size_mib = size_gib.saturating_mul(1024).max(crate::image::ROOTFS_SIZE_MIB);
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&base)
            .arg(&tmp)
            .arg(format!("{size_mib}M"))
            .output()
            .map_err(|e| failed(format!("cannot run qemu-img (apt-get install qemu-utils): {e}")))?;
        if !out.status.success() {
            return Err(failed(format!("qemu-img create failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        std::fs::rename(&tmp, &disk).map_err(failed)
    }

    /// Starts QEMU inside `netns` when given. Unconfined, QEMU daemonizes itself and this
    /// returns once it runs; confined, it returns QEMU's process, which the caller watches
    /// until its pid file names it.
    fn launch(&self, spec: &InstanceSpec, disks: &[GuestDisk]) -> Result<Launched, DriverError> {
        let id = &spec.plan.id;
        let d = self.dir(id);
        std::fs::create_dir_all(&d).map_err(failed)?;
        if let Some(c) = &self.cfg.confine {
            return self.launch_confined(spec, c, disks).map(Some);
        }
        if disks.is_empty() {
            self.ensure_disk(id, spec.plan.system_disk_gib)?;
        }
        // Each boot's console starts empty: GetInstanceConsoleOutput shows the latest boot.
        std::fs::write(self.console_path(id), b"").map_err(failed)?;
        let _ = std::fs::remove_file(self.pid_path(id));
        let _ = std::fs::remove_file(self.qmp_path(id));
        let mut cmd = std::process::Command::new(&self.cfg.qemu);
        cmd.args(self.args(spec, None, disks)).stdin(std::process::Stdio::null());
        let ns_file = match &spec.netns {
            Some(ns) => Some(
                std::fs::File::open(Path::new("/var/run/netns").join(ns))
                    .map_err(|e| failed(format!("network namespace {ns} is missing: {e}")))?,
            ),
            None => None,
        };
        if let Some(f) = &ns_file {
            let fd = f.as_raw_fd();
            // SAFETY: setns is async-signal-safe and fd stays open until after spawn returns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let out = cmd.output().map_err(|e| failed(format!("cannot run {}: {e}", self.cfg.qemu)))?;
        drop(ns_file);
        if !out.status.success() {
            return Err(failed(format!(
                "{} exited with {}: {}",
                self.cfg.qemu,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(None)
    }

    /// [`launch`](Self::launch) confined ([`confine`]): the instance's directory becomes its
    /// uid's, the image's files are staged in it, the tap is opened here, and the child drops
    /// to the uid before `exec`. With served `disks`, the directory was handed over before
    /// they were served (their sockets are for its uid), and there is no qcow2 disk.
    fn launch_confined(
        &self,
        spec: &InstanceSpec,
        c: &Confinement,
        disks: &[GuestDisk],
    ) -> Result<tokio::process::Child, DriverError> {
        let id = &spec.plan.id;
        let d = self.dir(id);
        let disk = d.join("system.qcow2");
        let uid = match confine::handed_to(&d).map_err(failed)? {
            Some(uid) if !disks.is_empty() => uid,
            None if !disks.is_empty() => {
                return Err(failed(format!("the directory of {id} was not handed to its guest's uid")));
            }
            Some(uid) => {
                // The guest's directory: its disk is never remade here (see `confine`).
                let is_file = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
                if !is_file(&disk) || !is_file(&d.join("base.qcow2")) {
                    return Err(failed(format!("the system disk of {id} is gone from {}", d.display())));
                }
                uid
            }
            None => {
                // Still root's (a new instance, or one made before confinement): the disk is
                // made or moved onto base.qcow2 now, then everything is handed over.
                self.ensure_disk(id, spec.plan.system_disk_gib)?;
                let uid = confine::hand_over(&d, &self.cfg.run_dir)
                    .map_err(|e| failed(format!("cannot give {id} a uid: {e}")))?;
                std::os::unix::fs::lchown(&disk, Some(uid), Some(uid)).map_err(failed)?;
                uid
            }
        };
        for (src, name) in [(self.cfg.image.kernel(), "vmlinuz"), (self.cfg.image.initrd(), "initrd.img")] {
            confine::stage_readonly(&src, &d.join(name))
                .map_err(|e| failed(format!("cannot give {id} {}: {e}", src.display())))?;
        }
        // Each boot's console starts empty: GetInstanceConsoleOutput shows the latest boot.
        confine::create_fresh(&self.console_path(id), uid, 0o600).map_err(failed)?;
        let log = confine::create_fresh(&self.log_path(id), uid, 0o600).map_err(failed)?;
        for f in [self.pid_path(id), self.qmp_path(id)] {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
                _ => {}
            }
        }
        let tap = match &spec.tap {
            Some(name) => Some(
                confine::open_tap(spec.netns.as_deref(), name)
                    .map_err(|e| failed(format!("cannot open tap {name} of {id}: {e}")))?,
            ),
            None => None,
        };
        let ns_file = match &spec.netns {
            Some(ns) => Some(
                std::fs::File::open(Path::new("/var/run/netns").join(ns))
                    .map_err(|e| failed(format!("network namespace {ns} is missing: {e}")))?,
            ),
            None => None,
        };
        let tap_fd = tap.as_ref().map(|t| t.as_raw_fd());
        let ns_fd = ns_file.as_ref().map(|f| f.as_raw_fd());
        let groups: Vec<libc::gid_t> = c.kvm_gid.filter(|_| self.cfg.accel == Accel::Kvm).into_iter().collect();
        let mut cmd = std::process::Command::new(&self.cfg.qemu);
        cmd.args(self.args(spec, tap_fd, disks))
            .current_dir(&d)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(failed)?)
            .stderr(log);
        // SAFETY: drop_privileges makes only async-signal-safe calls; the descriptors stay
        // open (tap, ns_file) until after spawn returns.
        unsafe {
            cmd.pre_exec(move || confine::drop_privileges(ns_fd, tap_fd, uid, &groups));
        }
        let child = tokio::process::Command::from(cmd)
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", self.cfg.qemu)))?;
        drop((tap, ns_file));
        // QEMU runs as a uid that cannot resolve its directory's full path (QEMU's -pidfile
        // needs it), and spawn returned after exec: the child's pid is QEMU's.
        let pid = child.id().ok_or_else(|| failed(format!("the QEMU of {id} ended at once: {}", self.log_tail(id))))?;
        let mut f = confine::create_fresh(&self.pid_path(id), 0, 0o644).map_err(failed)?;
        std::io::Write::write_all(&mut f, format!("{pid}\n").as_bytes()).map_err(failed)?;
        Ok(child)
    }

    /// The last lines QEMU wrote to its own output, for an error message.
    fn log_tail(&self, id: &str) -> String {
        let mut text = String::new();
        if let Ok(f) = confine::open_owned(&self.log_path(id), self.owner(id)) {
            let _ = f.take(64 * 1024).read_to_string(&mut text);
        }
        text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    async fn qmp(&self, id: &str, command: &str) -> Result<serde_json::Value, DriverError> {
        let sock = self.qmp_path(id);
        let pid = self.pid(id).ok_or_else(|| failed(format!("the QEMU of {id} is not running")))?;
        let fut = qmp_execute(&sock, command, Some(pid));
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .map_err(|_| failed(format!("QMP {command} timed out for {id}")))?
    }

    /// Powers the instance off and waits until its QEMU is gone.
    async fn power_off(&self, id: &str) -> Result<(), DriverError> {
        if let Some(pid) = self.pid(id) {
            if self.qmp(id, "quit").await.is_err() {
                // SAFETY: kill on a pid we verified is this instance's QEMU.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !wait_until(Duration::from_secs(15), || self.pid(id).is_none()).await {
            if let Some(pid) = self.pid(id) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if !wait_until(Duration::from_secs(5), || self.pid(id).is_none()).await {
                return Err(failed(format!("the QEMU of {id} does not die")));
            }
        }
        Ok(())
    }

    /// Launches QEMU with the served `disks` (empty: the qcow2 system disk) and waits for
    /// its guest to come up.
    async fn boot(&self, spec: &InstanceSpec, disks: Vec<GuestDisk>) -> Result<(), DriverError> {
        let me_spec = spec.clone();
        let launched = {
            let cfg = self.cfg.clone();
            tokio::task::spawn_blocking(move || QemuDriver { cfg, served: Served::default() }.launch(&me_spec, &disks))
                .await
                .map_err(|e| failed(format!("launch task failed: {e}")))?
        };
        if let Some(mut child) = launched? {
            // A confined QEMU is our child: it runs once its QMP socket is there; an early
            // exit (a bad argument, a refused file) says why in its log. Dropping the
            // child leaves it running; tokio reaps it when it ends.
            let id = &spec.plan.id;
            let mut exited = false;
            let qmp = self.qmp_path(id);
            wait_until(Duration::from_secs(30), || {
                exited = !matches!(child.try_wait(), Ok(None));
                exited || std::fs::symlink_metadata(&qmp).is_ok()
            })
            .await;
            if exited || self.pid(id).is_none() {
                if !exited {
                    let _ = child.start_kill();
                }
                return Err(failed(format!("the QEMU of {id} did not start: {}", self.log_tail(id))));
            }
        }
        let id = spec.plan.id.clone();
        let ready = wait_until(self.cfg.boot_timeout, || {
            self.console_tail(&id).is_some_and(|t| t.contains(READY_MARKER)) || self.pid(&id).is_none()
        })
        .await;
        if self.pid(&spec.plan.id).is_none() {
            return Err(failed(format!(
                "the QEMU of {} ended during boot ({}); its console: {}",
                spec.plan.id,
                self.log_tail(&spec.plan.id),
                self.console_tail(&spec.plan.id)
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )));
        }
        if !ready {
            tracing::warn!(instance = %spec.plan.id, "the guest did not report ready in time; it runs, but may not be reachable yet");
        }
        Ok(())
    }

    /// Shuts the guest down (ACPI, then powered off after the grace period; or at once when
    /// forced) and waits until its QEMU is gone.
    async fn shut_down(&self, id: &str, force: bool) -> Result<(), DriverError> {
        if !force {
            match self.qmp(id, "system_powerdown").await {
                Ok(_) => {
                    if wait_until(self.cfg.stop_grace, || self.pid(id).is_none()).await {
                        return Ok(());
                    }
                    tracing::info!(instance = %id, "the guest ignored the ACPI shutdown; powering off");
                }
                Err(e) => tracing::warn!(instance = %id, error = %e, "ACPI shutdown failed; powering off"),
            }
        }
        self.power_off(id).await
    }

    /// The uid the instance's QEMU runs as, for which its disks are served: its own when
    /// confined (its directory is handed over now if it was not yet), feitian's otherwise.
    fn guest_uid(&self, id: &str) -> Result<u32, DriverError> {
        if self.cfg.confine.is_none() {
            // SAFETY: geteuid has no preconditions and cannot fail.
            return Ok(unsafe { libc::geteuid() });
        }
        let d = self.dir(id);
        std::fs::create_dir_all(&d).map_err(failed)?;
        match confine::handed_to(&d).map_err(failed)? {
            Some(uid) => Ok(uid),
            None => {
                confine::hand_over(&d, &self.cfg.run_dir).map_err(|e| failed(format!("cannot give {id} a uid: {e}")))
            }
        }
    }

    /// The disk as QEMU opens it, from its server's socket: named relative to the instance's
    /// directory when confined (QEMU's working directory; its uid cannot resolve the full
    /// path).
    fn guest_disk(&self, volume: &str, socket: &Path) -> Result<GuestDisk, DriverError> {
        let socket = if self.cfg.confine.is_some() {
            socket
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| failed(format!("odd socket {} for disk {volume}", socket.display())))?
                .to_owned()
        } else {
            socket
                .to_str()
                .ok_or_else(|| failed(format!("odd socket {} for disk {volume}", socket.display())))?
                .to_owned()
        };
        Ok(GuestDisk { id: volume.to_owned(), socket })
    }

    /// Serves `disk` for the instance's QEMU (idempotent) and records it.
    async fn serve_disk(&self, servers: &dyn DiskServers, id: &str, disk: &DiskPlan) -> Result<GuestDisk, DriverError> {
        let uid = self.guest_uid(id)?;
        let socket = servers.serve(disk, &self.dir(id), uid).await?;
        self.served.add(id, &disk.volume);
        self.guest_disk(&disk.volume, &socket)
    }

    /// Serves every disk of the instance's plan, the system disk first, and returns them as
    /// QEMU opens them; empty without disk servers (the qcow2 system disk).
    async fn serve_disks(&self, spec: &InstanceSpec) -> Result<Vec<GuestDisk>, DriverError> {
        let Some(servers) = &self.cfg.disks else { return Ok(Vec::new()) };
        let id = &spec.plan.id;
        if spec.plan.disks.is_empty() {
            return Err(failed(format!("{id} has no system disk in its plan")));
        }
        let mut out = Vec::with_capacity(spec.plan.disks.len());
        for d in &spec.plan.disks {
            out.push(self.serve_disk(servers.as_ref(), id, d).await?);
        }
        Ok(out)
    }

    /// Stops the disk servers of the instance, whose QEMU has ended (never before: it would
    /// wait for them).
    async fn release_disks(&self, id: &str) -> Result<(), DriverError> {
        let Some(servers) = &self.cfg.disks else { return Ok(()) };
        for volume in self.served.of(id) {
            servers.stop(&volume).await?;
            self.served.remove(id, &volume);
        }
        Ok(())
    }

    /// A QMP session with the instance's live QEMU `pid`, for the disk sequences.
    async fn session(&self, id: &str, pid: i32) -> Result<qmp::Qmp, DriverError> {
        tokio::time::timeout(Duration::from_secs(10), qmp::Qmp::connect(&self.qmp_path(id), Some(pid)))
            .await
            .map_err(|_| failed(format!("the QMP of {id} does not answer")))?
    }

    /// Runs a disk sequence on the instance's QEMU, bounded by [`DISK_OP_LIMIT`].
    async fn on_disk<F, Fut>(&self, id: &str, pid: i32, what: &str, op: F) -> Result<(), DriverError>
    where
        F: FnOnce(qmp::Qmp) -> Fut,
        Fut: std::future::Future<Output = Result<(), DriverError>>,
    {
        let session = self.session(id, pid).await?;
        tokio::time::timeout(DISK_OP_LIMIT, op(session))
            .await
            .map_err(|_| failed(format!("{what} on {id} took over {DISK_OP_LIMIT:?}")))?
    }

    fn console_tail(&self, id: &str) -> Option<String> {
        let mut f = confine::open_owned(&self.console_path(id), self.owner(id)).ok()?;
        let len = f.metadata().ok()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(CONSOLE_TAIL))).ok()?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// Sends one QMP command and returns its `return` value. With `peer`, the socket's other end
/// must be that process (see [`qmp::Qmp::connect`]).
pub async fn qmp_execute(sock: &Path, command: &str, peer: Option<i32>) -> Result<serde_json::Value, DriverError> {
    let mut session = qmp::Qmp::connect(sock, peer).await?;
    match session.execute(command, None).await {
        // `quit` may close the socket before answering.
        Err(_) if command == "quit" => Ok(serde_json::Value::Null),
        other => other,
    }
}

impl Driver for QemuDriver {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn start<'a>(&'a self, spec: &'a InstanceSpec) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let id = &spec.plan.id;
            if let Some(pid) = self.pid(id) {
                // Adopted or already running: it must be on the instance's network. A QEMU
                // whose namespace was removed under it (a shutdown that raced its start)
                // reaches nobody; it is powered off and booted again.
                if spec.netns.as_deref().is_none_or(|ns| same_netns(pid, ns)) {
                    // After a restart its disks have no server: they are served again, and
                    // its NBD client reconnects within its reconnect delay.
                    self.serve_disks(spec).await?;
                    return Ok(());
                }
                tracing::warn!(instance = %id, "its QEMU runs in a network namespace that is gone; booting it again");
                self.power_off(id).await?;
            }
            let disks = self.serve_disks(spec).await?;
            let booted = self.boot(spec, disks).await;
            if booted.is_err() && self.pid(id).is_none() {
                // It stays stopped: nothing may hold its disks.
                if let Err(e) = self.release_disks(id).await {
                    tracing::warn!(instance = %id, error = %e, "cannot stop the disk servers of a guest that did not boot");
                }
            }
            booted
        })
    }

    fn stop<'a>(&'a self, id: &'a str, force: bool) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if !self.dir(id).exists() {
                self.release_disks(id).await?;
                return Err(DriverError::Unknown(id.to_owned()));
            }
            if self.pid(id).is_some() {
                self.shut_down(id, force).await?;
            }
            // QEMU has ended (or had, on its own): its disks' servers go now.
            self.release_disks(id).await
        })
    }

    fn reboot<'a>(&'a self, spec: &'a InstanceSpec, force: bool) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if self.pid(&spec.plan.id).is_some() {
                self.stop(&spec.plan.id, force).await?;
            }
            self.start(spec).await
        })
    }

    fn destroy<'a>(&'a self, id: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if self.pid(id).is_some() {
                self.power_off(id).await?;
            }
            self.release_disks(id).await?;
            match std::fs::remove_dir_all(self.dir(id)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(failed(format!("cannot remove {}: {e}", self.dir(id).display()))),
            }
        })
    }

    fn observe(&self, id: &str) -> Observed {
        if self.pid(id).is_some() {
            Observed::Running
        } else if self.dir(id).exists() {
            Observed::Stopped
        } else {
            Observed::Absent
        }
    }

    fn known(&self) -> Vec<String> {
        std::fs::read_dir(&self.cfg.run_dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn console_output(&self, id: &str) -> Option<String> {
        self.console_tail(id)
    }

    /// Measured now (`/proc/meminfo`, the CPUs this process may run on).
    fn capacity(&self) -> Result<HostCapacity, DriverError> {
        crate::host::measure().map_err(|e| failed(format!("cannot measure the host: {e}")))
    }

    /// Serves the disk for the guest's uid, then hot-plugs it (`disks::hot_plug`). Without
    /// disk servers the driver refuses (the reconciler retries and logs it).
    fn attach_disk<'a>(&'a self, id: &'a str, disk: &'a DiskPlan) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let Some(servers) = &self.cfg.disks else {
                return Err(failed(format!(
                    "attaching disk {} to {id}: this qemu driver has no disk servers",
                    disk.volume
                )));
            };
            let pid = self
                .pid(id)
                .ok_or_else(|| failed(format!("{id} does not run: it gets disk {} at its next start", disk.volume)))?;
            let guest_disk = self.serve_disk(servers.as_ref(), id, disk).await?;
            self.on_disk(id, pid, "hot-plugging", |mut qmp| async move { disks::hot_plug(&mut qmp, &guest_disk).await })
                .await
        })
    }

    /// Hot-unplugs the disk from a running guest (which must release it), then stops its
    /// server; a stopped guest's disk only loses its server.
    fn detach_disk<'a>(&'a self, id: &'a str, volume: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let Some(servers) = &self.cfg.disks else {
                return Err(failed(format!("detaching disk {volume} from {id}: this qemu driver has no disk servers")));
            };
            if let Some(pid) = self.pid(id) {
                // Unplugging names the device and the node only, not the socket.
                let guest_disk = GuestDisk { id: volume.to_owned(), socket: String::new() };
                self.on_disk(id, pid, "hot-unplugging", |mut qmp| async move {
                    disks::hot_unplug(&mut qmp, &guest_disk).await
                })
                .await?;
            }
            // Served for another instance by now (attached there while this one was stopped):
            // that server is not this guest's to stop.
            if self.served.has(id, volume) {
                servers.stop(volume).await?;
                self.served.remove(id, volume);
            }
            Ok(())
        })
    }

    /// The disks served for the running guest: those of its plan at boot (or at adoption),
    /// and those hot-plugged since.
    fn attached_disks(&self, id: &str) -> Vec<String> {
        if self.pid(id).is_none() {
            return Vec::new();
        }
        self.served.of(id)
    }

    /// The volume was grown through its server, which dropped its connection: QEMU reconnects,
    /// learns the new size, and tells the guest (`disks::grow_online`).
    fn disk_grown<'a>(&'a self, id: &'a str, volume: &'a str, size_bytes: u64) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let Some(pid) = self.pid(id) else { return Ok(()) };
            if self.cfg.disks.is_none() || !self.served.has(id, volume) {
                return Ok(());
            }
            let guest_disk = GuestDisk { id: volume.to_owned(), socket: String::new() };
            self.on_disk(id, pid, "growing a disk", |mut qmp| async move {
                disks::grow_online(&mut qmp, &guest_disk, size_bytes).await
            })
            .await
        })
    }
}

fn qemu_img(args: &[&std::ffi::OsStr]) -> Result<std::process::Output, DriverError> {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .map_err(|e| failed(format!("cannot run qemu-img (apt-get install qemu-utils): {e}")))?;
    if !out.status.success() {
        return Err(failed(format!("qemu-img failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(out)
}

/// The full path of the backing file of qcow2 image `disk`.
fn backing_file(disk: &Path) -> Result<PathBuf, DriverError> {
    let out = qemu_img(&["info".as_ref(), "--output=json".as_ref(), "-U".as_ref(), disk.as_os_str()])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(failed)?;
    v["full-backing-filename"]
        .as_str()
        .or(v["backing-filename"].as_str())
        .map(PathBuf::from)
        .ok_or_else(|| failed(format!("{} has no backing file", disk.display())))
}

/// Whether process `pid` lives in network namespace `ns` (an `ip netns` name).
fn same_netns(pid: i32, ns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let key = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let proc_ns = key(Path::new(&format!("/proc/{pid}/ns/net")));
    proc_ns.is_some() && proc_ns == key(&Path::new("/var/run/netns").join(ns))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Boots the image once under KVM with a read-only disk and no network, and says whether
/// it reached [`READY_MARKER`] within `limit`. On some hosts `/dev/kvm` exists and guests
/// hang under it; this tells them apart. The probe's QEMU is always killed.
pub async fn kvm_works(qemu: &str, image: &ImageLayout, cmdline_base: &str, limit: Duration) -> bool {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return false;
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(_) => return false,
    };
    let log = dir.path().join("console.log");
    let child = tokio::process::Command::new(qemu)
        .args(["-machine", "pc", "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-no-user-config"])
        .args(["-display", "none", "-device", "virtio-rng-pci", "-kernel"])
        .arg(image.kernel())
        .arg("-initrd")
        .arg(image.initrd())
        .arg("-append")
        .arg(cmdline_base)
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2,snapshot=on", image.rootfs().display()))
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else { return false };
    let ok =
        wait_until(limit, || std::fs::read(&log).map(|b| contains(&b, READY_MARKER.as_bytes())).unwrap_or(false)).await;
    let _ = child.kill().await;
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstancePlan;

    fn driver(dir: &Path, confine: Option<Confinement>) -> QemuDriver {
        QemuDriver::new(QemuConfig {
            qemu: "qemu-system-x86_64".into(),
            run_dir: dir.join("instances"),
            image: ImageLayout { dir: dir.join("image") },
            kernel_cmdline_base: "console=ttyS0".into(),
            accel: Accel::Tcg,
            stop_grace: Duration::from_secs(1),
            boot_timeout: Duration::from_secs(1),
            host_cpus: 2,
            host_memory_mib: 4096,
            confine,
            disks: None,
        })
        .unwrap()
    }

    fn spec() -> InstanceSpec {
        let disk = |volume: &str, device: &str| DiskPlan {
            volume: volume.into(),
            size_gib: 20,
            device: device.into(),
            serial: volume.into(),
            read_only: false,
            category: "cloud_efficiency".into(),
            performance_level: String::new(),
        };
        InstanceSpec {
            plan: InstancePlan {
                id: "i-1".into(),
                host_name: "h".into(),
                cpu: 1,
                memory_mib: 512,
                system_disk_gib: 40,
                disks: vec![disk("d-sys", "/dev/xvda"), disk("d-data", "/dev/xvdb")],
                image_id: "img".into(),
                vpc_id: "vpc-1".into(),
                nic: feitian_agent_api::NicPlan {
                    id: "eni-1".into(),
                    mac: "00:16:3e:00:00:01".into(),
                    ip: "192.168.1.1".parse().unwrap(),
                    gateway: "192.168.1.253".parse().unwrap(),
                    prefix_len: 24,
                },
                user_data: String::new(),
                public_keys: vec![],
            },
            netns: None,
            tap: None,
        }
    }

    #[test]
    fn served_disks_replace_the_qcow2_drive_system_disk_first_before_other_devices() {
        let tmp = tempfile::tempdir().unwrap();
        let d = driver(tmp.path(), None);
        let disks = vec![
            d.guest_disk("d-sys", &tmp.path().join("instances/i-1/d-sys.sock")).unwrap(),
            d.guest_disk("d-data", &tmp.path().join("instances/i-1/d-data.sock")).unwrap(),
        ];
        let a = d.args(&spec(), None, &disks);
        assert!(!a.iter().any(|x| x == "-drive"), "{a:?}");
        let pos =
            |needle: &str| a.iter().position(|x| x.contains(needle)).unwrap_or_else(|| panic!("{needle} in {a:?}"));
        assert!(pos("drive=disk-d-sys") < pos("drive=disk-d-data"));
        assert!(pos("drive=disk-d-data") < pos("virtio-rng-pci"));
        assert!(a[pos("drive=disk-d-sys")].contains("bootindex=1"));
        assert!(!a[pos("drive=disk-d-data")].contains("bootindex"));
        // Unconfined, QEMU is given the socket's full path.
        assert!(a[pos("\"nbd\"")].contains(&tmp.path().join("instances/i-1/d-sys.sock").display().to_string()));

        // Without served disks: today's qcow2 overlay.
        let a = d.args(&spec(), None, &[]);
        assert!(a.iter().any(|x| x.starts_with("file=") && x.contains("system.qcow2")), "{a:?}");
        assert!(!a.iter().any(|x| x == "-blockdev"), "{a:?}");
    }

    #[test]
    fn a_confined_qemu_names_its_disk_sockets_relative_to_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let d = driver(tmp.path(), Some(Confinement { sandbox: false, kvm_gid: None }));
        let g = d.guest_disk("d-sys", &tmp.path().join("instances/i-1/d-sys.sock")).unwrap();
        assert_eq!(g.socket, "d-sys.sock");
        let a = d.args(&spec(), None, &[g]);
        let node: serde_json::Value =
            serde_json::from_str(&a[a.iter().position(|x| x == "-blockdev").unwrap() + 1]).unwrap();
        assert_eq!(node["server"]["path"], "d-sys.sock");
    }

    #[test]
    fn sizes_are_capped_by_the_host() {
        assert_eq!(scaled(2, 8192, 2, 24 * 1024), (2, 1536));
        assert_eq!(scaled(16, 65536, 2, 24 * 1024), (2, 1536));
        assert_eq!(scaled(1, 1024, 2, 24 * 1024), (1, 1024));
        assert_eq!(scaled(1, 512, 8, 2048), (1, 256));
        assert_eq!(scaled(0, 0, 0, 0), (1, 128));
    }
}
