//! The disk server driven by QEMU's own NBD client (`qemu-io`, `qemu-img`) and by raw
//! sockets, over a `FileDevice`. Without qemu-io the QEMU tests skip (and say so); the
//! peer-credential test needs root and skips otherwise.

use feitian_disk::nbd::proto;
use feitian_disk::{FileDevice, NbdServer, ServerConfig};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const SIZE: u64 = 64 << 20;
/// A uid nobody on a test machine is logged in as (the client's QEMU in these tests).
const CLIENT_UID: u32 = 64_999;
const STRANGER_UID: u32 = 64_998;

struct Disk {
    dir: tempfile::TempDir,
    image: PathBuf,
    server: NbdServer,
}

impl Disk {
    fn start(client_uid: u32) -> Disk {
        let dir = tempfile::tempdir().expect("temp dir");
        let image = dir.path().join("disk.raw");
        let device = FileDevice::create(&image, SIZE).expect("image");
        let config = ServerConfig { dir: dir.path().to_path_buf(), name: "d-test".into(), client_uid, limits: None };
        let server = NbdServer::start(config, Arc::new(device)).expect("server");
        Disk { dir, image, server }
    }

    fn sock(&self) -> &Path {
        self.server.socket_path()
    }

    fn image_opts(&self) -> String {
        format!("driver=nbd,server.type=unix,server.path={}", self.sock().display())
    }
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: {tool} is not installed (apt-get install qemu-utils)");
    }
    found
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a blocking command off the runtime's threads; returns (success, stdout+stderr).
async fn run(mut cmd: Command) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = cmd.output().expect("spawn");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    })
    .await
    .expect("join")
}

