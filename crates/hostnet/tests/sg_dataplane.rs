//! Security groups on real packets: the nftables of `feitian_hostnet::sg` must give exactly
//! the evaluator's answers.
//!
//! For every scenario of `feitian_secgroup::vectors` (and one more here for the protocols,
//! ranges and grants the vectors don't exercise) this builds the data plane for real: a VPC
//! namespace holding a bridge, one namespace per endpoint (each NIC, each outside address the
//! cases use) on a veth whose other end is a port of that bridge, and the compiled ruleset
//! loaded with `nft -f`. Each case then makes a real connection: tcp connects and moves a
//! byte each way, udp sends a datagram that the server echoes, icmp pings, gre sends a packet
//! and gets one back. The outcome must agree with the vector and with the evaluator.
//!
//! A second test forges frames from a NIC (another NIC's address, another MAC, ARP lies,
//! IPv6, a VLAN tag; and a real socket bound to a borrowed address) and checks that the
//! guard drops them, and that without the guard they would have arrived.
//!
//! Needs root, `ip` and `nft`; without them it prints `SKIPPED` and passes. Traffic stays in
//! the namespaces it creates, and every one is deleted, pass or fail.

use feitian_hostnet::sg::{self, Port};
use feitian_secgroup::vectors::{self, Case, GroupSpec, RuleSpec, Scenario};
use feitian_secgroup::{connection_allowed, Direction, Endpoint, Nic, Packet, Policy, Protocol, RuleInput, World};
use socket2::{Domain, Protocol as SockProtocol, SockRef, Socket, Type};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a probe waits for an answer before it calls the connection blocked.
const WAIT: Duration = Duration::from_secs(1);

// --- the environment ----------------------------------------------------------------------

/// Every namespace of this test run starts with this.
fn prefix() -> String {
    format!("ftsg{}", std::process::id())
}

/// Whether the test can run here; says loudly why not, once per test.
fn ready() -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    match READY.get_or_init(preflight) {
        Ok(()) => true,
        Err(why) => {
            eprintln!("\n*** SKIPPED: security-group data-plane test: {why} ***\n");
            false
        }
    }
}

fn preflight() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version")] {
        run(tool, &[arg], None).map_err(|e| format!("`{tool}` is not usable: {e}"))?;
    }
    // Also makes `ip` set up /var/run/netns once, before tests add namespaces in parallel.
    Netns::add(&format!("{}-probe", prefix())).map(drop).map_err(|e| format!("cannot create a namespace: {e}"))
}

/// Runs a command; its stdout, or an error with its stderr.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let what = || format!("`{program} {}`", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", what()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| format!("{}: writing stdin: {e}", what()))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{}: {e}", what()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{} failed: {}", what(), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A network namespace of this test, deleted on drop (with everything in it).
struct Netns {
    name: String,
}

impl Netns {
    fn add(name: &str) -> Result<Netns, String> {
        run("ip", &["netns", "add", name], None)?;
        let ns = Netns { name: name.to_string() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all, None)
    }

    fn nft(&self, script: &str) -> Result<String, String> {
        run("ip", &["netns", "exec", &self.name, "nft", "-f", "-"], Some(script))
    }

    /// Runs `f` on a thread inside this namespace. Sockets made there stay in it, and can be
    /// used from any thread afterwards.
    fn enter<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> Result<T, String> {
        let path = format!("/var/run/netns/{}", self.name);
        let joined = std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path)?;
                // SAFETY: a valid namespace fd; setns only changes this (new) thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                f()
            })
            .join()
        });
        match joined {
            Ok(result) => result.map_err(|e| format!("in {}: {e}", self.name)),
            Err(_) => Err(format!("a thread in {} panicked", self.name)),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name], None) {
            eprintln!("warning: {e}");
        }
    }
}

/// The namespaces whose names start with `start` (should be none once a test is done).
fn namespaces_left(start: &str) -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(start)).collect()
        })
        .unwrap_or_default()
}

// --- a VPC with its endpoints ---------------------------------------------------------------

/// One end of a case: a namespace with one address on `eth0`, a port of the VPC's bridge.
struct Host {
    ns: Netns,
    ip: Ipv4Addr,
    mac: String,
    endpoint: Endpoint,
}

/// A scenario's data plane. Fields drop in order: the endpoints, then the VPC.
struct Lab {
    hosts: Vec<Host>,
    vpc: Netns,
    world: World,
    ports: Vec<Port>,
}

