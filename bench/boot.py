"""Boot benchmark: `RunInstances` -> SSH reachable on feitian, beside booting the same kernel,
initrd and root disk with a bare `qemu-system-x86_64` command line to the same point, in one
run; prints Markdown.

- feitian: one `feitian up` on the qemu driver (its own EIP pool, 198.18.88.0/24), one account
  with a VPC, a vSwitch, a security group allowing tcp 22 and a key pair (tests/sdk's Net).
  Each sample is timed from just before the `RunInstances` call (ecs.t5-lc1m1.small, the
  built-in image) until `ssh -i key root@EIP true` first succeeds; `AllocateEipAddress` and
  `AssociateEipAddress` run right after RunInstances, inside the timed window (a user needs the
  EIP to get in). Then the instance is deleted (Force) and the sample waits until its QEMU, its
  directory and the VPC's namespace are gone, and releases the EIP: every sample starts from a
  VPC with no instance on the host, as a user's first instance in a VPC does.
- bare: the kernel, initrd and root image feitian's instance booted (read from that QEMU's own
  command line), with the same -machine, -accel, -cpu, -smp, -m and NIC options; its disk is a
  local file where feitian's is a RAF volume served over NBD (docs/disks.md): a fresh
  qcow2 overlay over the image's rootfs.qcow2 each time, as large as the instance's system
  disk (20 GiB: the guest grows its root file system to fill it on its first boot, in both
  cases), QEMU user-mode networking
  (`restrict=on`, SSH forwarded from 127.0.0.1) and the guest's address, gateway and MAC on the
  kernel command line, as feitian passes them. Timed from starting QEMU (the overlay is made
  just before, outside the window) until `ssh -p PORT -i key root@127.0.0.1 true` first
  succeeds; then that QEMU is killed by its pid and the overlay removed.
- Fairness of the metadata step: the guest fetches its SSH key from 100.100.100.200 before it
  starts dropbear (and waits up to ~17 s for it when nothing answers), so the bare boot gets a
  metadata answer too: QEMU's `guestfwd` hands each guest connection to 100.100.100.200:80 to a
  small perl responder that serves instance-id, hostname and the same public key (and 404 for
  user-data; feitian's instances get no UserData here either). QEMU takes guestfwd only for an
  address inside the user network, so that network is 100.64.0.0/10 and the guest is
  100.64.0.15/24 with gateway 100.64.0.1 (as crates/compute/tests/image.rs does).
- The samples alternate (feitian, bare, feitian, bare, ...), one guest at a time, so drift in
  the host's load hits both alike. The image files are read once first so that neither side
  pays for a cold page cache.
- Reachability is polled the same way for both: every 0.2 s a new TCP connection is opened
  (each kept up to 3 s, several in flight), and once one reads dropbear's banner,
  `ssh ... true` runs (again every 0.2 s until it succeeds). The end of the window is that ssh's
  success. Besides the totals, the per-step marks (QEMU process start from /proc, the guest's
  "feitian-guest: ssh ready" console line, first banner; and, asked over SSH after the window,
  the guest uptime at which rc.boot started acpid, just before it sets up the NIC, and dropbear,
  just after the metadata step) say where the time goes.

Needs root, QEMU, nftables, iproute2, ssh and perl, like tests/sdk/test_qemu_instances.py.
Run through scripts/bench (`scripts/bench boot`), which builds the release binaries and the
virtualenv. Environment (all optional):
  FEITIAN_BENCH_BIN_DIR  where feitian is (default $CARGO_TARGET_DIR/release, else target/release)
  BENCH_BOOTS            10 (boots of each kind)
  BENCH_BOOT_TIMEOUT     300 (seconds one boot may take before the run fails)
  BENCH_LOG_DIR          if set, feitian's log and every guest's console log are copied there
  FEITIAN_LOG            passed through to feitian (e.g. info,feitian_agent=debug)
"""
import os
import platform
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sdk"))
from feitian_harness import free_port  # noqa: E402