async fn qemu_io(disk: &Disk, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.arg("--image-opts").arg(disk.image_opts());
    for x in cmds {
        c.arg("-c").arg(x);
    }
    let (ok, out) = run(c).await;
    assert!(ok, "qemu-io {cmds:?} failed:\n{out}");
    assert!(!out.contains("Pattern verification failed"), "qemu-io {cmds:?}:\n{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_writes_and_reads_back() {
    if !have("qemu-io") {
        return;
    }
    let disk = Disk::start(CLIENT_UID);
    qemu_io(&disk, &["write -P 0xab 0 1M", "read -P 0xab 0 1M", "write -P 0x5c -f 8M 64k", "flush"]).await;
    // A new connection (a new qemu-io) sees what the last one wrote; aio requests run
    // concurrently on one connection.
    qemu_io(
        &disk,
        &[
            "read -P 0x5c 8M 64k",
            "aio_write -P 0x11 16M 4k",
            "aio_write -P 0x22 20M 1M",
            "aio_write -P 0x33 32M 32M",
            "aio_flush",
            "read -P 0x11 16M 4k",
            "read -P 0x22 20M 1M",
            "read -P 0x33 32M 32M",
        ],
    )
    .await;
    // The bytes are in the file where the guest put them.
    let bytes = std::fs::read(&disk.image).expect("image");
    assert!(bytes[..1 << 20].iter().all(|&b| b == 0xab));
    assert!(bytes[1 << 20..8 << 20].iter().all(|&b| b == 0));
    assert!(bytes[8 << 20..(8 << 20) + (64 << 10)].iter().all(|&b| b == 0x5c));
    assert!(bytes[32 << 20..].iter().all(|&b| b == 0x33));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trim_and_write_zeroes_read_back_as_zeros() {
    if !have("qemu-io") {
        return;
    }
    let disk = Disk::start(CLIENT_UID);
    qemu_io(
        &disk,
        &[
            "write -P 0x77 0 4M",
            "discard 0 64k",
            "write -z 1M 128k",
            "write -z -u 2M 4k",
            "read -P 0 0 64k",
            "read -P 0x77 64k 960k",
            "read -P 0 1M 128k",
            "read -P 0x77 1152k 896k",
            "read -P 0 2M 4k",
            "read -P 0x77 2052k 2044k",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_img_convert_and_compare() {
    if !have("qemu-img") {
        return;
    }
    let disk = Disk::start(CLIENT_UID);
    // A source with data, holes and zeros, in 4 KiB-aligned pieces.
    let src = disk.dir.path().join("src.raw");
    let mut data = vec![0u8; SIZE as usize];
    let mut x: u32 = 12345;
    for (i, chunk) in data.chunks_mut(4096).enumerate() {
        if i % 7 == 3 {
            continue;
        }
        for b in chunk.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
    }
    std::fs::write(&src, &data).expect("source");
    let target = format!("nbd+unix:///?socket={}", disk.sock().display());
    let mut c = Command::new("qemu-img");
    c.args(["convert", "-n", "-f", "raw", "-O", "raw"]).arg(&src).arg(&target);
    let (ok, out) = run(c).await;
    assert!(ok, "convert: {out}");
    let mut c = Command::new("qemu-img");
    c.args(["compare", "-f", "raw", "-F", "raw"]).arg(&src).arg(&target);
    let (ok, out) = run(c).await;
    assert!(ok, "compare: {out}");
    // And a change is seen as one.
    data[5 << 20] ^= 1;
    std::fs::write(&src, &data).expect("source");
    let mut c = Command::new("qemu-img");
    c.args(["compare", "-f", "raw", "-F", "raw"]).arg(&src).arg(&target);
    let (ok, out) = run(c).await;
    assert!(!ok && out.contains("mismatch at offset 5242880"), "compare after a change: {out}");
}

/// Connects as `uid` (through a helper process) and returns how many bytes the server sent
/// before closing or 2 s passed: 18 is the greeting, 0 a refusal; `None` if connect failed.
async fn greeting_bytes_as(sock: &Path, uid: u32) -> Option<usize> {
    let script = "import socket,sys\n\
s=socket.socket(socket.AF_UNIX)\n\
try:\n s.connect(sys.argv[1])\nexcept OSError:\n print('connect-failed'); sys.exit(0)\n\
s.settimeout(2)\n\
n=0\n\
try:\n while True:\n  d=s.recv(100)\n  if not d: break\n  n+=len(d)\nexcept socket.timeout:\n pass\n\
print(n)\n";
    let mut c = Command::new("python3");
    c.arg("-c").arg(script).arg(sock).uid(uid).gid(uid);
    let (ok, out) = run(c).await;
    assert!(ok, "python3: {out}");
    out.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_client_uid_root_and_us_may_connect() {
    if !is_root() {
        eprintln!("SKIPPED: the peer-credential test needs root (it runs clients as other uids)");
        return;
    }
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed");
        return;
    }
    let disk = Disk::start(CLIENT_UID);
    // The directory must let the other uids reach the socket file at all.
    std::fs::set_permissions(disk.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let meta = std::fs::metadata(disk.sock()).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), CLIENT_UID);
    // The client's uid gets the greeting, and so do we (root).
    assert_eq!(greeting_bytes_as(disk.sock(), CLIENT_UID).await, Some(18));
    let mut s = UnixStream::connect(disk.sock()).expect("connect");
    let mut g = [0u8; 18];
    s.read_exact(&mut g).expect("greeting");
    drop(s);
    // Another uid cannot open the socket file (mode 0600) …
    assert_eq!(greeting_bytes_as(disk.sock(), STRANGER_UID).await, None);
    // … and if the file mode were lost, its credentials still turn it away before a byte.
    std::fs::set_permissions(disk.sock(), std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert_eq!(greeting_bytes_as(disk.sock(), STRANGER_UID).await, Some(0));
    // The client's uid still works after the refusal.
    assert_eq!(greeting_bytes_as(disk.sock(), CLIENT_UID).await, Some(18));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_as_the_client_uid() {
    if !is_root() || !have("qemu-io") {
        eprintln!("SKIPPED: running qemu-io as the client uid needs root");
        return;
    }
    let disk = Disk::start(CLIENT_UID);
    std::fs::set_permissions(disk.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let mut c = Command::new("qemu-io");
    c.arg("--image-opts").arg(disk.image_opts()).args(["-c", "write -P 0x42 0 64k", "-c", "read -P 0x42 0 64k"]);
    c.uid(CLIENT_UID).gid(CLIENT_UID);
    let (ok, out) = run(c).await;
    assert!(ok && !out.contains("verification failed"), "{out}");
}

// ---- raw sockets -------------------------------------------------------------------------

fn connect(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s
}

/// Reads until the server closes; the bytes it sent meanwhile. A reset counts as closed: a
/// server that hangs up with our unread bytes in its buffer resets the connection.
fn read_to_close(s: &mut UnixStream) -> Vec<u8> {
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return rest,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return rest,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

fn option(s: &mut UnixStream, opt: u32, data: &[u8]) {
    let mut m = proto::IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&opt.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    s.write_all(&m).expect("option");
}

/// Reads one option reply: (type, data).
fn option_reply(s: &mut UnixStream) -> (u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).expect("option reply");
    let len = u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as usize;
    let mut d = vec![0u8; len];
    s.read_exact(&mut d).expect("option reply data");
    (u32::from_be_bytes([h[12], h[13], h[14], h[15]]), d)
}

/// Greeting and flags; returns the handshake flags.
fn hello(s: &mut UnixStream) -> u16 {
    let mut g = [0u8; 18];
    s.read_exact(&mut g).expect("greeting");
    assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
    s.write_all(&3u32.to_be_bytes()).expect("flags");
    u16::from_be_bytes([g[16], g[17]])
}

/// A full handshake with NBD_OPT_GO for the default export.
fn go(sock: &Path) -> UnixStream {
    let mut s = connect(sock);
    hello(&mut s);
    option(&mut s, proto::OPT_GO, &[0, 0, 0, 0, 0, 0]);
    loop {
        let (kind, _) = option_reply(&mut s);
        match kind {
            proto::REP_INFO => {}
            proto::REP_ACK => return s,
            other => panic!("GO answered {other:#x}"),
        }
    }
}

fn request(s: &mut UnixStream, kind: u16, handle: u64, offset: u64, length: u32, payload: &[u8]) {
    let mut r = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
    r.extend_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(&kind.to_be_bytes());
    r.extend_from_slice(&handle.to_be_bytes());
    r.extend_from_slice(&offset.to_be_bytes());
    r.extend_from_slice(&length.to_be_bytes());
    r.extend_from_slice(payload);
    s.write_all(&r).expect("request");
}

/// Reads a simple reply: (errno, handle).
fn reply(s: &mut UnixStream) -> (u32, u64) {
    let mut r = [0u8; 16];
    s.read_exact(&mut r).expect("reply");
    assert_eq!(u32::from_be_bytes([r[0], r[1], r[2], r[3]]), proto::SIMPLE_REPLY_MAGIC);
    (
        u32::from_be_bytes([r[4], r[5], r[6], r[7]]),
        u64::from_be_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_handshakes_are_closed() {
    let disk = Disk::start(CLIENT_UID);
    let sock = disk.sock().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // Unknown client flags.
        let mut s = connect(&sock);
        let mut g = [0u8; 18];
        s.read_exact(&mut g).expect("greeting");
        s.write_all(&0x8000_0001u32.to_be_bytes()).expect("flags");
        assert!(read_to_close(&mut s).is_empty());
        // An option without the IHAVEOPT magic.
        let mut s = connect(&sock);
        hello(&mut s);
        s.write_all(&[0xee; 16]).expect("garbage");
        assert!(read_to_close(&mut s).is_empty());
        // Option data far over the limit: closed without reading it.
        let mut s = connect(&sock);
        hello(&mut s);
        let mut m = proto::IHAVEOPT.to_be_bytes().to_vec();
        m.extend_from_slice(&proto::OPT_GO.to_be_bytes());
        m.extend_from_slice(&u32::MAX.to_be_bytes());
        s.write_all(&m).expect("header");
        assert!(read_to_close(&mut s).is_empty());
        // Unsupported options are refused in the protocol's way, and the handshake goes on.
        let mut s = connect(&sock);
        hello(&mut s);
        option(&mut s, proto::OPT_STRUCTURED_REPLY, &[]);
        assert_eq!(option_reply(&mut s).0, proto::REP_ERR_UNSUP);
        option(&mut s, proto::OPT_STARTTLS, &[]);
        assert_eq!(option_reply(&mut s).0, proto::REP_ERR_UNSUP);
        option(&mut s, proto::OPT_LIST, &[]);
        let (kind, data) = option_reply(&mut s);
        assert_eq!((kind, &data[4..]), (proto::REP_SERVER, &b"d-test"[..]));
        assert_eq!(option_reply(&mut s).0, proto::REP_ACK);
        option(&mut s, proto::OPT_ABORT, &[]);
        assert_eq!(option_reply(&mut s).0, proto::REP_ACK);
        assert!(read_to_close(&mut s).is_empty());
        // EXPORT_NAME for another export: closed (the option has no error reply).
        let mut s = connect(&sock);
        hello(&mut s);
        option(&mut s, proto::OPT_EXPORT_NAME, b"d-other");
        assert!(read_to_close(&mut s).is_empty());
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let disk = Disk::start(CLIENT_UID);
    let sock = disk.sock().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut s = connect(&sock);
        // The greeting, then nothing from us: the server gives up (10 s) and closes.
        assert_eq!(read_to_close(&mut s).len(), 18);
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_einval_and_oversize_writes_close() {
    let disk = Disk::start(CLIENT_UID);
    let sock = disk.sock().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut s = go(&sock);
        // Misaligned read, read past the end, misaligned write (its payload is skipped):
        // EINVAL each, and the connection keeps working.
        request(&mut s, proto::CMD_READ, 1, 512, 4096, &[]);
        assert_eq!(reply(&mut s), (proto::EINVAL, 1));
        request(&mut s, proto::CMD_READ, 2, SIZE, 4096, &[]);
        assert_eq!(reply(&mut s), (proto::EINVAL, 2));
        request(&mut s, proto::CMD_WRITE, 3, 100, 4096, &[9u8; 4096]);
        assert_eq!(reply(&mut s), (proto::EINVAL, 3));
        request(&mut s, 77, 4, 0, 0, &[]);
        assert_eq!(reply(&mut s), (proto::EINVAL, 4));
        request(&mut s, proto::CMD_WRITE, 5, 4096, 4096, &[7u8; 4096]);
        assert_eq!(reply(&mut s), (0, 5));
        request(&mut s, proto::CMD_READ, 6, 4096, 4096, &[]);
        assert_eq!(reply(&mut s), (0, 6));
        let mut d = vec![0u8; 4096];
        s.read_exact(&mut d).expect("data");
        assert!(d.iter().all(|&b| b == 7));
        // A write over the maximum payload: EINVAL, then the server hangs up rather than
        // read what it was sent.
        request(&mut s, proto::CMD_WRITE, 7, 0, proto::MAX_PAYLOAD + 4096, &[0u8; 4096]);
        assert_eq!(reply(&mut s), (proto::EINVAL, 7));
        assert!(read_to_close(&mut s).is_empty());
        // A broken request magic closes the connection.
        let mut s = go(&sock);
        s.write_all(&[0u8; 28]).expect("garbage");
        assert!(read_to_close(&mut s).is_empty());
        // DISC ends it cleanly after the replies in flight.
        let mut s = go(&sock);
        request(&mut s, proto::CMD_FLUSH, 8, 0, 0, &[]);
        request(&mut s, proto::CMD_DISC, 9, 0, 0, &[]);
        assert_eq!(reply(&mut s), (0, 8));
        assert!(read_to_close(&mut s).is_empty());
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_replaces_the_old_one() {
    let disk = Disk::start(CLIENT_UID);
    let sock = disk.sock().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut old = go(&sock);
        request(&mut old, proto::CMD_WRITE, 1, 0, 4096, &[1u8; 4096]);
        assert_eq!(reply(&mut old), (0, 1));
        let mut new = go(&sock);
        // The old connection is closed; the new one sees what the old one wrote.
        assert!(read_to_close(&mut old).is_empty());
        request(&mut new, proto::CMD_READ, 2, 0, 4096, &[]);
        assert_eq!(reply(&mut new), (0, 2));
        let mut d = vec![0u8; 4096];
        new.read_exact(&mut d).expect("data");
        assert!(d.iter().all(|&b| b == 1));
    })
    .await
    .expect("join");
}

/// A file device whose advertised size the test moves, as a RAF volume's grows.
struct Growing {
    inner: FileDevice,
    size: std::sync::atomic::AtomicU64,
}

impl feitian_disk::BlockDevice for Growing {
    fn size(&self) -> u64 {
        self.size.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn read(&self, offset: u64, length: u32) -> feitian_disk::DeviceFuture<'_, bytes::Bytes> {
        self.inner.read(offset, length)
    }
    fn write(&self, offset: u64, data: bytes::Bytes) -> feitian_disk::DeviceFuture<'_, ()> {
        self.inner.write(offset, data)
    }
    fn write_zeroes(&self, offset: u64, length: u64) -> feitian_disk::DeviceFuture<'_, ()> {
        self.inner.write_zeroes(offset, length)
    }
    fn trim(&self, offset: u64, length: u64) -> feitian_disk::DeviceFuture<'_, ()> {
        self.inner.trim(offset, length)
    }
    fn flush(&self) -> feitian_disk::DeviceFuture<'_, ()> {
        self.inner.flush()
    }
}

/// GO's NBD_INFO_EXPORT size.
fn go_size(sock: &Path) -> (UnixStream, u64) {
    let mut s = connect(sock);
    hello(&mut s);
    option(&mut s, proto::OPT_GO, &[0, 0, 0, 0, 0, 0]);
    let mut size = None;
    loop {
        let (kind, data) = option_reply(&mut s);
        match kind {
            proto::REP_INFO if data[..2] == proto::INFO_EXPORT.to_be_bytes() => {
                size = Some(u64::from_be_bytes(data[2..10].try_into().expect("8 bytes")));
            }
            proto::REP_INFO => {}
            proto::REP_ACK => return (s, size.expect("NBD_INFO_EXPORT")),
            other => panic!("GO answered {other:#x}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_makes_the_client_reconnect_and_see_the_new_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = FileDevice::create(&dir.path().join("disk.raw"), SIZE).expect("image");
    let device = Arc::new(Growing { inner, size: (SIZE / 2).into() });
    let config =
        ServerConfig { dir: dir.path().to_path_buf(), name: "d-grow".into(), client_uid: CLIENT_UID, limits: None };
    let server = NbdServer::start(config, device.clone()).expect("server");
    let sock = server.socket_path().to_path_buf();
    let (mut old, size) = tokio::task::spawn_blocking({
        let sock = sock.clone();
        move || go_size(&sock)
    })
    .await
    .expect("join");
    assert_eq!(size, SIZE / 2);
    device.size.store(SIZE, std::sync::atomic::Ordering::SeqCst);
    server.disconnect();
    tokio::task::spawn_blocking(move || {
        assert!(read_to_close(&mut old).is_empty());
        let (mut new, size) = go_size(&sock);
        assert_eq!(size, SIZE);
        // The grown part is usable.
        request(&mut new, proto::CMD_WRITE, 1, SIZE - 4096, 4096, &[5u8; 4096]);
        assert_eq!(reply(&mut new), (0, 1));
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qos_limiter_paces_requests() {
    // 4 operations a second, a bucket of one second: 12 reads need at least 2 s beyond the
    // burst. Only that lower bound is checked (the limiter guarantees it; a slow machine
    // only adds to it).
    let dir = tempfile::tempdir().expect("temp dir");
    let device = FileDevice::create(&dir.path().join("disk.raw"), SIZE).expect("image");
    let limits = feitian_disk::qos::Limits { iops: 4, bytes_per_sec: 1 << 30 };
    let config = ServerConfig {
        dir: dir.path().to_path_buf(),
        name: "d-qos".into(),
        client_uid: CLIENT_UID,
        limits: Some(limits),
    };
    let server = NbdServer::start(config, Arc::new(device)).expect("server");
    let sock = server.socket_path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut s = go(&sock);
        let start = std::time::Instant::now();
        for h in 0..12 {
            request(&mut s, proto::CMD_READ, h, h * 4096, 4096, &[]);
        }
        // Flushes are not charged: this one overtakes the throttled reads.
        request(&mut s, proto::CMD_FLUSH, 100, 0, 0, &[]);
        let mut seen = Vec::new();
        for _ in 0..13 {
            let (errno, handle) = reply(&mut s);
            assert_eq!(errno, 0);
            if handle < 100 {
                let mut d = vec![0u8; 4096];
                s.read_exact(&mut d).expect("data");
            }
            seen.push(handle);
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1900), "12 operations at 4/s took only {elapsed:?}");
        // The flush did not wait for the reads' turn.
        assert_ne!(seen.last(), Some(&100), "replies: {seen:?}");
    })
    .await
    .expect("join");
}