impl Lab {
    fn build(tag: &str, scenario: &Scenario) -> Result<Lab, String> {
        let world = scenario.world().map_err(|e| format!("{}: a rule is refused: {e}", scenario.name))?;
        let vpc = Netns::add(&format!("{}-{tag}", prefix()))?;
        vpc.ip(&["link", "add", "br0", "type", "bridge"])?;
        vpc.ip(&["link", "set", "br0", "up"])?;
        // Bridged IPv4 must meet the inet hooks; 1 is the default, but say it.
        vpc.enter(|| std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1"))
            .map_err(|e| format!("br_netfilter is needed, or bridged traffic bypasses nftables: {e}"))?;

        let mut ends: Vec<(Endpoint, Ipv4Addr)> = scenario.nics.iter().map(|n| (Endpoint::nic(&n.id), n.ip)).collect();
        for c in &scenario.cases {
            for e in [&c.src, &c.dst] {
                if let Endpoint::Outside(ip) = e {
                    if !ends.iter().any(|(seen, _)| seen == e) {
                        ends.push((e.clone(), *ip));
                    }
                }
            }
        }
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for (k, (endpoint, ip)) in ends.into_iter().enumerate() {
            let ns = Netns::add(&format!("{}-{tag}-{k}", prefix()))?;
            let port_if = format!("p{k}");
            let mac = match endpoint {
                Endpoint::Nic(_) => format!("00:16:3e:00:{:02x}:{:02x}", k / 256, k % 256),
                Endpoint::Outside(_) => format!("02:00:00:00:{:02x}:{:02x}", k / 256, k % 256),
            };
            vpc.ip(&["link", "add", &port_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name])?;
            ns.ip(&["link", "set", "eth0", "address", &mac])?;
            ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            // Everything is on-link, over the bridge.
            ns.ip(&["route", "add", "default", "dev", "eth0"])?;
            vpc.ip(&["link", "set", &port_if, "master", "br0", "up"])?;
            if let Endpoint::Nic(id) = &endpoint {
                ports.push(Port { nic_id: id.clone(), ip, mac: mac.clone(), ifname: port_if });
            }
            hosts.push(Host { ns, ip, mac, endpoint });
        }
        let lab = Lab { hosts, vpc, world, ports };
        // Twice: the script must replace what is there as well as start from nothing.
        lab.load()?;
        lab.load()?;
        Ok(lab)
    }

    fn ruleset(&self) -> String {
        sg::ruleset(&self.world, &self.ports)
    }

    fn load(&self) -> Result<(), String> {
        let script = self.ruleset();
        self.vpc.nft(&script).map(drop).map_err(|e| format!("{e}\n--- the script ---\n{script}"))
    }

    fn host(&self, e: &Endpoint) -> Result<&Host, String> {
        self.hosts.iter().find(|h| h.endpoint == *e).ok_or_else(|| format!("no namespace for {e:?}"))
    }
}

// --- probes -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The first packet passed and so did the replies.
    Connected,
    /// The first packet never arrived.
    Blocked,
    /// Anything else: the request arrived but no reply, or the probe itself failed.
    Broken(String),
}

impl Outcome {
    fn of(allowed: bool) -> Outcome {
        if allowed {
            Outcome::Connected
        } else {
            Outcome::Blocked
        }
    }
}

