//! The qemu driver with disk servers (`docs/disks.md`), against a real confined QEMU booting
//! the built-in image, with `qemu-nbd` standing in for the host's disk servers: the system
//! disk is served before QEMU starts, for the guest's uid, and opened over NBD; a data disk is
//! hot-plugged, grown online (its server restarts with the bigger file, as the disk server
//! drops its connection) and hot-unplugged; the servers stop only once QEMU has ended; a
//! restarted driver (a new feitian) adopting the running guest serves its disks again, and
//! QEMU reconnects to them.
//!
//! Needs root, `qemu-system-x86_64`, `qemu-nbd`, `qemu-img` and the built-in image, built
//! (`$FEITIAN_IMAGE_CACHE`, else `<workspace>/target/feitian-images`: the image test and
//! `feitian up` build it); without them it prints `SKIPPED` and passes.

use feitian_compute::image::{self, ImageLayout};
use feitian_compute::qemu::qmp::Qmp;
use feitian_compute::qemu::{confine, Accel, Confinement, QemuConfig, QemuDriver};
use feitian_compute::{DiskPlan, DiskServers, Driver, DriverError, DriverFuture, InstancePlan, InstanceSpec, Observed};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ID: &str = "i-feitiandisktest01";
const SYSTEM: &str = "d-feitiansystem0001";
const DATA: &str = "d-feitiandata000001";
const MIB: u64 = 1 << 20;

fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn images_dir() -> PathBuf {
    match std::env::var_os("FEITIAN_IMAGE_CACHE") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/feitian-images"),
    }
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    if let Some(t) = ["qemu-system-x86_64", "qemu-nbd", "qemu-img"].iter().find(|t| !have(t)) {
        return Some(format!("{t} not found (apt-get install qemu-system-x86 qemu-utils)"));
    }
    if !image::is_current(&images_dir()) {
        return Some(format!("no current built-in image in {} (run the image test first)", images_dir().display()));
    }
    None
}

/// One `qemu-nbd` serving a file; killed when dropped.
struct Nbd {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host's disk servers, played by `qemu-nbd`: each volume is a file of the test, served
/// on `DIR/VOLUME.sock` (0600, the client's), as the disk crate's `DiskHost` does. Every
/// `stop` records whether the instance's QEMU was still alive then.
struct NbdServers {
    files: HashMap<String, (PathBuf, &'static str)>,
    running: Mutex<HashMap<String, Nbd>>,
    /// (volume, whether a QEMU of the test instance was alive) for every stop.
    stops: Mutex<Vec<(String, bool)>>,
    /// (volume, uid) for every serve that started a server.
    serves: Mutex<Vec<(String, u32)>>,
    qemu_alive: Box<dyn Fn() -> bool + Send + Sync>,
}

impl NbdServers {
    fn start(&self, volume: &str, dir: &Path, uid: u32) -> Result<PathBuf, String> {
        let (file, format) = self.files.get(volume).ok_or_else(|| format!("no volume {volume}"))?;
        let sock = dir.join(format!("{volume}.sock"));
        let _ = std::fs::remove_file(&sock);
        let child = Command::new("qemu-nbd")
            .args(["-f", format, "-t", "-k"])
            .arg(&sock)
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let nbd = Nbd { child, dir: dir.to_owned() };
        let t = Instant::now();
        while !sock.exists() {
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!("qemu-nbd made no {}", sock.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::os::unix::fs::lchown(&sock, Some(uid), Some(uid)).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
        self.running.lock().insert(volume.to_owned(), nbd);
        self.serves.lock().push((volume.to_owned(), uid));
        Ok(sock)
    }

    /// What the disk server does after a volume grew: its connection drops, and the size
    /// it advertises to the next one is the new one.
    fn restart(&self, volume: &str, uid: u32) {
        let dir = self.running.lock().remove(volume).map(|n| n.dir.clone()).expect("served");
        self.start(volume, &dir, uid).expect("served again");
    }

    /// Every server dies at once, as with the feitian process they live in.
    fn die(&self) {
        self.running.lock().clear();
    }
}

impl DiskServers for NbdServers {
    fn serve<'a>(&'a self, disk: &'a DiskPlan, dir: &'a Path, uid: u32) -> DriverFuture<'a, PathBuf> {
        Box::pin(async move {
            let volume = disk.volume.as_str();
            if let Some(n) = self.running.lock().get(volume) {
                if n.dir == dir {
                    return Ok(dir.join(format!("{volume}.sock")));
                }
            }
            self.start(volume, dir, uid).map_err(DriverError::Failed)
        })
    }

