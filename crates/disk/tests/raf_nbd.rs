//! QEMU's own tools (`qemu-io`) through the NBD server, on a RAF volume, on a real Pangu
//! cluster that loses a chunkserver to `kill -9` while QEMU writes.
//!
//! The cluster is a master in this process and three chunkservers in child processes
//! (replication 3): each child is this test binary run again as its ignored test
//! `chunkserver_process`, so a real SIGKILL can end one. A child also exits when its stdin
//! closes, so none outlives the test process. The harness is `feitian_pangu::test_support`
//! (shared with `crates/raf/tests/on_pangu.rs`). Without qemu-io the test skips, and says so.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use feitian_disk::{NbdServer, RafDevice, ServerConfig};
use feitian_pangu::test_support::{self, Cluster};
use feitian_raf::pangu::PanguStore;
use feitian_raf::{Config, LogStore, Raf};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 64 * MIB;
/// The 1 MiB writes of the stream during which a chunkserver dies (at 16 MiB on).
const STREAM: u64 = 40;

/// The chunkserver child (`feitian_pangu::test_support`): a Pangu node that lives until its
/// stdin closes (or SIGKILL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the chunkserver process the QEMU test starts and kill -9s; not a test by itself"]
async fn chunkserver_process() {
    test_support::chunkserver_child().await;
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: {tool} is not installed (apt-get install qemu-utils)");
    }
    found
}

/// Runs qemu-io on the export off the runtime's threads; fails the test if it fails or a
/// pattern does not verify.
async fn qemu_io(socket: PathBuf, cmds: Vec<String>) {
    let out = tokio::task::spawn_blocking(move || {
        let mut c = Command::new("qemu-io");
        c.arg("--image-opts").arg(format!("driver=nbd,server.type=unix,server.path={}", socket.display()));
        for x in &cmds {
            c.arg("-c").arg(x);
        }
        let out = c.output().expect("run qemu-io");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text, cmds)
    })
    .await
    .expect("join");
    let (ok, text, cmds) = out;
    assert!(ok, "qemu-io {cmds:?} failed:\n{text}");
    assert!(!text.contains("Pattern verification failed"), "qemu-io {cmds:?}:\n{text}");
    assert!(!text.contains("error"), "qemu-io {cmds:?}:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_patterns_survive_a_chunkserver_killed_mid_write() {
    if !have("qemu-io") {
        return;
    }
    // The cluster: a master here, three chunkserver processes, replication 3, 4 MiB chunks.
    let mut cluster = Cluster::start(3, 4 * MIB).await;

    // A RAF volume, served over NBD.
    let store = Arc::new(PanguStore::new(cluster.pangu()));
    store.create("d-qemu", SIZE, None).await.expect("create");
    let raf = Arc::new(Raf::open(store, "d-qemu", Config::default()).await.expect("open"));
    let sockets = tempfile::tempdir().expect("socket dir");
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let server_config =
        ServerConfig { dir: sockets.path().to_path_buf(), name: "d-qemu".into(), client_uid: uid, limits: None };
    let server = NbdServer::start(server_config, Arc::new(RafDevice::new(raf.clone()))).expect("NBD server");
    let socket = server.socket_path().to_path_buf();

    // A pattern, then a stream of writes during which a chunkserver is SIGKILLed.
    let mut first: Vec<String> = vec!["write -P 0xa5 0 8M".into(), "write -P 0x11 9M 4k".into()];
    first.push("aio_write -P 0x22 10M 64k".into());
    first.push("aio_write -P 0x33 11M 1M".into());
    first.push("aio_flush".into());
    qemu_io(socket.clone(), first).await;
    let base = raf.stats().log_bytes;
    let stream: Vec<String> = (0..STREAM).map(|i| format!("write -P {} {}M 1M", 0x40 + i, 16 + i)).collect();
    let began = Instant::now();
    let writing = tokio::spawn(qemu_io(socket.clone(), stream));
    // The kill comes once a few of the stream's writes are in the log.
    while raf.stats().log_bytes < base + 4 * MIB {
        assert!(!writing.is_finished(), "qemu-io stopped early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill9(1);
    assert!(!writing.is_finished(), "the kill came in the middle of the writes");
    writing.await.expect("qemu-io's writes all succeed with a replica gone");
    eprintln!("{STREAM} MiB of qemu-io writes with chunkserver 1 killed after 4: {:?}", began.elapsed());

    // A new connection reads every pattern back.
    let mut check: Vec<String> = vec!["read -P 0xa5 0 8M".into(), "read -P 0 8M 1M".into()];
    check.push("read -P 0x11 9M 4k".into());
    check.push("read -P 0x22 10M 64k".into());
    check.push("read -P 0x33 11M 1M".into());
    check.extend((0..STREAM).map(|i| format!("read -P {} {}M 1M", 0x40 + i, 16 + i)));
    check.push(format!("read -P 0 {}M {}M", 16 + STREAM, SIZE / MIB - 16 - STREAM));
    qemu_io(socket, check).await;
    drop(server);
    raf.close().await.expect("close");
    drop(cluster);
}