/// Bytes no other packet carries.
fn marker() -> Vec<u8> {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("feitian-sg-probe-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)).into_bytes()
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn probe(lab: &Lab, case: &Case) -> Outcome {
    let attempt = || -> Result<Outcome, String> {
        let src = lab.host(&case.src)?;
        let dst = lab.host(&case.dst)?;
        match case.packet.protocol {
            Protocol::Tcp => tcp_probe(src, dst, &case.packet),
            Protocol::Udp => udp_probe(src, dst, &case.packet),
            Protocol::Icmp => icmp_probe(src, dst),
            Protocol::Gre => gre_probe(src, dst),
            Protocol::All => Err("a packet's protocol is never all".into()),
        }
    };
    attempt().unwrap_or_else(Outcome::Broken)
}

fn ports_of(p: &Packet) -> Result<(SocketAddrV4, SocketAddrV4), String> {
    let dport = p.dst_port.ok_or("a case with ports but no destination port")?;
    Ok((SocketAddrV4::new(p.src_ip, p.src_port.unwrap_or(0)), SocketAddrV4::new(p.dst_ip, dport)))
}

/// A socket bound to `addr`.
///
/// Cases reuse addresses and ports, and another thread may be starting `ip` or `nft` at any
/// moment: between its fork and exec the child holds a copy of every descriptor, so the
/// previous case's socket can outlive its close by a few milliseconds. Hence tcp sockets
/// take SO_REUSEADDR (which only conflicts with a listening socket, and listeners are shut
/// down before they are dropped), udp sockets don't (two bound udp sockets would share the
/// datagrams), and a bind that finds the address in use waits for the straggler to go.
fn bound(kind: Type, protocol: SockProtocol, addr: SocketAddrV4) -> io::Result<Socket> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let s = Socket::new(Domain::IPV4, kind, Some(protocol))?;
        if kind == Type::STREAM {
            s.set_reuse_address(true)?;
        }
        match s.bind(&addr.into()) {
            Ok(()) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Stops a listener listening now, whoever else still holds its descriptor (see [`bound`]).
struct Listener(TcpListener);

impl Drop for Listener {
    fn drop(&mut self) {
        // On Linux, shutting down a listening socket takes it out of the listening state.
        let _ = SockRef::from(&self.0).shutdown(std::net::Shutdown::Both);
    }
}

fn tcp_probe(src: &Host, dst: &Host, p: &Packet) -> Result<Outcome, String> {
    let (from, to) = ports_of(p)?;
    let listener = dst.ns.enter(move || {
        let s = bound(Type::STREAM, SockProtocol::TCP, to)?;
        s.listen(8)?;
        s.set_nonblocking(true)?;
        Ok(Listener(TcpListener::from(s)))
    })?;
    let client = src.ns.enter(move || {
        let s = bound(Type::STREAM, SockProtocol::TCP, from)?;
        // Reset on close: no TIME_WAIT for a later case with the same tuple to trip on.
        s.set_linger(Some(Duration::ZERO))?;
        Ok(s)
    })?;
    match client.connect_timeout(&to.into(), WAIT) {
        Ok(()) => {}
        Err(e) if timed_out(&e) => return Ok(Outcome::Blocked),
        Err(e) => return Ok(Outcome::Broken(format!("connect: {e}"))),
    }
    let mut client = TcpStream::from(client);
    let mut exchange = || -> io::Result<()> {
        let deadline = Instant::now() + WAIT;
        let mut server = loop {
            match listener.0.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => return Err(e),
            }
        };
        server.set_nonblocking(false)?;
        SockRef::from(&server).set_linger(Some(Duration::ZERO))?;
        server.set_read_timeout(Some(WAIT))?;
        client.set_read_timeout(Some(WAIT))?;
        let mut byte = [0u8; 1];
        client.write_all(b"q")?;
        server.read_exact(&mut byte)?;
        server.write_all(b"a")?;
        client.read_exact(&mut byte)?;
        if byte == *b"a" {
            Ok(())
        } else {
            Err(io::Error::other("wrong byte back"))
        }
    };
    Ok(match exchange() {
        Ok(()) => Outcome::Connected,
        Err(e) => Outcome::Broken(format!("connected, but the exchange failed: {e}")),
    })
}

/// A blocking receive, again when a signal cut it short (`EINTR`: a signal for another of the
/// test's threads, such as a child process ending, is no verdict on the packet).
fn again_if_interrupted<T>(mut recv: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match recv() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn udp_probe(src: &Host, dst: &Host, p: &Packet) -> Result<Outcome, String> {
    let (from, to) = ports_of(p)?;
    let server = dst.ns.enter(move || bound(Type::DGRAM, SockProtocol::UDP, to).map(UdpSocket::from))?;
    let client = src.ns.enter(move || bound(Type::DGRAM, SockProtocol::UDP, from).map(UdpSocket::from))?;
    let request = marker();
    let io = |e: io::Error| format!("udp: {e}");
    client.send_to(&request, to).map_err(io)?;
    server.set_read_timeout(Some(WAIT)).map_err(io)?;
    let mut buf = [0u8; 1500];
    let peer = match again_if_interrupted(|| server.recv_from(&mut buf)) {
        Ok((n, peer)) if buf[..n] == request[..] => peer,
        Ok((_, peer)) => return Ok(Outcome::Broken(format!("an unexpected datagram from {peer}"))),
        Err(e) if timed_out(&e) => return Ok(Outcome::Blocked),
        Err(e) => return Err(io(e)),
    };
    if p.src_port.is_some() && peer != from.into() {
        return Ok(Outcome::Broken(format!("the datagram came from {peer}, not {from}")));
    }
    let reply = marker();
    server.send_to(&reply, peer).map_err(io)?;
    client.set_read_timeout(Some(WAIT)).map_err(io)?;
    Ok(match again_if_interrupted(|| client.recv(&mut buf)) {
        Ok(n) if buf[..n] == reply[..] => Outcome::Connected,
        Ok(_) => Outcome::Broken("an unexpected reply".into()),
        Err(e) => Outcome::Broken(format!("the request arrived, the reply did not: {e}")),
    })
}

/// A raw IPv4 socket for `protocol`; bound to `local` if given (the packets' source).
fn raw(protocol: i32, local: Option<Ipv4Addr>) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(SockProtocol::from(protocol)))?;
    if let Some(ip) = local {
        s.bind(&SocketAddrV4::new(ip, 0).into())?;
    }
    Ok(s)
}

/// Waits until `deadline` for an IPv4 packet from `from` whose payload `wanted` accepts.
fn wait_for(sock: &Socket, from: Ipv4Addr, deadline: Instant, wanted: impl Fn(&[u8]) -> bool) -> bool {
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        let Ok(n) = (&*sock).read(&mut buf) else { return false };
        // Raw IPv4 sockets hand over the IP header too.
        let packet = &buf[..n];
        if n < 20 {
            continue;
        }
        let header = usize::from(packet[0] & 0x0f) * 4;
        if Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]) == from
            && n >= header
            && wanted(&packet[header..])
        {
            return true;
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn icmp_probe(src: &Host, dst: &Host) -> Result<Outcome, String> {
    const ICMP: i32 = libc::IPPROTO_ICMP;
    // A watcher at the destination tells "request lost" from "reply lost".
    let watcher = dst.ns.enter(|| raw(ICMP, None))?;
    let sip = src.ip;
    let sock = src.ns.enter(move || raw(ICMP, Some(sip)))?;
    let payload = marker();
    let id = (std::process::id() as u16) ^ u16::from_be_bytes([payload[payload.len() - 2], payload[payload.len() - 1]]);
    let mut echo = vec![8, 0, 0, 0];
    echo.extend_from_slice(&id.to_be_bytes());
    echo.extend_from_slice(&1u16.to_be_bytes());
    echo.extend_from_slice(&payload);
    let sum = checksum(&echo);
    echo[2..4].copy_from_slice(&sum.to_be_bytes());
    sock.send_to(&echo, &SocketAddrV4::new(dst.ip, 0).into()).map_err(|e| format!("icmp: {e}"))?;
    let is = |kind: u8| move |icmp: &[u8]| icmp.len() >= 8 && icmp[0] == kind && icmp[4..6] == id.to_be_bytes();
    if wait_for(&sock, dst.ip, Instant::now() + WAIT, is(0)) {
        return Ok(Outcome::Connected);
    }
    if wait_for(&watcher, src.ip, Instant::now() + Duration::from_millis(10), is(8)) {
        return Ok(Outcome::Broken("the echo request arrived, the reply did not".into()));
    }
    Ok(Outcome::Blocked)
}

fn gre_probe(src: &Host, dst: &Host) -> Result<Outcome, String> {
    const GRE: i32 = 47;
    let server = dst.ns.enter(|| raw(GRE, None))?;
    let sip = src.ip;
    let client = src.ns.enter(move || raw(GRE, Some(sip)))?;
    // A GRE header (no flags, version 0, an experimental ethertype) and the marker.
    let packet = |m: &[u8]| [&[0u8, 0, 0x88, 0xb5][..], m].concat();
    let request = packet(&marker());
    let reply = packet(&marker());
    let io = |e: io::Error| format!("gre: {e}");
    client.send_to(&request, &SocketAddrV4::new(dst.ip, 0).into()).map_err(io)?;
    if !wait_for(&server, src.ip, Instant::now() + WAIT, |p| p == request) {
        return Ok(Outcome::Blocked);
    }
    server.send_to(&reply, &SocketAddrV4::new(src.ip, 0).into()).map_err(io)?;
    Ok(if wait_for(&client, dst.ip, Instant::now() + WAIT, |p| p == reply) {
        Outcome::Connected
    } else {
        Outcome::Broken("the request arrived, the reply did not".into())
    })
}

// --- the vectors on real packets ------------------------------------------------------------

struct Row {
    scenario: &'static str,
    case: &'static str,
    expected: bool,
    evaluator: Result<bool, String>,
    observed: Outcome,
}

impl Row {
    fn agrees(&self) -> bool {
        self.evaluator == Ok(self.expected) && self.observed == Outcome::of(self.expected)
    }
}

fn run_scenario(tag: &str, scenario: &Scenario) -> Result<Vec<Row>, String> {
    let lab = Lab::build(tag, scenario)?;
    Ok(scenario
        .cases
        .iter()
        .map(|case| Row {
            scenario: scenario.name,
            case: case.name,
            expected: case.allowed,
            evaluator: connection_allowed(&lab.world, &case.src, &case.dst, &case.packet).map_err(|e| e.to_string()),
            observed: probe(&lab, case),
        })
        .collect())
}

fn table(rows: &[Row]) -> String {
    let show = |b: bool| if b { "allow" } else { "deny" };
    let lines: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                if r.agrees() { "ok" } else { "MISMATCH" }.to_string(),
                r.scenario.to_string(),
                r.case.to_string(),
                show(r.expected).to_string(),
                r.evaluator.as_ref().map(|b| show(*b).to_string()).unwrap_or_else(|e| format!("error: {e}")),
                match &r.observed {
                    Outcome::Connected => "connected".to_string(),
                    Outcome::Blocked => "blocked".to_string(),
                    Outcome::Broken(why) => format!("broken: {why}"),
                },
            ]
        })
        .collect();
    let head = ["", "scenario", "case", "vector", "evaluator", "packets"].map(String::from);
    let mut widths = [0usize; 6];
    for l in std::iter::once(&head).chain(&lines) {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.len());
        }
    }
    std::iter::once(&head)
        .chain(&lines)
        .map(|l| {
            let cells: Vec<String> = l.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            cells.join(" | ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn vectors_agree_on_real_packets() {
    if !ready() {
        return;
    }
    let started = Instant::now();
    let mut scenarios = vectors::all();
    // This test's own scenario, in two halves: each VPC waits out its blocked probes one
    // after the other, so fewer cases per VPC finish sooner.
    let extra = protocols_and_ranges();
    let half = extra.cases.len() / 2;
    let mut second = extra.clone();
    second.name = "protocols-and-ranges-2";
    second.cases.drain(..half);
    let mut first = extra;
    first.cases.truncate(half);
    scenarios.extend([first, second]);
    // One VPC per scenario, all at once: the time goes into waiting out blocked probes.
    let results: Vec<Result<Vec<Row>, String>> = std::thread::scope(|s| {
        let running: Vec<_> =
            scenarios.iter().enumerate().map(|(i, sc)| s.spawn(move || run_scenario(&format!("v{i}"), sc))).collect();
        running
            .into_iter()
            .zip(&scenarios)
            .map(|(h, sc)| h.join().unwrap_or_else(|_| Err(format!("{}: the scenario's thread panicked", sc.name))))
            .collect()
    });
    let left = namespaces_left(&format!("{}-v", prefix()));

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => failures.push(e),
        }
    }
    let mismatches = rows.iter().filter(|r| !r.agrees()).count();
    eprintln!(
        "{}\n{} cases in {} scenarios, {mismatches} mismatches, {:.1?}",
        table(&rows),
        rows.len(),
        scenarios.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "scenarios that could not run:\n{}", failures.join("\n\n"));
    assert_eq!(mismatches, 0, "the data plane disagrees:\n{}", table(&rows));
    assert!(rows.len() >= scenarios.len(), "every scenario has cases");
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// Protocols, ranges and grants the spec's vectors don't exercise: `all` and `gre` rules,
/// CIDR blocks, port ranges, an ingress source-port range, a group peer with no members,
/// a cross-account grant by owner id, and an egress drop/accept tie.
fn protocols_and_ranges() -> Scenario {
    let (m1, m2) = (Ipv4Addr::new(192, 168, 8, 1), Ipv4Addr::new(192, 168, 8, 2));
    let (o1, o2) = (Ipv4Addr::new(198, 51, 100, 20), Ipv4Addr::new(203, 0, 113, 20));
    let rule = |direction, input| RuleSpec { direction, input };
    let base = RuleInput::default();
    let nic = |id: &str, owner: &str, ip, group: &str| Nic {
        id: id.into(),
        owner: owner.into(),
        ip,
        groups: vec![group.into()],
    };
    let case = |name, src: Endpoint, dst: Endpoint, packet, allowed| Case { name, src, dst, packet, allowed };
    let (e1, e2) = (Endpoint::nic("m1"), Endpoint::nic("m2"));
    let (x1, x2) = (Endpoint::Outside(o1), Endpoint::Outside(o2));
    let gre = |from, to| Packet { protocol: Protocol::Gre, ..Packet::icmp(from, to) };
    Scenario {
        name: "protocols-and-ranges",
        summary: "This test's own: all/gre, ranges, source ports, empty groups, owner ids.",
        groups: vec![
            GroupSpec {
                id: "sg-m",
                owner: "A",
                inner_policy: Policy::Drop,
                rules: vec![
                    rule(
                        Direction::Ingress,
                        RuleInput {
                            ip_protocol: Some("all"),
                            port_range: Some("-1/-1"),
                            source_cidr_ip: Some("198.51.100.0/24"),
                            priority: Some("50"),
                            ..base
                        },
                    ),
                    rule(
                        Direction::Ingress,
                        RuleInput {
                            ip_protocol: Some("gre"),
                            port_range: Some("-1/-1"),
                            source_cidr_ip: Some("198.51.100.20"),
                            policy: Some("drop"),
                            priority: Some("10"),
                            ..base
                        },
                    ),
                    rule(
                        Direction::Ingress,
                        RuleInput {
                            ip_protocol: Some("udp"),
                            port_range: Some("1000/2000"),
                            source_port_range: Some("53/53"),
                            source_cidr_ip: Some("0.0.0.0/0"),
                            priority: Some("5"),
                            ..base
                        },
                    ),
                    rule(
                        Direction::Ingress,
                        RuleInput {
                            ip_protocol: Some("tcp"),
                            port_range: Some("8000/8100"),
                            source_group_id: Some("sg-empty"),
                            ..base
                        },
                    ),
                    rule(
                        Direction::Ingress,
                        RuleInput {
                            ip_protocol: Some("icmp"),
                            port_range: Some("-1/-1"),
                            source_group_id: Some("sg-m2"),
                            source_group_owner_id: Some("B"),
                            ..base
                        },
                    ),
                    rule(
                        Direction::Egress,
                        RuleInput {
                            ip_protocol: Some("all"),
                            port_range: Some("-1/-1"),
                            dest_cidr_ip: Some("203.0.113.0/24"),
                            policy: Some("drop"),
                            ..base
                        },
                    ),
                    rule(
                        Direction::Egress,
                        RuleInput {
                            ip_protocol: Some("tcp"),
                            port_range: Some("22/22"),
                            dest_cidr_ip: Some("203.0.113.20"),
                            ..base
                        },
                    ),
                ],
            },
            GroupSpec { id: "sg-m2", owner: "B", inner_policy: Policy::Accept, rules: vec![] },
            GroupSpec { id: "sg-empty", owner: "A", inner_policy: Policy::Accept, rules: vec![] },
        ],
        nics: vec![nic("m1", "A", m1, "sg-m"), nic("m2", "B", m2, "sg-m2")],
        cases: vec![
            case("o1 -> m1 tcp/5555 all from a /24", x1.clone(), e1.clone(), Packet::tcp(o1, 40000, m1, 5555), true),
            case("o1 -> m1 udp/5555 all from a /24", x1.clone(), e1.clone(), Packet::udp(o1, 40000, m1, 5555), true),
            case("o1 -> m1 icmp all from a /24", x1.clone(), e1.clone(), Packet::icmp(o1, m1), true),
            case("o1 -> m1 gre drop/10 beats all/50", x1.clone(), e1.clone(), gre(o1, m1), false),
            case("o2:53 -> m1 udp/1500 source port", x2.clone(), e1.clone(), Packet::udp(o2, 53, m1, 1500), true),
            case(
                "o2:54 -> m1 udp/1500 wrong source port",
                x2.clone(),
                e1.clone(),
                Packet::udp(o2, 54, m1, 1500),
                false,
            ),
            case("o2:53 -> m1 udp/2001 above the range", x2.clone(), e1.clone(), Packet::udp(o2, 53, m1, 2001), false),
            case("o2:53 -> m1 tcp/1500 udp rule only", x2.clone(), e1.clone(), Packet::tcp(o2, 53, m1, 1500), false),
            case("m2 -> m1 tcp/8000 empty group peer", e2.clone(), e1.clone(), Packet::tcp(m2, 40000, m1, 8000), false),
            case("m2 -> m1 icmp grant by owner id", e2.clone(), e1.clone(), Packet::icmp(m2, m1), true),
            case("m2 -> m1 udp/53 no rule, inner drop", e2.clone(), e1.clone(), Packet::udp(m2, 40000, m1, 53), false),
            case(
                "m1 -> o2 tcp/22 egress drop before accept",
                e1.clone(),
                x2.clone(),
                Packet::tcp(m1, 40000, o2, 22),
                false,
            ),
            case("m1 -> o1 tcp/22 egress default allow", e1.clone(), x1.clone(), Packet::tcp(m1, 40000, o1, 22), true),
            case("m1 -> o1 gre egress default allow", e1.clone(), x1.clone(), gre(m1, o1), true),
            case("m1 -> m2 udp/53 m2 default deny", e1, e2.clone(), Packet::udp(m1, 40000, m2, 53), false),
            case("o1 -> m2 gre default deny", x1, e2, gre(o1, m2), false),
        ],
    }
}

// --- anti-spoofing ------------------------------------------------------------------------

/// Linux's `PACKET_OUTGOING` (`<linux/if_packet.h>`).
const PACKET_OUTGOING: u8 = 4;

/// An `AF_PACKET` socket on one interface: sends raw frames, sees incoming ones.
struct Wire {
    fd: OwnedFd,
}

impl Wire {
    /// Must run inside the interface's namespace.
    fn open(ifname: &str) -> io::Result<Wire> {
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(all)) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sockaddr_ll is plain data; zero is a valid value for every field.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = index as i32;
        // SAFETY: addr is a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Wire { fd })
    }

    fn send(&self, frame: &[u8]) -> Result<(), String> {
        // SAFETY: frame is a valid buffer of its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(format!("sending a frame: {}", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The frames that arrive (not those sent) until `deadline`.
    fn incoming_until(&self, deadline: Instant) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || SockRef::from(&self.fd).set_read_timeout(Some(left)).is_err() {
                return frames;
            }
            // SAFETY: as above; from is a sockaddr_ll-sized out buffer.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                return frames;
            }
            if from.sll_pkttype != PACKET_OUTGOING {
                frames.push(buf[..n as usize].to_vec());
            }
        }
    }
}