BIN_DIR = Path(os.environ.get("FEITIAN_BENCH_BIN_DIR")
               or Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release").resolve()
BOOTS = int(os.environ.get("BENCH_BOOTS", "10"))
BOOT_TIMEOUT = float(os.environ.get("BENCH_BOOT_TIMEOUT", "300"))
SYSTEM_DISK_GIB = 20  # the default SystemDisk.Size; the bare boot gets a disk as large
LOG_DIR = os.environ.get("BENCH_LOG_DIR")
EIP_POOL = "198.18.88.0/24"
READY = b"feitian-guest: ssh ready"
PROBE_EVERY, PROBE_KEEP = 0.2, 3.0
# The bare guest on QEMU's user network (see the docstring).
BARE_NET = "100.64.0.0/10"
BARE_HOST, BARE_GUEST, BARE_PREFIX = "100.64.0.1", "100.64.0.15", 24
BARE_MAC = "52:54:00:fe:b0:01"
BARE_INSTANCE = "i-benchbareboot"
BARE_HOSTNAME = "bench-bare"
# What the bare boot copies from feitian's QEMU command line (and every instance must share).
SAME = ("-machine", "-accel", "-cpu", "-smp", "-m", "-kernel", "-initrd")
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]

# One HTTP request on stdin/stdout (a guestfwd connection), answered from the files under the
# directory given: the bare guest's metadata service.
METADATA_RESPONDER = r"""
use strict;
use warnings;
my $root = shift;
binmode STDIN;
binmode STDOUT;
$| = 1;
my $req = <STDIN>;
exit 0 unless defined $req;
while (my $h = <STDIN>) { last if $h =~ /^\r?\n$/ }
my ($path) = $req =~ m{^GET\s+(/\S*)};
my $file = (defined $path && $path !~ /\.\./) ? "$root$path" : "";
my $body;
if ($file ne "" && -f $file && open(my $fh, '<', $file)) {
    local $/;
    $body = <$fh>;
    close $fh;
}
if (defined $body) {
    print "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " . length($body)
        . "\r\nConnection: close\r\n\r\n" . $body;
} else {
    print "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
}
"""


