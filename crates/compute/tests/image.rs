//! Builds the built-in guest image from Debian packages and boots it under QEMU (TCG): the
//! guest must configure its network from the kernel command line, take its hostname, SSH key
//! and user-data from a metadata service, accept SSH, run the user-data once per instance,
//! reboot and power off on request (also by the ACPI power button) and leave its disk clean.
//!
//! Needs root, `qemu-system-x86_64` and `apt-get` (else it prints `SKIPPED` and passes), plus
//! qemu-utils, e2fsprogs, openssh-client and perl (perl-base, always there on Debian). The
//! image is cached in `$FEITIAN_IMAGE_CACHE`, else `<target dir>/feitian-images`; a cached
//! image made from other guest scripts is rebuilt.
//!
//! The guest's network is QEMU user-mode networking with `restrict=on` (no way out but the
//! forwards below): SSH is forwarded from 127.0.0.1, and the guest's connections to
//! 100.100.100.200:80 go (guestfwd) through a per-connection perl relay to this test's
//! metadata server on 127.0.0.1. QEMU accepts guestfwd only for addresses inside the user
//! network, so that network is 100.64.0.0/10 (it contains 100.100.100.200) and the guest is
//! 100.64.0.15/24 with gateway 100.64.0.1: it reaches the metadata address through its default
//! route, as on a real host.

use feitian_compute::image::{self, GuestParams, ImageLayout};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INSTANCE_ID: &str = "i-feitianimagetest1";
const MD_HOSTNAME: &str = "md-host-1";
const CMDLINE_HOSTNAME: &str = "cmdline-host";
const MAC: &str = "52:54:00:fe:17:01";
const USER_DATA: &str = "#!/bin/sh\necho hello > /root/user-data-ran\necho ran >> /root/user-data-count\n\
echo user-data says hi\nexit 0\n";
const BOOT_DEADLINE: Duration = Duration::from_secs(180);
const POWEROFF_DEADLINE: Duration = Duration::from_secs(60);