fn mac(s: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(s.split(':')) {
        *o = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    out
}

fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src[..], &ethertype.to_be_bytes()[..], payload].concat()
}

/// An IPv4 UDP packet with a correct header checksum (br_netfilter drops bad ones) and no
/// UDP checksum.
fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp_len = (8 + payload.len()) as u16;
    ip.extend_from_slice(&40001u16.to_be_bytes());
    ip.extend_from_slice(&7000u16.to_be_bytes());
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    ip
}

/// An ARP reply "`spa` is at `sha`", with `trailer` after it (as Ethernet padding).
fn arp_reply(sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr, trailer: &[u8]) -> Vec<u8> {
    let head = [0, 1, 0x08, 0x00, 6, 4, 0, 2];
    [&head[..], &sha[..], &spa.octets()[..], &tha[..], &tpa.octets()[..], trailer].concat()
}

/// A link-local IPv6 packet with no next header, carrying `payload`.
fn ipv6(payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[59, 64]);
    p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(payload);
    p
}

/// One forged (or honest) thing a NIC sends, and where it should arrive.
struct Forgery {
    name: &'static str,
    /// Arrives while the guard is loaded.
    with_guard: bool,
    /// Arrives with the guard table deleted; `None` where something else stops it too.
    without_guard: Option<bool>,
}