class Failed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def boottime():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def utc(mono):
    """A time.monotonic() instant as UTC wall time, as feitian's log writes it."""
    wall = time.time() - (time.monotonic() - mono)
    return time.strftime("%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"


def process_start(pid):
    """When process `pid` started, on CLOCK_BOOTTIME (10 ms resolution), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime


def qemu_args(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


def flag(args, name):
    return args[args.index(name) + 1] if name in args else None


# The image directory feitian boots from (its banner says it). A confined QEMU names its kernel,
# initrd and disk relative to its instance directory, so the paths come from here.
IMAGE_DIR = None


def ssh_cmd(key, host, port):
    return ["ssh", "-i", str(key), *SSH_OPTS, "-p", str(port), f"root@{host}", "true"]


def reach(host, port, key, t0, t0_boot, console, qemu_pid, alive=lambda: True):
    """Polls until `ssh root@host -p port true` works. Returns the marks, in seconds since t0:
    qemu (its process started), console (the guest's ready line), banner (dropbear's banner first
    read), ssh (the ssh command succeeded). `console` is the console log's path, `qemu_pid` a
    function returning the QEMU's pid once known."""
    marks = {}
    pending = {}  # socket -> when it was opened
    next_probe = next_ssh = 0.0
    try:
        while True:
            now = time.monotonic()
            if now - t0 > BOOT_TIMEOUT:
                raise Failed(f"no SSH at {host}:{port} within {BOOT_TIMEOUT:.0f} s (marks so far: {marks})")
            if not alive():
                raise Failed(f"the QEMU ended before SSH answered (marks so far: {marks})")
            if "qemu" not in marks:
                pid = qemu_pid()
                started = process_start(pid) if pid else None
                if started is not None:
                    marks["qemu"] = started - t0_boot
            if "console" not in marks:
                try:
                    if READY in Path(console).read_bytes():
                        marks["console"] = now - t0
                except OSError:
                    pass
            if "banner" not in marks:
                if now >= next_probe:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    s.connect_ex((host, port))
                    pending[s] = now
                    next_probe = now + PROBE_EVERY
                readable, _, _ = select.select(list(pending), [], [], 0.05)
                for s in readable:
                    try:
                        data = s.recv(64)
                    except OSError:
                        data = b""
                    if data.startswith(b"SSH-"):
                        marks["banner"] = time.monotonic() - t0
                        break
                    s.close()
                    del pending[s]
                for s, opened in list(pending.items()):
                    if time.monotonic() - opened > PROBE_KEEP:
                        s.close()
                        del pending[s]
                continue
            for s in pending:
                s.close()
            pending.clear()
            if now < next_ssh:
                time.sleep(min(0.05, next_ssh - now))
                continue
            try:
                ok = subprocess.run(ssh_cmd(key, host, port), capture_output=True, timeout=30).returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            if ok:
                marks["ssh"] = time.monotonic() - t0
                return marks
            next_ssh = time.monotonic() + PROBE_EVERY
    finally:
        for s in pending:
            s.close()


# In the guest, after the window: when acpid (started just before rc.boot configures the NIC)
# and dropbear (started right after the metadata step) started, in guest uptime.
GUEST_PROBE = ("for p in $(pidof acpid) $(cat /run/dropbear.pid); do cut -d' ' -f22 /proc/$p/stat; done")


def guest_marks(host, port, key):
    """Seconds of guest uptime at which acpid and dropbear started ({} if ssh fails)."""
    cmd = ssh_cmd(key, host, port)
    cmd[-1] = GUEST_PROBE
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        acpid, dropbear = (int(x) / 100 for x in out.stdout.split()[:2])  # USER_HZ is 100 on x86
        return {"g_acpid": acpid, "g_dropbear": dropbear}
    except (subprocess.TimeoutExpired, ValueError):
        return {}


def wait_until(cond, timeout, what):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise Failed(f"timed out waiting for {what}")
        time.sleep(0.1)


def keep(src, name):
    if LOG_DIR and Path(src).exists():
        Path(LOG_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, Path(LOG_DIR) / name)


class FeitianSide:
    def __init__(self, f, net):
        self.f, self.net = f, net
        self.args = None
        self.ns = Path("/var/run/netns") / f"{f.host_prefix()}-{net.vpc_id}"

    def boot(self, n):
        net, inst_dir = self.net, None
        t0_boot, t0 = boottime(), time.monotonic()
        [iid] = net.run(**{"SystemDisk.Size": str(SYSTEM_DISK_GIB)})
        api = time.monotonic() - t0
        e = net.vpc("AllocateEipAddress")
        net.vpc("AssociateEipAddress", AllocationId=e["AllocationId"], InstanceId=iid)
        eip = time.monotonic() - t0
        inst_dir = self.f.data_dir / "instances" / iid

        def pid():
            try:
                return int((inst_dir / "qemu.pid").read_text().strip())
            except (OSError, ValueError):
                return None

        log(f"  feitian #{n}: {iid}, EIP {e['EipAddress']}, RunInstances at {utc(t0)}")
        try:
            marks = reach(e["EipAddress"], 22, net.keyfile, t0, t0_boot, inst_dir / "console.log", pid)
            marks.update(api=api, eip=eip)
            marks.update(guest_marks(e["EipAddress"], 22, net.keyfile))
            args = qemu_args(pid())
            if self.args is None:
                self.args = args
            elif any(flag(args, k) != flag(self.args, k) for k in SAME):
                raise Failed(f"{iid}'s QEMU differs from the first instance's in {SAME}: {args}")
        finally:
            keep(inst_dir / "console.log", f"feitian-{n}-{iid}.console.log")
            self.delete(iid, e["AllocationId"], inst_dir)
        return marks

    def delete(self, iid, allocation, inst_dir):
        net = self.net
        try:
            net.wait(iid, "Running", timeout=120)
        except AssertionError:
            log(f"  {iid} did not report Running; deleting it anyway")
        end = time.monotonic() + 60
        while True:
            try:
                net.ecs("DeleteInstance", InstanceId=iid, Force=True)
                break
            except Exception as e:  # e.g. IncorrectInstanceStatus while it settles
                if time.monotonic() > end:
                    raise Failed(f"DeleteInstance {iid}: {e}")
                time.sleep(0.5)
        wait_until(lambda: not inst_dir.exists(), 120, f"{iid}'s QEMU and directory to go")
        wait_until(lambda: not self.ns.exists(), 60, f"the VPC namespace {self.ns.name} to go")
        net.vpc("ReleaseEipAddress", AllocationId=allocation)


class BareSide:
    def __init__(self, work, keyfile):
        self.work, self.keyfile = work, keyfile
        md = work / "metadata"
        (md / "latest" / "meta-data" / "public-keys" / "0").mkdir(parents=True)
        pub = subprocess.run(["ssh-keygen", "-y", "-f", str(keyfile)], capture_output=True, text=True, check=True)
        (md / "latest" / "meta-data" / "instance-id").write_text(BARE_INSTANCE)
        (md / "latest" / "meta-data" / "hostname").write_text(BARE_HOSTNAME)
        (md / "latest" / "meta-data" / "public-keys" / "0" / "openssh-key").write_text(pub.stdout)
        responder = work / "metadata.pl"
        responder.write_text(METADATA_RESPONDER)
        self.md_cmd = f"perl {responder} {md}"
        self.example = None

    def args(self, ref, overlay, console, port):
        """The bare command line: feitian's QEMU options for the machine, the boot and the disk,
        a user-mode NIC instead of the tap."""
        base = " ".join(w for w in flag(ref, "-append").split() if not w.startswith("feitian."))
        append = (f"{base} feitian.ip={BARE_GUEST}/{BARE_PREFIX} feitian.gw={BARE_HOST} "
                  f"feitian.mac={BARE_MAC} feitian.hostname={BARE_HOSTNAME}")
        netdev = (f"user,id=net0,net={BARE_NET},host={BARE_HOST},dhcpstart={BARE_GUEST},restrict=on,"
                  f"hostfwd=tcp:127.0.0.1:{port}-:22,"
                  f"guestfwd=tcp:100.100.100.200:80-cmd:{self.md_cmd.replace(',', ',,')}")
        # The reference disk is a local file (feitian's is a RAF volume over NBD since the
        # cloud-disk issue): a qcow2 overlay on the image, as feitian's disks were before.
        drive = f"file={overlay},if=virtio,format=qcow2,discard=unmap"
        return ["qemu-system-x86_64", "-machine", flag(ref, "-machine"), "-accel", flag(ref, "-accel"),
                "-cpu", flag(ref, "-cpu"), "-smp", flag(ref, "-smp"), "-m", flag(ref, "-m"),
                "-nodefaults", "-no-user-config", "-display", "none",
                "-kernel", str(IMAGE_DIR / "vmlinuz"), "-initrd", str(IMAGE_DIR / "initrd.img"), "-append", append,
                "-drive", drive, "-serial", f"file:{console}", "-device", "virtio-rng-pci",
                "-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,mac={BARE_MAC},romfile="]

    def boot(self, n, ref):
        rootfs = IMAGE_DIR / "rootfs.qcow2"
        overlay, console = self.work / f"bare-{n}.qcow2", self.work / f"bare-{n}.console.log"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(rootfs), str(overlay),
                        f"{SYSTEM_DISK_GIB}G"], check=True, capture_output=True)
        port = free_port()
        args = self.args(ref, overlay, console, port)
        if self.example is None:
            self.example = args
        stderr = open(self.work / f"bare-{n}.stderr", "wb")
        t0_boot, t0 = boottime(), time.monotonic()
        log(f"  bare #{n}: ssh on 127.0.0.1:{port}, QEMU started at {utc(t0)}")
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            marks = reach("127.0.0.1", port, self.keyfile, t0, t0_boot, console, lambda: proc.pid,
                          alive=lambda: proc.poll() is None)
            marks.update(guest_marks("127.0.0.1", port, self.keyfile))
        except Failed as e:
            raise Failed(f"{e}; QEMU's stderr: {(self.work / f'bare-{n}.stderr').read_text()[-1000:]}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            stderr.close()
            keep(console, f"bare-{n}.console.log")
            overlay.unlink(missing_ok=True)
            console.unlink(missing_ok=True)
        return marks


def other_qemus(mine=()):
    """QEMUs on this host that this run did not start (other people's tests add noise)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) not in mine:
            try:
                if Path(p / "comm").read_text().strip().startswith("qemu-system"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def warm(d):
    """Reads the image's files once, so that the first boot of either kind finds them cached."""
    for name in ("vmlinuz", "initrd.img", "rootfs.qcow2"):
        with open(d / name, "rb") as fh:
            while fh.read(1 << 20):
                pass


def main():
    os.environ["FEITIAN_BIN"] = str(BIN_DIR / "feitian")
    from qemu_helpers import WHY, Net, qemu_feitian
    if WHY:
        sys.exit(f"the boot benchmark needs root, QEMU, nftables, iproute2 and ssh: {WHY}")
    if shutil.which("perl") is None:
        sys.exit("the boot benchmark needs perl (the bare guest's metadata responder)")
    started = time.monotonic()
    load_before = os.getloadavg()
    others_before = other_qemus()
    work = Path(tempfile.mkdtemp(prefix="bench-boot-"))
    f, finish = None, None
    results = {"feitian": [], "bare": []}
    feitian_side = bare_side = None
    left = []
    try:
        log("starting feitian on the qemu driver ...")
        f, finish = qemu_feitian(EIP_POOL)
        net = Net(f)
        feitian_side, bare_side = FeitianSide(f, net), BareSide(work, net.keyfile)
        image = re.search(r"^compute driver: qemu \(\w+, image (\S+)\)", f.stdout(), re.M)
        if image is None:
            raise Failed(f"feitian does not run the qemu driver: {f.stdout()}")
        global IMAGE_DIR
        IMAGE_DIR = Path(image[1])
        warm(IMAGE_DIR)
        for n in range(1, BOOTS + 1):
            results["feitian"].append(feitian_side.boot(n))
            log(f"    -> {results['feitian'][-1]['ssh']:.2f} s")
            results["bare"].append(bare_side.boot(n, feitian_side.args))
            log(f"    -> {results['bare'][-1]['ssh']:.2f} s")
    except BaseException:
        if f is not None and f.proc is not None and f.stderr_path.exists():
            tail = f.stderr_path.read_text()[-3000:]
            if tail:
                log(f"feitian's stderr (end):\n{tail}")
        raise
    finally:
        if f is not None:
            keep(f.stderr_path, "feitian.stderr.log")
            log_dir = f.log_dir
            left = finish()
            shutil.rmtree(log_dir, ignore_errors=True)
            if feitian_side is not None:
                shutil.rmtree(feitian_side.net.keyfile.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if left:
        log(f"feitian left this on the host after shutdown: {left}")
    setup = {"elapsed": time.monotonic() - started, "load": (load_before, os.getloadavg()),
             "others": (len(others_before), len(other_qemus()))}
    report(results, feitian_side, bare_side, setup)
    if left:
        sys.exit(1)


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def report(results, feitian_side, bare_side, setup):
    ref = feitian_side.args
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.machine())
    mem = next((int(l.split()[1]) // (1 << 20) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    version = re.search(r"version (\S+)", version)
    image_dir = IMAGE_DIR
    kernel = re.search(r'"kernel_release"\s*:\s*"([^"]+)"', (image_dir / "image.json").read_text())
    accel = flag(ref, "-accel")
    fe, ba = [m["ssh"] for m in results["feitian"]], [m["ssh"] for m in results["bare"]]
    (fm, fmin, fmax), (bm, bmin, bmax) = stats(fe), stats(ba)
    ratio = fm / bm
    (l1, _, _), (l2, _, _) = setup["load"]
    print(f"Boot to SSH: {BOOTS} boots of each, alternating (feitian, bare, ...), one guest at a time, "
          f"in one run of {setup['elapsed'] / 60:.1f} min on {os.cpu_count()} cores ({cpu}), {mem} GiB memory; "
          f"QEMU {version[1] if version else '?'}, accel {accel.split(',')[0]} (`-accel {accel} -cpu {flag(ref, '-cpu')}`), "
          f"`-smp {flag(ref, '-smp')} -m {flag(ref, '-m')}` (ecs.t5-lc1m1.small as feitian sizes it on this host); "
          f"image {image_dir} (kernel {kernel[1] if kernel else '?'}). "
          f"Load average {l1:.2f} before, {l2:.2f} after; other QEMUs on the host: "
          f"{setup['others'][0]} before, {setup['others'][1]} after.\n")
    print("Command: `scripts/bench boot`" + (f" (BENCH_BOOTS={BOOTS})" if BOOTS != 10 else "") + "\n")
    print("| path | to | median s | min s | max s | samples s (in order) |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    print(f"| feitian: RunInstances, AllocateEipAddress, AssociateEipAddress | `ssh root@EIP true` works | "
          f"{fm:.2f} | {fmin:.2f} | {fmax:.2f} | {', '.join(f'{x:.1f}' for x in fe)} |")
    print(f"| bare `qemu-system-x86_64` (same kernel, initrd, image, accel, size; user-mode net) | "
          f"`ssh -p PORT root@127.0.0.1 true` works | {bm:.2f} | {bmin:.2f} | {bmax:.2f} | "
          f"{', '.join(f'{x:.1f}' for x in ba)} |")
    met = "met" if ratio <= 1.3 else "NOT met"
    print(f"\nratio of medians, feitian / bare: **{ratio:.2f}x** (aim at most 1.3x: {met})\n")

    print("Where the time goes (medians, seconds from each path's start):\n")
    print("| step | feitian | bare |")
    print("| --- | ---: | ---: |")
    rows = [("RunInstances answered", "api"), ("EIP allocated and associated", "eip"),
            ("QEMU process started", "qemu"), ('guest printed "feitian-guest: ssh ready"', "console"),
            ("first SSH banner read", "banner"), ("`ssh ... true` succeeded", "ssh")]

    def med(side, key):
        xs = [m[key] for m in results[side] if key in m]
        return f"{statistics.median(xs):.2f}" if xs else "–"

    for label, key in rows:
        print(f"| {label} | {med('feitian', key)} | {med('bare', key)} |")

    def span(side, a, b):
        xs = [m[b] - m[a] for m in results[side] if a in m and b in m]
        return f"{statistics.median(xs):.2f}" if xs else "–"

    print(f"| guest boot (QEMU start -> ready line) | {span('feitian', 'qemu', 'console')} | "
          f"{span('bare', 'qemu', 'console')} |")
    print(f"| in it, guest uptime when rc.boot started acpid (kernel, init, mounts) | {med('feitian', 'g_acpid')} | "
          f"{med('bare', 'g_acpid')} |")
    print(f"| in it, NIC set-up and metadata (acpid -> dropbear, guest clock) | "
          f"{span('feitian', 'g_acpid', 'g_dropbear')} | {span('bare', 'g_acpid', 'g_dropbear')} |")
    print(f"| ready line -> ssh works | {span('feitian', 'console', 'ssh')} | {span('bare', 'console', 'ssh')} |")
    example = list(bare_side.example)
    shown = []
    for a in example:
        a = re.sub(r"hostfwd=tcp:127\.0\.0\.1:\d+", "hostfwd=tcp:127.0.0.1:PORT", a)
        a = re.sub(r"-cmd:perl \S+ \S+", "-cmd:perl metadata.pl DIR", a)
        a = re.sub(r"file=[^,]*bare-\d+\.qcow2", "file=overlay.qcow2", a)
        a = re.sub(r"file:\S*bare-\d+\.console\.log", "file:console.log", a)
        shown.append(f"'{a}'" if re.search(r"[\s;|&()<>]", a) else a)
    print("\nThe bare boot (overlay: `qemu-img create -f qcow2 -F qcow2 -b "
          f"{image_dir}/rootfs.qcow2 overlay.qcow2 {SYSTEM_DISK_GIB}G`):\n")
    print("```\n" + " ".join(shown) + "\n```")


if __name__ == "__main__":
    main()