    fn stop<'a>(&'a self, volume: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if let Some(n) = self.running.lock().remove(volume) {
                self.stops.lock().push((volume.to_owned(), (self.qemu_alive)()));
                let _ = std::fs::remove_file(n.dir.join(format!("{volume}.sock")));
            }
            Ok(())
        })
    }
}

fn plan_disk(volume: &str, device: &str, size: u64) -> DiskPlan {
    DiskPlan {
        volume: volume.into(),
        size_gib: size,
        device: device.into(),
        serial: volume.into(),
        read_only: false,
        category: "cloud_efficiency".into(),
        performance_level: String::new(),
    }
}

fn spec() -> InstanceSpec {
    InstanceSpec {
        plan: InstancePlan {
            id: ID.into(),
            host_name: "disks".into(),
            cpu: 1,
            memory_mib: 256,
            system_disk_gib: 1,
            disks: vec![plan_disk(SYSTEM, "/dev/xvda", 1)],
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

fn driver(run_dir: &Path, layout: &ImageLayout, servers: Arc<NbdServers>) -> QemuDriver {
    let manifest = layout.read_manifest().expect("the image's manifest");
    QemuDriver::new(QemuConfig {
        qemu: "qemu-system-x86_64".into(),
        run_dir: run_dir.to_owned(),
        image: layout.clone(),
        kernel_cmdline_base: manifest.kernel_cmdline_base,
        accel: Accel::Tcg,
        stop_grace: Duration::from_secs(20),
        boot_timeout: Duration::from_secs(240),
        host_cpus: 1,
        host_memory_mib: 4096,
        confine: Some(Confinement { sandbox: confine::sandbox_supported("qemu-system-x86_64"), kvm_gid: None }),
        disks: Some(servers),
    })
    .expect("driver")
}

fn pid_of(run_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(run_dir.join(ID).join("qemu.pid")).ok()?.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let alive = stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
    alive.then_some(pid)
}

async fn qmp(run_dir: &Path) -> Qmp {
    Qmp::connect(&run_dir.join(ID).join("qmp.sock"), None).await.expect("QMP")
}

async fn node_size(run_dir: &Path, node: &str) -> Option<u64> {
    let mut q = qmp(run_dir).await;
    let nodes = q.execute("query-named-block-nodes", Some(json!({ "flat": true }))).await.expect("nodes");
    nodes.as_array()?.iter().find(|n| n["node-name"] == node).and_then(|n| n["image"]["virtual-size"].as_u64())
}

async fn has_device(run_dir: &Path, volume: &str) -> bool {
    let mut q = qmp(run_dir).await;
    q.execute("qom-list", Some(json!({ "path": format!("/machine/peripheral/vd-{volume}") }))).await.is_ok()
}

/// Kills a QEMU the test left running (a failed assertion), so nothing outlives the test.
struct Reap(PathBuf);
impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(pid) = pid_of(&self.0) {
            // SAFETY: a pid read from the test's own pid file, checked alive.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_disks_boot_plug_grow_unplug_stop_and_survive_a_restart() {
    if let Some(why) = skip_reason() {
        say(&format!("SKIPPED: the qemu driver's disks need {why}"));
        return;
    }
    let layout = image::layout(&images_dir());
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("instances");
    let _reap = Reap(run_dir.clone());
    let files = tmp.path().join("volumes");
    std::fs::create_dir_all(&files).unwrap();
    // The system disk: an overlay over the image (qemu-nbd serves it as the RAF volume would).
    let system = files.join("system.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(layout.rootfs())
        .arg(&system)
        .arg("1G")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = files.join("data.raw");
    std::fs::File::create(&data).unwrap().set_len(64 * MIB).unwrap();

    let new_servers = || {
        let rd = run_dir.clone();
        Arc::new(NbdServers {
            files: HashMap::from([
                (SYSTEM.to_string(), (system.clone(), "qcow2")),
                (DATA.to_string(), (data.clone(), "raw")),
            ]),
            running: Mutex::new(HashMap::new()),
            stops: Mutex::new(Vec::new()),
            serves: Mutex::new(Vec::new()),
            qemu_alive: Box::new(move || pid_of(&rd).is_some()),
        })
    };
    let servers = new_servers();
    let d = driver(&run_dir, &layout, servers.clone());
    let spec = spec();

    // Boot: the system disk served for the guest's own uid, before QEMU, and opened over NBD.
    d.start(&spec).await.unwrap_or_else(|e| panic!("start: {e}"));
    assert_eq!(d.observe(ID), Observed::Running);
    let console = d.console_output(ID).unwrap_or_default();
    assert!(console.contains(feitian_compute::qemu::READY_MARKER), "the guest did not come up: {console}");
    let uid = confine::handed_to(&run_dir.join(ID)).unwrap().expect("the directory is the guest's");
    assert_eq!(*servers.serves.lock(), vec![(SYSTEM.to_string(), uid)]);
    assert_eq!(d.attached_disks(ID), vec![SYSTEM.to_string()]);
    assert_eq!(node_size(&run_dir, &format!("disk-{SYSTEM}")).await, Some(1 << 30));

    // Hot-plug (twice: idempotent), then grow online.
    d.attach_disk(ID, &plan_disk(DATA, "/dev/xvdb", 1)).await.unwrap_or_else(|e| panic!("attach: {e}"));
    d.attach_disk(ID, &plan_disk(DATA, "/dev/xvdb", 1)).await.unwrap_or_else(|e| panic!("attach again: {e}"));
    assert!(has_device(&run_dir, DATA).await);
    assert_eq!(d.attached_disks(ID), vec![DATA.to_string(), SYSTEM.to_string()]);
    assert_eq!(node_size(&run_dir, &format!("disk-{DATA}")).await, Some(64 * MIB));
    std::fs::OpenOptions::new().write(true).open(&data).unwrap().set_len(128 * MIB).unwrap();
    servers.restart(DATA, uid);
    d.disk_grown(ID, DATA, 128 * MIB).await.unwrap_or_else(|e| panic!("grow: {e}"));
    assert_eq!(node_size(&run_dir, &format!("disk-{DATA}")).await, Some(128 * MIB));

    // Hot-unplug: the guest releases it, then its server stops (QEMU still runs: it no longer
    // uses that disk).
    d.detach_disk(ID, DATA).await.unwrap_or_else(|e| panic!("detach: {e}"));
    assert!(!has_device(&run_dir, DATA).await);
    assert_eq!(d.attached_disks(ID), vec![SYSTEM.to_string()]);
    assert_eq!(*servers.stops.lock(), vec![(DATA.to_string(), true)]);
    d.attach_disk(ID, &plan_disk(DATA, "/dev/xvdb", 1)).await.unwrap_or_else(|e| panic!("attach once more: {e}"));

    // feitian dies (its disk servers with it); a new one adopts the guest: its disks are
    // served again, and QEMU's NBD client reconnects (a read through QEMU answers).
    servers.die();
    drop(d);
    let servers = new_servers();
    let d = driver(&run_dir, &layout, servers.clone());
    assert_eq!(d.observe(ID), Observed::Running);
    let pid = pid_of(&run_dir);
    let mut adopting = spec.clone();
    adopting.plan.disks.push(plan_disk(DATA, "/dev/xvdb", 1));
    d.start(&adopting).await.unwrap_or_else(|e| panic!("adopt: {e}"));
    assert_eq!(pid_of(&run_dir), pid, "the guest was booted again instead of adopted");
    assert_eq!(d.attached_disks(ID), vec![DATA.to_string(), SYSTEM.to_string()]);
    let mut q = qmp(&run_dir).await;
    let read = q
        .execute(
            "human-monitor-command",
            Some(json!({ "command-line": format!("qemu-io -d vd-{SYSTEM}/virtio-backend \"read 0 4k\"") })),
        )
        .await
        .unwrap();
    assert!(!read.as_str().unwrap_or_default().contains("error"), "{read}");
    drop(q);

    // Stop: QEMU first, then every server; none stopped while QEMU lived.
    d.stop(ID, false).await.unwrap_or_else(|e| panic!("stop: {e}"));
    assert_eq!(d.observe(ID), Observed::Stopped);
    assert!(d.attached_disks(ID).is_empty());
    let mut stops = servers.stops.lock().clone();
    stops.sort();
    assert_eq!(stops, vec![(DATA.to_string(), false), (SYSTEM.to_string(), false)]);
    assert!(servers.running.lock().is_empty());

    d.destroy(ID).await.unwrap();
    assert_eq!(d.observe(ID), Observed::Absent);
}