/// In the order [`forge_all`] sends them.
const FORGERIES: [Forgery; 10] = [
    Forgery { name: "ipv4 from its own MAC and address", with_guard: true, without_guard: Some(true) },
    Forgery { name: "ipv4 from ecs3's address", with_guard: false, without_guard: Some(true) },
    Forgery { name: "ipv4 from another MAC", with_guard: false, without_guard: Some(true) },
    // ecs2 admits no outside address: the groups drop this one even without the guard.
    Forgery { name: "ipv4 from an outside address", with_guard: false, without_guard: Some(false) },
    // The same packet in a VLAN tag: bridge-nf-filter-vlan-tagged is 0, so br_netfilter
    // doesn't hand tagged frames to the inet hooks; only the guard stops it.
    Forgery { name: "the same in a VLAN tag", with_guard: false, without_guard: Some(true) },
    Forgery { name: "arp naming its own MAC and address", with_guard: true, without_guard: Some(true) },
    Forgery { name: "arp claiming ecs3's address", with_guard: false, without_guard: Some(true) },
    Forgery { name: "arp naming another MAC", with_guard: false, without_guard: Some(true) },
    // Without the guard, br_netfilter hands IPv6 to the inet table, which drops it too.
    Forgery { name: "ipv6", with_guard: false, without_guard: None },
    Forgery { name: "udp socket bound to a borrowed address", with_guard: false, without_guard: Some(true) },
];

