//! The QMP sequences of `qemu::disks` against a real QEMU (paused, no guest) and a real NBD
//! server (`qemu-nbd` on a raw file): hot-plug, and the online grow that reconnects to learn
//! the new size. Skips, loudly, without QEMU.

use feitian_compute::qemu::disks::{self, GuestDisk};
use feitian_compute::qemu::qmp::Qmp;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn wait_for(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn nbd_server(raw: &Path, sock: &Path) -> Kill {
    let _ = std::fs::remove_file(sock);
    let child = Command::new("qemu-nbd")
        .args(["-f", "raw", "-t", "-k"])
        .arg(sock)
        .arg(raw)
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-nbd starts");
    wait_for(sock);
    Kill(child)
}

async fn virtual_size(qmp: &mut Qmp, node: &str) -> u64 {
    let nodes = qmp.execute("query-named-block-nodes", Some(json!({ "flat": true }))).await.unwrap();
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node-name"] == node)
        .and_then(|n| n["image"]["virtual-size"].as_u64())
        .unwrap_or_else(|| panic!("no node {node} in {nodes}"))
}

#[tokio::test]
async fn hot_plug_then_grow_online_through_a_reconnect() {
    if !have("qemu-system-x86_64") || !have("qemu-nbd") {
        eprintln!("SKIPPED: qemu-system-x86_64 and qemu-nbd are needed (apt-get install qemu-system-x86 qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("d.raw");
    let sock = dir.path().join("nbd.sock");
    let qmp_sock = dir.path().join("qmp.sock");
    std::fs::File::create(&raw).unwrap().set_len(64 << 20).unwrap();
    let mut server = nbd_server(&raw, &sock);
    let _qemu = Kill(
        Command::new("qemu-system-x86_64")
            .args(["-nodefaults", "-display", "none", "-machine", "pc", "-S", "-qmp"])
            .stdout(Stdio::null())
            .arg(format!("unix:{},server=on,wait=off", qmp_sock.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("QEMU starts"),
    );
    wait_for(&qmp_sock);
    let mut qmp = Qmp::connect(&qmp_sock, None).await.unwrap();
    let disk = GuestDisk { id: "d-bp1test0000000000000".into(), socket: sock.display().to_string() };

    disks::hot_plug(&mut qmp, &disk).await.unwrap();
    // Idempotent: a second attach changes nothing and does not fail.
    disks::hot_plug(&mut qmp, &disk).await.unwrap();
    let dev = qmp
        .execute(
            "qom-get",
            Some(json!({ "path": format!("/machine/peripheral/{}", disk.device_id()), "property": "serial" })),
        )
        .await
        .unwrap();
    assert_eq!(dev, Value::String(disk.serial()));
    assert_eq!(virtual_size(&mut qmp, &disk.node()).await, 64 << 20);

    // The server restarts with a bigger export (as the disk server drops its connection
    // after the volume grew); QEMU learns the size only by reconnecting.
    drop(std::mem::replace(&mut server, Kill(Command::new("true").spawn().unwrap())));
    std::fs::OpenOptions::new().write(true).open(&raw).unwrap().set_len(128 << 20).unwrap();
    let _server = nbd_server(&raw, &sock);
    disks::grow_online(&mut qmp, &disk, 128 << 20).await.unwrap();
    assert_eq!(virtual_size(&mut qmp, &disk.node()).await, 128 << 20);
}
