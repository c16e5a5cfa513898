//! The public namespace and the host's one route to the EIP pool, on the real host: two
//! feitians (two data directories) asking for the same pool. The second is refused before it
//! makes anything, so a refused start leaves nothing of it behind.
//!
//! Needs root and `ip`; without them it prints `SKIPPED` and passes. It routes a pool from the
//! benchmarking range (198.18.0.0/15, never routed on the internet) into a namespace it makes,
//! and removes everything it made, also when it fails.

use feitian_hostnet::host::HostNet;
use std::io::BufRead;
use std::process::Command;

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) is not usable".into()),
    }
}

/// Whether a TCP connection from address `from` inside namespace `ns` to `addr` is accepted
/// within a second.
fn connects_from(ns: &str, from: &str, addr: std::net::SocketAddr) -> bool {
    let script = format!(
        "import socket,sys\ns=socket.socket()\ns.settimeout(1)\ns.bind(('{from}',0))\ntry:\n s.connect(('{}',{}))\nexcept OSError:\n sys.exit(1)\n",
        addr.ip(),
        addr.port()
    );
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A service of the host listening on every address is out of reach from the public
/// namespace (where guests' packets arrive), while the host still reaches into it.
fn guests_cannot_open_connections_into_the_host(net: &HostNet) {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("a host service");
    let port = listener.local_addr().expect("addr").port();
    let host_side: std::net::SocketAddr = format!("169.254.0.1:{port}").parse().expect("addr");
    // A pool address in the public namespace stands for a guest's EIP.
    let eip = "198.18.251.9";
    let added = Command::new("ip")
        .args(["netns", "exec", &net.public_ns(), "ip", "addr", "add", &format!("{eip}/32"), "dev", "lo"])
        .status()
        .expect("ip");
    assert!(added.success(), "cannot put a pool address in the public namespace");
    // A guest's packets reach the host from its EIP (translated in its VPC's namespace).
    assert!(!connects_from(&net.public_ns(), eip, host_side), "a guest opened a connection to a host service");
    // The host's own connections still work, and so do their replies through the veth: the
    // host reaches a service on that address.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.public_ns(), "python3", "-c"])
        .arg(format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('{eip}',{port}))\ns.listen()\nprint('up',flush=True)\nc,_=s.accept()\nc.close()\n"
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("a service in the public namespace");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its first line");
    assert_eq!(line.trim(), "up");
    let reached = std::net::TcpStream::connect_timeout(
        &format!("{eip}:{port}").parse().expect("addr"),
        std::time::Duration::from_secs(2),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(reached.is_ok(), "the host cannot reach into the public namespace: {reached:?}");
}

/// Removes what a `HostNet` made, whatever happens in the test.
struct TornDown<'a>(&'a HostNet);

impl Drop for TornDown<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.teardown() {
            eprintln!("teardown of {} failed: {e}", self.0.prefix());
        }
    }
}

#[test]
fn a_pool_routed_by_another_feitian_is_refused_before_anything_is_made() {
    if let Some(why) = skip_reason() {
        eprintln!("\n*** SKIPPED: public network test: {why} ***\n");
        return;
    }
    let dirs = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let pool = "198.18.251.0/24".parse().expect("pool");
    let first = HostNet::new(dirs.0.path(), pool);
    let second = HostNet::new(dirs.1.path(), pool);
    let _first_down = TornDown(&first);
    let _second_down = TornDown(&second);

    first.ensure_public().expect("the first feitian takes the pool");
    assert!(!first.leftovers().is_empty(), "the first feitian's public namespace and veth exist");
    first.ensure_public().expect("taking it again is idempotent");
    guests_cannot_open_connections_into_the_host(&first);

    let e = second.ensure_public().expect_err("the pool is routed by the first feitian");
    assert!(e.to_string().contains("already routes the EIP pool"), "{e}");
    assert_eq!(second.leftovers(), Vec::<String>::new(), "a refused start left objects behind");

    first.teardown().expect("teardown");
    assert_eq!(first.leftovers(), Vec::<String>::new());
    // With the first gone, the pool is free for the second.
    second.ensure_public().expect("the pool is free now");
}