/// Sends every forgery from ecs1 towards ecs2 and returns which arrived at ecs2.
fn forge_all(lab: &Lab) -> Result<Vec<bool>, String> {
    let host = |id: &str| lab.host(&Endpoint::nic(id));
    let (ecs1, ecs2, ecs3) = (host("ecs1")?, host("ecs2")?, host("ecs3")?);
    let (m1, m2) = (mac(&ecs1.mac), mac(&ecs2.mac));
    let other_mac = mac("02:00:00:00:ee:ee");
    let rx = ecs2.ns.enter(|| Wire::open("eth0"))?;
    let tx = ecs1.ns.enter(|| Wire::open("eth0"))?;
    let (ip1, ip2, ip3) = (ecs1.ip, ecs2.ip, ecs3.ip);
    // The real-socket forgery: ecs1 holds ecs3's address and sends from it.
    let server = ecs2.ns.enter(move || bound(Type::DGRAM, SockProtocol::UDP, SocketAddrV4::new(ip2, 7000)))?;
    let client = ecs1.ns.enter(move || bound(Type::DGRAM, SockProtocol::UDP, SocketAddrV4::new(ip3, 7001)))?;

    let markers: Vec<Vec<u8>> = FORGERIES.iter().map(|_| marker()).collect();
    let outside = Ipv4Addr::new(203, 0, 113, 99);
    let tagged = |ip: Vec<u8>| [&[0x00, 0x05, 0x08, 0x00][..], &ip].concat();
    let frames = [
        ether(m2, m1, 0x0800, &ipv4_udp(ip1, ip2, &markers[0])),
        ether(m2, m1, 0x0800, &ipv4_udp(ip3, ip2, &markers[1])),
        ether(m2, other_mac, 0x0800, &ipv4_udp(ip1, ip2, &markers[2])),
        ether(m2, m1, 0x0800, &ipv4_udp(outside, ip2, &markers[3])),
        ether(m2, m1, 0x8100, &tagged(ipv4_udp(outside, ip2, &markers[4]))),
        ether(m2, m1, 0x0806, &arp_reply(m1, ip1, m2, ip2, &markers[5])),
        ether(m2, m1, 0x0806, &arp_reply(m1, ip3, m2, ip2, &markers[6])),
        ether(m2, m1, 0x0806, &arp_reply(other_mac, ip1, m2, ip2, &markers[7])),
        ether(m2, m1, 0x86dd, &ipv6(&markers[8])),
    ];
    for f in &frames {
        tx.send(f)?;
    }
    let last = FORGERIES.len() - 1;
    client.send_to(&markers[last], &SocketAddrV4::new(ip2, 7000).into()).map_err(|e| format!("udp: {e}"))?;

    let arrived = rx.incoming_until(Instant::now() + WAIT);
    let mut seen: Vec<bool> =
        markers[..last].iter().map(|m| arrived.iter().any(|f| f.windows(m.len()).any(|w| w == &m[..]))).collect();
    server.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| format!("udp: {e}"))?;
    let mut got = false;
    let mut buf = [0u8; 1500];
    while let Ok(n) = (&server).read(&mut buf) {
        got |= buf[..n] == markers[last][..];
    }
    seen.push(got);
    Ok(seen)
}