/// A line on the real stderr, shown even when the test harness captures output.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from)).any(|d| d.join(tool).is_file())
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    ["qemu-system-x86_64", "apt-get"]
        .iter()
        .find(|t| !on_path(t))
        .map(|t| format!("{t} not found (apt-get install qemu-system-x86 apt)"))
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("FEITIAN_IMAGE_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("feitian-images"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---- the metadata service ------------------------------------------------------------------

/// A minimal HTTP/1.0 server for the metadata paths; it records the paths asked for.
struct Metadata {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

fn start_metadata(files: HashMap<String, String>) -> Metadata {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            seen.lock().unwrap().push(path.clone());
            let response = match files.get(&path) {
                Some(body) => format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    Metadata { port, requests }
}

// ---- the VM ------------------------------------------------------------------------------

/// A QEMU process, killed when dropped (also when the test fails).
struct Vm {
    child: Child,
    console: PathBuf,
    qmp: PathBuf,
    ssh_port: u16,
    started: Instant,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn boot(image: &ImageLayout, overlay: &Path, dir: &Path, tag: &str, md_port: u16) -> Vm {
    let manifest = image.read_manifest().unwrap();
    let cmdline = image::kernel_cmdline(
        &manifest.kernel_cmdline_base,
        &GuestParams {
            ip: Some((Ipv4Addr::new(100, 64, 0, 15), 24)),
            gateway: Some(Ipv4Addr::new(100, 64, 0, 1)),
            mac: Some(MAC.into()),
            hostname: Some(CMDLINE_HOSTNAME.into()),
        },
    );
    let console = dir.join(format!("console-{tag}.log"));
    let qmp = dir.join(format!("qmp-{tag}.sock"));
    let ssh_port = free_port();
    // One perl process per guest connection, relaying it to the metadata server.
    let relay = format!(
        "perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(q{{127.0.0.1:{md_port}}}) or exit 1; \
         while(<STDIN>){{print $s $_; last if /^\\r?\\n$/}} while(<$s>){{print STDOUT $_}}'"
    );
    let netdev = format!(
        "user,id=n0,net=100.64.0.0/10,host=100.64.0.1,dns=100.64.0.3,dhcpstart=100.64.0.15,restrict=on,\
         hostfwd=tcp:127.0.0.1:{ssh_port}-:22,guestfwd=tcp:{}:80-cmd:{}",
        image::METADATA_ADDR,
        relay.replace(',', ",,")
    );
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-m", "256", "-smp", "1", "-nographic", "-nodefaults", "-no-user-config"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(image.kernel())
        .arg("-initrd")
        .arg(image.initrd())
        .arg("-append")
        .arg(&cmdline)
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
        .arg("-netdev")
        .arg(netdev)
        // romfile=: no iPXE option ROM (seconds under TCG, and unused with -kernel).
        .args(["-device", &format!("virtio-net-pci,netdev=n0,mac={MAC},romfile=")])
        .args(["-device", "virtio-rng-pci"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("starting qemu-system-x86_64");
    eprintln!("booting {tag}: pid {}, ssh on 127.0.0.1:{ssh_port}, cmdline: {cmdline}", child.id());
    Vm { child, console, qmp, ssh_port, started: Instant::now() }
}

impl Vm {
    fn console_text(&self) -> String {
        std::fs::read(&self.console).map(|b| String::from_utf8_lossy(&b).replace('\r', "")).unwrap_or_default()
    }

    fn fail(&mut self, why: &str) -> ! {
        let mut stderr = String::new();
        if let Ok(Some(_)) = self.child.try_wait() {
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
        }
        panic!("{why}\n--- console ---\n{}\n--- qemu stderr ---\n{stderr}", self.console_text());
    }

    /// Waits until `line` appears on the console `count` times; returns the time since boot.
    fn wait_line(&mut self, line: &str, count: usize, deadline: Duration) -> Duration {
        loop {
            // (A line is matched at its end: firmware escapes may precede the first one.)
            if self.console_text().lines().filter(|l| l.trim_end().ends_with(line)).count() >= count {
                return self.started.elapsed();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("QEMU exited ({status}) before the console showed {line:?} ×{count}"));
            }
            if self.started.elapsed() > deadline {
                self.fail(&format!("no {line:?} ×{count} on the console within {deadline:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ssh(&mut self, key: &Path, command: &str) -> String {
        let mut last = String::new();
        for _ in 0..3 {
            let out = self.ssh_command(key, command).output().expect("running ssh (apt-get install openssh-client)");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            last = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr));
            if out.status.code() != Some(255) {
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        self.fail(&format!("ssh {command:?} failed: {last}"))
    }

    /// Runs a command that ends the connection (`reboot`, `poweroff`): its exit status says
    /// nothing, what the guest does next does.
    fn ssh_and_go(&self, key: &Path, command: &str) {
        let _ = self.ssh_command(key, command).output();
    }

    /// `ssh` into the guest (through the forwarded port) running `command`.
    fn ssh_command(&self, key: &Path, command: &str) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(key)
            .args(["-p", &self.ssh_port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR"])
            .arg("root@127.0.0.1")
            .arg(command)
            .stdin(Stdio::null());
        c
    }

    /// Sends `system_powerdown` (the ACPI power button) over QMP.
    fn powerdown(&mut self) {
        let mut s = UnixStream::connect(&self.qmp).unwrap_or_else(|e| panic!("QMP {}: {e}", self.qmp.display()));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("\"QMP\""), "QMP greeting: {line}");
        for command in ["qmp_capabilities", "system_powerdown"] {
            writeln!(s, "{{\"execute\":\"{command}\"}}").unwrap();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 {
                    panic!("QMP closed after {command}");
                }
                if line.contains("\"return\"") {
                    break;
                }
                assert!(!line.contains("\"error\""), "QMP {command}: {line}");
            }
        }
    }

    /// Waits for QEMU to exit by itself (the guest powered off).
    fn wait_exit(&mut self, deadline: Duration) -> Duration {
        let t = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "QEMU exited with {status}");
                return t.elapsed();
            }
            if t.elapsed() > deadline {
                self.fail(&format!("the guest did not power off within {deadline:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The overlay's file system is clean (unmounted or read-only at power-off, nothing to fix).
fn assert_disk_clean(overlay: &Path, dir: &Path) {
    let raw = dir.join("check.raw");
    run(Command::new("qemu-img").args(["convert", "-f", "qcow2", "-O", "raw"]).arg(overlay).arg(&raw));
    let out = Command::new(if on_path("e2fsck") { "e2fsck" } else { "/sbin/e2fsck" })
        .arg("-fn")
        .arg(&raw)
        .output()
        .expect("running e2fsck (apt-get install e2fsprogs)");
    let _ = std::fs::remove_file(&raw);
    assert!(
        out.status.success(),
        "the guest's disk is not clean after power-off: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn builtin_image_builds_boots_and_follows_the_guest_contract() {
    if let Some(why) = skip_reason() {
        say(&format!("\n*** SKIPPED: the built-in guest image test: {why} ***\n"));
        return;
    }
    let images = cache_dir();
    if image::is_built(&images) && !image::is_current(&images) {
        say("the cached image was made from other guest scripts: rebuilding it");
        std::fs::remove_dir_all(image::layout(&images).dir).unwrap();
    }

    // Build (or reuse), then again: the second call returns at once with the same image.
    let t = Instant::now();
    let layout = image::build(&images, &mut |s| eprintln!("image: {s}")).unwrap_or_else(|e| panic!("{e}"));
    let build_time = t.elapsed();
    assert!(image::is_built(&images) && image::is_current(&images));
    let manifest = layout.read_manifest().unwrap();
    let t = Instant::now();
    let again = image::build(&images, &mut |s| panic!("a built image was built again: {s}")).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "second build took {:?}", t.elapsed());
    assert_eq!(again, layout);
    assert_eq!(again.read_manifest().unwrap(), manifest);
    assert_eq!(layout, image::layout(&images));
    assert_eq!(manifest.kernel_cmdline_base, image::KERNEL_CMDLINE_BASE);
    assert!(manifest.kernel_package.name.starts_with("linux-image-"), "{manifest:?}");
    for p in [
        "busybox-static",
        "dropbear-bin",
        "openssh-client",
        "openssh-sftp-server",
        "libc6",
        &manifest.kernel_package.name,
    ] {
        assert!(manifest.packages.iter().any(|q| q.name == *p && !q.version.is_empty()), "{p} in {manifest:?}");
    }
    let size = |p: PathBuf| std::fs::metadata(p).unwrap().len();
    say(&format!(
        "image {} ({}): build {:.1} s; vmlinuz {} KiB, initrd.img {} KiB, rootfs.qcow2 {} KiB (virtual {} MiB)",
        layout.dir.display(),
        manifest.kernel_package.name,
        build_time.as_secs_f64(),
        size(layout.kernel()) / 1024,
        size(layout.initrd()) / 1024,
        size(layout.rootfs()) / 1024,
        manifest.rootfs_virtual_size >> 20
    ));

    // The instance's world: a key, metadata, an overlay on the image's root disk.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = dir.join("id_ed25519");
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "feitian-test", "-f"]).arg(&key));
    let public_key = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
    let md = start_metadata(HashMap::from([
        ("/latest/meta-data/instance-id".to_string(), INSTANCE_ID.to_string()),
        ("/latest/meta-data/hostname".to_string(), MD_HOSTNAME.to_string()),
        ("/latest/meta-data/public-keys/0/openssh-key".to_string(), public_key),
        ("/latest/user-data".to_string(), USER_DATA.to_string()),
    ]));
    let overlay = dir.join("overlay.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(layout.rootfs())
        .arg(&overlay));

    // First boot: metadata, SSH, user-data; then the ACPI power button.
    let mut vm = boot(&layout, &overlay, dir, "first", md.port);
    let ready = vm.wait_line(image::SSH_READY_LINE, 1, BOOT_DEADLINE);
    say(&format!("first boot: `{}` after {:.1} s (TCG)", image::SSH_READY_LINE, ready.as_secs_f64()));
    vm.wait_line(&format!("{}0", image::USER_DATA_EXIT_PREFIX), 1, BOOT_DEADLINE);
    assert_eq!(vm.ssh(&key, "cat /root/user-data-ran").trim(), "hello");
    assert_eq!(vm.ssh(&key, "hostname").trim(), MD_HOSTNAME);
    assert!(vm.console_text().contains("user-data says hi"), "user-data output on the console");
    assert!(vm.ssh(&key, "cat /var/log/user-data.log").contains("user-data says hi"));
    let addr = vm.ssh(&key, "ip -4 addr show; ip route");
    assert!(addr.contains("100.64.0.15/24") && addr.contains("default via 100.64.0.1"), "{addr}");
    let asked = md.requests.lock().unwrap().clone();
    for p in ["instance-id", "hostname", "public-keys/0/openssh-key", "user-data"] {
        assert!(asked.iter().any(|a| a.ends_with(p)), "the guest did not ask for {p}: {asked:?}");
    }
    vm.powerdown();
    let t = vm.wait_exit(POWEROFF_DEADLINE);
    say(&format!("first boot: powered off {:.1} s after system_powerdown", t.as_secs_f64()));
    let console = vm.console_text();
    assert!(console.contains("feitian-guest: power button pressed"), "{console}");
    assert!(console.contains("feitian-guest: shutting down"), "{console}");
    drop(vm);
    assert_disk_clean(&overlay, dir);

    // Second boot of the same disk: no user-data again; `reboot` and `poweroff` in the guest.
    let mut vm = boot(&layout, &overlay, dir, "second", md.port);
    let ready = vm.wait_line(image::SSH_READY_LINE, 1, BOOT_DEADLINE);
    say(&format!("second boot: `{}` after {:.1} s (TCG)", image::SSH_READY_LINE, ready.as_secs_f64()));
    vm.wait_line("feitian-guest: user-data already ran", 1, BOOT_DEADLINE);
    assert_eq!(vm.ssh(&key, "wc -l < /root/user-data-count").trim(), "1");
    assert_eq!(vm.ssh(&key, "cat /root/user-data-ran").trim(), "hello");
    assert!(!vm.console_text().contains("user-data exit"), "user-data ran again");
    vm.ssh_and_go(&key, "reboot");
    vm.wait_line(image::SSH_READY_LINE, 2, BOOT_DEADLINE * 2);
    vm.wait_line("feitian-guest: user-data already ran", 2, BOOT_DEADLINE * 2);
    assert_eq!(vm.ssh(&key, "wc -l < /root/user-data-count").trim(), "1");
    vm.ssh_and_go(&key, "poweroff");
    let t = vm.wait_exit(POWEROFF_DEADLINE);
    say(&format!("second boot: powered off {:.1} s after `poweroff`", t.as_secs_f64()));
    drop(vm);
    assert_disk_clean(&overlay, dir);
}