fn spoofing(tag: &str) -> Result<Vec<String>, String> {
    let lab = Lab::build(tag, &vectors::three_groups())?;
    let ecs1 = lab.host(&Endpoint::nic("ecs1"))?;
    let (ecs2_ip, ecs3_ip) = (lab.host(&Endpoint::nic("ecs2"))?.ip, lab.host(&Endpoint::nic("ecs3"))?.ip);
    let ecs2_mac = lab.host(&Endpoint::nic("ecs2"))?.mac.clone();
    // ecs1 borrows ecs3's address, and knows ecs2's MAC without asking (its ARP would be
    // dropped too, but then the IPv4 check would go untested).
    ecs1.ns.ip(&["addr", "add", &format!("{ecs3_ip}/32"), "dev", "eth0"])?;
    let ecs2_ip = ecs2_ip.to_string();
    ecs1.ns.ip(&["neigh", "replace", &ecs2_ip, "lladdr", &ecs2_mac, "dev", "eth0", "nud", "permanent"])?;

    let mut failures = Vec::new();
    let mut check = |phase: &str, seen: &[bool], want: &dyn Fn(&Forgery) -> Option<bool>| {
        for (f, got) in FORGERIES.iter().zip(seen) {
            if let Some(w) = want(f) {
                if w != *got {
                    let (want, saw) = if w { ("arrive", "was dropped") } else { ("be dropped", "arrived") };
                    failures.push(format!("{phase}: {}: should {want}, but {saw}", f.name));
                }
            }
        }
    };
    check("guard loaded", &forge_all(&lab)?, &|f| Some(f.with_guard));
    lab.vpc.nft(&format!("delete table bridge {}", sg::TABLE_GUARD))?;
    check("guard deleted", &forge_all(&lab)?, &|f| f.without_guard);
    lab.load()?;
    check("guard reloaded", &forge_all(&lab)?, &|f| Some(f.with_guard));

    // Teardown removes both tables, and tolerates their absence.
    lab.vpc.nft(&sg::teardown())?;
    lab.vpc.nft(&sg::teardown())?;
    let tables = run("ip", &["netns", "exec", &lab.vpc.name, "nft", "list", "tables"], None)?;
    if tables.contains(sg::TABLE_FILTER) || tables.contains(sg::TABLE_GUARD) {
        failures.push(format!("teardown left tables behind:\n{tables}"));
    }
    Ok(failures)
}

#[test]
fn the_guard_stops_spoofing() {
    if !ready() {
        return;
    }
    let result = spoofing("spoof");
    let left = namespaces_left(&format!("{}-spoof", prefix()));
    match result {
        Ok(failures) => assert!(failures.is_empty(), "anti-spoofing:\n{}", failures.join("\n")),
        Err(e) => panic!("the anti-spoofing lab could not run: {e}"),
    }
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

// --- scripts the vectors don't produce ----------------------------------------------------

/// Worlds and ports no vector has still give scripts nft accepts: no ports at all, ports that
/// fail closed (unknown NIC, unknown group, a moved address, a shared address, a bad MAC, an
/// unquotable interface name), ids that need sanitizing, group peers that can't match.
#[test]
fn unusual_rulesets_load() {
    if !ready() {
        return;
    }
    let ns = match Netns::add(&format!("{}-odd", prefix())) {
        Ok(ns) => ns,
        Err(e) => panic!("{e}"),
    };
    let mut world = match vectors::cross_account().world() {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    // A rule the API refuses but the evaluator can read: all protocols on ports 100-200.
    if let Some(g) = world.groups.get_mut("sg-a") {
        if let Some(mut r) = g.rules.first().cloned() {
            r.protocol = Protocol::All;
            r.port_range = feitian_secgroup::PortRange::new(100, 200).unwrap_or(r.port_range);
            r.source_port_range = feitian_secgroup::PortRange::new(1024, 65535);
            g.rules.push(r);
        }
    }
    world.add_nic(Nic {
        id: "eni-\"odd\" é".into(),
        owner: "A".into(),
        ip: Ipv4Addr::new(10, 9, 0, 1),
        groups: vec!["sg-a".into()],
    });
    world.add_nic(Nic {
        id: "lost".into(),
        owner: "A".into(),
        ip: Ipv4Addr::new(10, 9, 0, 2),
        groups: vec!["sg-gone".into()],
    });
    let port = Port::new::<[u8; 4]>;
    let ports = vec![
        port("a1", [192, 168, 4, 1], "00:16:3E:00:00:01", "t1"),
        port("b1", [192, 168, 4, 99], "00:16:3e:00:00:02", "t2"),
        port("c1", [192, 168, 4, 4], "00:16:3e:00:00:03", "t3"),
        port("b2-joined-later", [192, 168, 4, 4], "00:16:3e:00:00:04", "t4"),
        port("eni-\"odd\" é", [10, 9, 0, 1], "00:16:3e:00:00:05", "t5"),
        port("lost", [10, 9, 0, 2], "00:16:3e:00:00:06", "t6"),
        port("ghost", [10, 9, 0, 3], "not a mac", "t7"),
        port("ghost2", [10, 9, 0, 4], "00:16:3e:00:00:08", "t\"8"),
        port("ghost3", [10, 9, 0, 5], "00:16:3e:00:00:09", "t1"),
    ];
    let mut failures = Vec::new();
    for (what, script) in [
        ("no ports", sg::ruleset(&world, &[])),
        ("odd ports", sg::ruleset(&world, &ports)),
        ("teardown", sg::teardown()),
        ("odd ports again", sg::ruleset(&world, &ports)),
    ] {
        if let Err(e) = ns.nft(&script) {
            failures.push(format!("{what}: {e}\n{script}"));
        }
    }
    drop(ns);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let left = namespaces_left(&format!("{}-odd", prefix()));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
