"""Disk transport benchmark: NBD beside vhost-user-blk, the two ways a per-disk server can hand a
disk to QEMU (issue 15 asks to choose by measuring). Prints Markdown.

The transport is what is compared, so everything else is the same on both sides:
- One reference server, `qemu-storage-daemon`, serving the same raw file (BENCH_TRANSPORT_SIZE
  MiB in a temporary directory under /var/tmp, filled with random bytes and read once before the
  runs) through the same block nodes (`file`, page cache, thread pool; `raw` on top), exported
  once as NBD on a unix socket and once as vhost-user-blk on a unix socket.
- The same guest: the built-in image's kernel, initrd and root disk (a qcow2 overlay, /dev/vda),
  booted by a bare `qemu-system-x86_64` (TCG unless feitian's KVM probe, kvm-probe.json beside
  the images, found KVM working; q35 and its memory in a shared memfd, which vhost-user needs,
  on both sides), with the disk under test as a second virtio disk, /dev/vdb: QEMU's NBD
  client (`-blockdev driver=nbd`, with feitian's `reconnect-delay`) under `virtio-blk-pci`, or
  `vhost-user-blk-pci` on a socket chardev (with `reconnect=1`, so that QEMU reconnects to a
  restarted server if it can).
- The same load, in the guest: bench/iotool.c (built here with `gcc -static` into the run's
  temporary directory and copied in over SSH; busybox has no fio): 4 KiB random reads and
  writes at queue depth 32, 1 MiB sequential reads and writes at queue depth 8, O_DIRECT,
  BENCH_TRANSPORT_SECONDS each; write runs end with an fsync inside the timed window.
- SSH reaches the guest as in bench/boot.py's bare boot: QEMU user networking (`restrict=on`,
  SSH forwarded from 127.0.0.1), the guest's key from a small metadata responder on
  `guestfwd`. No other network.

Per case it records the guest's throughput (I/O done / the whole run, final fsync included),
the host CPU time QEMU and the server used per GiB moved (/proc/PID/stat), and how busy the
guest's vCPU was (/proc/stat in the guest): under TCG the guest's CPU is likely the bottleneck
of both transports, and this says whether it was. BENCH_TRANSPORT_ROUNDS rounds, each booting one
guest per transport, the order alternating between rounds; medians. A case whose I/O has not
finished HANG_AFTER seconds after its planned end is reported as hung (with the guest's in-flight
count and the server's thread states) and that guest's remaining cases are skipped.

Then the reconnect experiment, once per transport: in a fresh guest a 4 KiB random-write load at
QD32 prints its completions every second; 4 s in, the server is killed (SIGKILL) and restarted
2 s later on the same socket. Every write carries a pattern of its block, and after the load
every block whose write was acknowledged is read back and compared (iotool's `verify`).
Reported: whether the load resumed, how long it stalled, I/O errors the guest saw, mismatches,
what the guest kernel printed meanwhile, and whether a block written after the restart reads back.

Needs qemu-system-x86_64, qemu-storage-daemon and qemu-img (Debian's qemu-system-x86 7.2), gcc
with static glibc, ssh, ssh-keygen and perl; no root. Run through scripts/bench
(`scripts/bench transport`). Environment (all optional):
  FEITIAN_IMAGE_CACHE       where the built-in image is (default <repo>/target/feitian-images;
                            the newest image in it is used)
  BENCH_TRANSPORT_SIZE      disk size in MiB (default 1024)
  BENCH_TRANSPORT_SECONDS   seconds per case (default 10)
  BENCH_TRANSPORT_ROUNDS    rounds (default 3)
"""
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
# The bare guest's network, metadata answer and SSH options, shared with the boot benchmark so
# that the two cannot drift apart.
from boot import (BARE_GUEST, BARE_HOST, BARE_HOSTNAME, BARE_INSTANCE, BARE_MAC, BARE_NET,  # noqa: E402
                  BARE_PREFIX, METADATA_RESPONDER, SSH_OPTS)
from feitian_harness import free_port  # noqa: E402

IMAGES = Path(os.environ.get("FEITIAN_IMAGE_CACHE") or ROOT / "target" / "feitian-images")
SIZE_MIB = int(os.environ.get("BENCH_TRANSPORT_SIZE", "1024"))
SECONDS = int(os.environ.get("BENCH_TRANSPORT_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_TRANSPORT_ROUNDS", "3"))
BOOT_TIMEOUT = 300.0
# As feitian's disks (crates/compute/src/qemu/disks.rs, RECONNECT_DELAY_SECS).
NBD_RECONNECT_DELAY = 300
GUEST_MIB = 512
MACHINE = ["-machine", "q35", "-smp", "1", "-m", str(GUEST_MIB),
           "-object", f"memory-backend-memfd,id=mem,size={GUEST_MIB}M,share=on", "-numa", "node,memdev=mem"]
TOOL = "/tmp/iotool"
DEVICE = "/dev/vdb"

# (label, iotool mode, block bytes, queue depth, unit of the headline number)
CASES = [
    ("4 KiB random read, QD32", "randread", 4096, 32, "IOPS"),
    ("4 KiB random write, QD32", "randwrite", 4096, 32, "IOPS"),
    ("1 MiB sequential read, QD8", "read", 1 << 20, 8, "MiB/s"),
    ("1 MiB sequential write, QD8", "write", 1 << 20, 8, "MiB/s"),
]
TRANSPORTS = ("nbd", "vhost-user-blk")

# The reconnect experiment's timeline (seconds).
RECONNECT_RUN, RECONNECT_KILL_AT, RECONNECT_DOWN = 20, 4.0, 2.0
# How long after the load's planned end it may take to come back before it is declared stuck.
RECONNECT_GRACE = 40.0
# A case not finished this long after its planned end is declared hung.
HANG_AFTER = 60


class Failed(Exception):
    pass


class Hung(Exception):
    """A case whose I/O did not finish in time: a result to report, not a reason to stop."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """User + system CPU time of process `pid` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def newest_image():
    """The newest built-in image under IMAGES (the one feitian would boot after a rebuild)."""
    found = []
    for d in IMAGES.glob("*/image.json"):
        meta = json.loads(d.read_text())
        if all((d.parent / f).exists() for f in ("vmlinuz", "initrd.img", "rootfs.qcow2")):
            found.append((meta.get("built_at", ""), d.parent, meta))
    if not found:
        raise Failed(f"no built-in guest image under {IMAGES} (the qemu tests build one; or set FEITIAN_IMAGE_CACHE)")
    _, path, meta = max(found, key=lambda t: t[0])
    return path, meta


class Procs:
    """Every process this run started, so that each is stopped by its pid even on failure."""

    def __init__(self):
        self.live = []

    def start(self, args, out):
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.live.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self):
        for proc in list(reversed(self.live)):
            self.stop(proc)


class Server:
    """qemu-storage-daemon exporting the image over one transport on `sock`."""

    def __init__(self, procs, work, image, transport):
        self.procs, self.work, self.image, self.transport = procs, work, image, transport
        self.sock = work / f"{transport}.sock"
        self.proc = None
        self.starts = 0

    def args(self):
        a = ["qemu-storage-daemon",
             "--blockdev", f"driver=file,node-name=file0,filename={self.image},cache.direct=off,aio=threads",
             "--blockdev", "driver=raw,node-name=disk0,file=file0"]
        if self.transport == "nbd":
            a += ["--nbd-server", f"addr.type=unix,addr.path={self.sock}",
                  "--export", "type=nbd,id=exp0,node-name=disk0,name=disk,writable=on"]
        else:
            a += ["--export", f"type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,"
                              f"addr.path={self.sock},writable=on"]
        return a

    def start(self):
        self.sock.unlink(missing_ok=True)
        self.starts += 1
        out = open(self.work / f"{self.transport}-server-{self.starts}.log", "wb")
        self.proc = self.procs.start(self.args(), out)
        out.close()
        end = time.monotonic() + 30
        while not self.sock.exists():
            if self.proc.poll() is not None:
                raise Failed(f"qemu-storage-daemon ({self.transport}) ended: {self.log()}")
            if time.monotonic() > end:
                raise Failed(f"qemu-storage-daemon ({self.transport}) made no socket in 30 s")
            time.sleep(0.05)

    def kill(self):
        self.procs.stop(self.proc)

    def log(self):
        return (self.work / f"{self.transport}-server-{self.starts}.log").read_text(errors="replace")[-2000:]


class Guest:
    """The built-in guest with the server's disk as /dev/vdb, reachable over SSH."""

    def __init__(self, procs, work, image_dir, meta, key, md_cmd, server, n):
        self.procs, self.work, self.key, self.server = procs, work, key, server
        self.name = f"{server.transport}-{n}"
        self.overlay = work / f"{self.name}.qcow2"
        self.console = work / f"{self.name}.console.log"
        self.port = free_port()
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(image_dir / "rootfs.qcow2"), str(self.overlay)], check=True, capture_output=True)
        append = (f"{meta['kernel_cmdline_base']} feitian.ip={BARE_GUEST}/{BARE_PREFIX} feitian.gw={BARE_HOST} "
                  f"feitian.mac={BARE_MAC} feitian.hostname={BARE_HOSTNAME}")
        netdev = (f"user,id=net0,net={BARE_NET},host={BARE_HOST},dhcpstart={BARE_GUEST},restrict=on,"
                  f"hostfwd=tcp:127.0.0.1:{self.port}-:22,"
                  f"guestfwd=tcp:100.100.100.200:80-cmd:{md_cmd.replace(',', ',,')}")
        if server.transport == "nbd":
            node = {"driver": "nbd", "node-name": "disk1", "server": {"type": "unix", "path": str(server.sock)},
                    "export": "disk", "reconnect-delay": NBD_RECONNECT_DELAY}
            disk = ["-blockdev", json.dumps(node), "-device", "virtio-blk-pci,drive=disk1,id=vd1"]
        else:
            disk = ["-chardev", f"socket,id=vu1,path={server.sock},reconnect=1",
                    "-device", "vhost-user-blk-pci,chardev=vu1,id=vd1"]
        # The root disk's device comes first: the guest names the disks in PCI order.
        self.args = ["qemu-system-x86_64", *MACHINE, *accel(), "-nodefaults", "-no-user-config",
                     "-display", "none", "-kernel", str(image_dir / "vmlinuz"),
                     "-initrd", str(image_dir / "initrd.img"), "-append", append,
                     "-blockdev", f"driver=qcow2,node-name=root,file.driver=file,file.filename={self.overlay}",
                     "-device", "virtio-blk-pci,drive=root,id=vd0,bootindex=1", *disk,
                     "-serial", f"file:{self.console}", "-device", "virtio-rng-pci",
                     "-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,mac={BARE_MAC},romfile="]
        self.proc = None

    def ssh(self, command, timeout=60, stdin=None, check=True):
        cmd = ["ssh", "-i", str(self.key), *SSH_OPTS, "-p", str(self.port), "root@127.0.0.1", command]
        out = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=stdin)
        if check and out.returncode != 0:
            raise Failed(f"{self.name}: `{command}` failed ({out.returncode}): "
                         f"{out.stdout.decode(errors='replace')} {out.stderr.decode(errors='replace')}")
        return out

    def ssh_popen(self, command):
        cmd = ["ssh", "-i", str(self.key), *SSH_OPTS, "-p", str(self.port), "root@127.0.0.1", command]
        return self.procs.start(cmd, subprocess.PIPE)

    def boot(self, tool):
        out = open(self.work / f"{self.name}.qemu.log", "wb")
        self.proc = self.procs.start(self.args, out)
        out.close()
        end = time.monotonic() + BOOT_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise Failed(f"{self.name}: QEMU ended: {(self.work / f'{self.name}.qemu.log').read_text()[-2000:]}")
            if time.monotonic() > end:
                raise Failed(f"{self.name}: no SSH within {BOOT_TIMEOUT:.0f} s")
            try:
                if self.ssh("true", timeout=15, check=False).returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)
        with open(tool, "rb") as fh:
            self.ssh(f"cat > {TOOL} && chmod +x {TOOL}", stdin=fh)
        size = int(self.ssh(f"cat /sys/block/{DEVICE[5:]}/size").stdout.split()[0]) * 512
        if size != SIZE_MIB << 20:
            raise Failed(f"{self.name}: {DEVICE} has {size} bytes, the export {SIZE_MIB << 20}")

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc)
        self.overlay.unlink(missing_ok=True)


def accel():
    """KVM only where feitian's own probe found it working (a /dev/kvm can exist and hang)."""
    try:
        works = json.loads((IMAGES / "kvm-probe.json").read_text()).get("kvm_works") is True
    except (OSError, ValueError):
        works = False
    if works and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,tb-size=64", "-cpu", "max"]


def guest_cpu(stat_line):
    """(busy, total) jiffies from the guest's /proc/stat `cpu` line."""
    v = [int(x) for x in stat_line.split()[1:]]
    idle = v[3] + v[4]  # idle + iowait: the vCPU had nothing to run
    return sum(v) - idle, sum(v)


def run_case(guest, server, case):
    label, mode, bs, qd, unit = case
    span = SIZE_MIB << 20
    q0, s0 = cpu_seconds(guest.proc.pid), cpu_seconds(server.proc.pid)
    t0 = time.monotonic()
    try:
        out = guest.ssh(f"head -1 /proc/stat; {TOOL} {mode} {DEVICE} {bs} {qd} {SECONDS} {span}; head -1 /proc/stat",
                        timeout=SECONDS + HANG_AFTER).stdout.decode()
    except subprocess.TimeoutExpired:
        raise Hung(diagnose(guest, server)) from None
    wall = time.monotonic() - t0
    q1, s1 = cpu_seconds(guest.proc.pid), cpu_seconds(server.proc.pid)
    lines = out.strip().splitlines()
    result = dict(re.findall(r"(\w+)=(\S+)", lines[1]))
    if result.get("errors") != "0":
        raise Failed(f"{guest.name}, {label}: the guest saw I/O errors: {lines[1]}")
    (b0, t0j), (b1, t1j) = guest_cpu(lines[0]), guest_cpu(lines[2])
    moved = int(result["bytes"])
    total_s = float(result["total_s"])
    gib = moved / (1 << 30)
    value = int(result["ops"]) / total_s if unit == "IOPS" else moved / total_s / (1 << 20)
    return {"value": value, "qemu_cpu_gib": (q1 - q0) / gib, "server_cpu_gib": (s1 - s0) / gib,
            "qemu_util": (q1 - q0) / wall, "guest_busy": (b1 - b0) / max(1, t1j - t0j)}


def diagnose(guest, server):
    """What the guest and the server show when a case hangs."""
    try:
        guest_says = guest.ssh(f"cat /sys/block/{DEVICE[5:]}/inflight; dmesg | tail -4", timeout=20,
                               check=False).stdout.decode(errors="replace")
    except subprocess.TimeoutExpired:
        guest_says = "(no answer over SSH)"
    inflight, *kernel = guest_says.strip().splitlines() or [""]
    states = sorted(Path(t, "stat").read_text().rsplit(")", 1)[1].split()[0]
                    for t in Path(f"/proc/{server.proc.pid}/task").iterdir()) if server.proc.poll() is None else []
    return {"inflight": " ".join(inflight.split()), "kernel": [l.split("] ", 1)[-1] for l in kernel],
            "server_alive": server.proc.poll() is None, "server_threads": "".join(states),
            "server_log": server.log().strip()[-300:],
            "qemu_log": (guest.work / f"{guest.name}.qemu.log").read_text(errors="replace").strip()[-300:]}


def reconnect(procs, work, image_dir, meta, key, md_cmd, disk, tool, transport):
    """Kills and restarts the server under a running write load; returns what the guest saw."""
    server = Server(procs, work, disk, transport)
    server.start()
    guest = Guest(procs, work, image_dir, meta, key, md_cmd, server, "reconnect")
    load = None
    try:
        guest.boot(tool)
        # Only what the kernel says from here on is about the restart.
        seen = int(guest.ssh("dmesg | wc -l").stdout.split()[0])
        load = guest.ssh_popen(f"{TOOL} randwrite {DEVICE} 4096 32 {RECONNECT_RUN} {SIZE_MIB << 20} tick verify; "
                               f"echo exit=$?")
        t0 = time.monotonic()
        time.sleep(RECONNECT_KILL_AT)
        server.kill()
        time.sleep(RECONNECT_DOWN)
        server.start()
        try:
            stdout, _ = load.communicate(timeout=RECONNECT_RUN + RECONNECT_GRACE - (time.monotonic() - t0))
            finished = True
        except subprocess.TimeoutExpired:
            load.kill()
            stdout, _ = load.communicate()
            finished = False
        out = stdout.decode(errors="replace")
        ticks = [int(x) for x in re.findall(r"^tick t=\S+ ops=(\d+)", out, re.M)]
        summary = dict(re.findall(r"(\w+)=(\S+)", next((l for l in out.splitlines() if l.startswith("ops=")), "")))
        exit_code = re.search(r"^exit=(\d+)", out, re.M)
        # Seconds with no completion at all (the server was down for RECONNECT_DOWN of them),
        # and whether completions came back after the last such second.
        zero = [i for i, n in enumerate(ticks) if n == 0]
        stalled = len(zero)
        resumed = bool(zero) and any(n > 0 for n in ticks[zero[-1] + 1:])
        dmesg = guest.ssh(f"dmesg | tail -n +{seen + 1} | tail -5", timeout=30,
                          check=False).stdout.decode(errors="replace").strip()
        # A fresh block written and read back after the restart (timeout: the device may hang).
        check = ("dd if=/dev/urandom of=/tmp/pat bs=4096 count=16 2>/dev/null && "
                 f"dd if=/tmp/pat of={DEVICE} bs=4096 seek=1000 oflag=direct conv=fsync 2>/dev/null && "
                 f"dd if={DEVICE} of=/tmp/back bs=4096 skip=1000 count=16 iflag=direct 2>/dev/null && "
                 "cmp /tmp/pat /tmp/back && echo readback-ok")
        try:
            readback = "readback-ok" in guest.ssh(check, timeout=30, check=False).stdout.decode()
        except subprocess.TimeoutExpired:
            readback = False
        return {"finished": finished, "exit": exit_code[1] if exit_code else None, "ticks": ticks,
                "errors": summary.get("errors"), "first_error": summary.get("first_error"),
                "verified": summary.get("verified"), "mismatches": summary.get("mismatches"),
                "stall_s": stalled, "resumed": resumed, "dmesg": dmesg, "readback": readback,
                "qemu_log": (work / f"{guest.name}.qemu.log").read_text(errors="replace").strip()[-600:]}
    finally:
        if load is not None:
            procs.stop(load)
        guest.stop()
        server.kill()


def make_disk(path):
    """SIZE_MIB of random bytes (reads read data, not holes), then read once (a warm page cache)."""
    with open(path, "wb") as fh:
        for _ in range(SIZE_MIB):
            fh.write(os.urandom(1 << 20))
        fh.flush()
        os.fsync(fh.fileno())
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def main():
    for tool in ("qemu-system-x86_64", "qemu-storage-daemon", "qemu-img", "gcc", "ssh", "ssh-keygen", "perl"):
        if shutil.which(tool) is None:
            sys.exit(f"the transport benchmark needs {tool}")
    image_dir, meta = newest_image()
    started = time.monotonic()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-transport-"))
    disk_dir = Path(tempfile.mkdtemp(prefix="bench-transport-", dir="/var/tmp"))
    procs = Procs()
    results = {t: [] for t in TRANSPORTS}
    hangs = []
    recon = {}
    try:
        tool = work / "iotool"
        subprocess.run(["gcc", "-O2", "-static", "-pthread", "-o", str(tool), str(ROOT / "bench" / "iotool.c")],
                       check=True)
        key = work / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        md = work / "metadata" / "latest" / "meta-data"
        (md / "public-keys" / "0").mkdir(parents=True)
        (md / "instance-id").write_text(BARE_INSTANCE)
        (md / "hostname").write_text(BARE_HOSTNAME)
        (md / "public-keys" / "0" / "openssh-key").write_text((work / "key.pub").read_text())
        (work / "metadata.pl").write_text(METADATA_RESPONDER)
        md_cmd = f"perl {work / 'metadata.pl'} {work / 'metadata'}"
        disk = disk_dir / "disk.raw"
        log(f"filling {disk} ({SIZE_MIB} MiB of random bytes) ...")
        make_disk(disk)
        for r in range(ROUNDS):
            order = TRANSPORTS if r % 2 == 0 else tuple(reversed(TRANSPORTS))
            for transport in order:
                server = Server(procs, work, disk, transport)
                server.start()
                guest = Guest(procs, work, image_dir, meta, key, md_cmd, server, r + 1)
                try:
                    t0 = time.monotonic()
                    guest.boot(tool)
                    log(f"round {r + 1}, {transport}: guest up in {time.monotonic() - t0:.1f} s")
                    row = {}
                    results[transport].append(row)
                    for case in CASES:
                        try:
                            row[case[0]] = run_case(guest, server, case)
                        except Hung as e:
                            # This guest's disk is stuck: the round's remaining cases for this
                            # transport are lost; the next guest and server start afresh.
                            hangs.append((r + 1, transport, case[0], e.args[0]))
                            row["_hung"] = case[0]
                            log(f"  {case[0]}: HUNG ({e.args[0]})")
                            break
                        c = row[case[0]]
                        log(f"  {case[0]}: {c['value']:.0f} {case[4]}, guest vCPU busy {c['guest_busy']:.0%}, "
                            f"QEMU {c['qemu_cpu_gib']:.1f} + server {c['server_cpu_gib']:.2f} CPU s/GiB")
                finally:
                    guest.stop()
                    server.kill()
        for transport in TRANSPORTS:
            log(f"reconnect experiment, {transport} ...")
            recon[transport] = reconnect(procs, work, image_dir, meta, key, md_cmd, disk, tool, transport)
            log(f"  {recon[transport]}")
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(disk_dir, ignore_errors=True)
    setup = {"elapsed": time.monotonic() - started, "load": (load_before, os.getloadavg()),
             "image": image_dir, "kernel": meta.get("kernel_release", "?")}
    report(results, hangs, recon, setup)


def med(rows, case, key):
    xs = [r[case][key] for r in rows if case in r]
    return statistics.median(xs) if xs else float("nan")


def report(results, hangs, recon, setup):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.machine())
    mem = next((int(l.split()[1]) // (1 << 20) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    version = re.search(r"version (\S+)", subprocess.run(["qemu-system-x86_64", "--version"],
                                                         capture_output=True, text=True).stdout)
    (l1, _, _), (l2, _, _) = setup["load"]
    acc = " ".join(accel())
    print(f"Disk transport: {ROUNDS} rounds (each boots one guest per transport, the order alternating), "
          f"{SECONDS} s per case, in one run of {setup['elapsed'] / 60:.1f} min on {os.cpu_count()} cores ({cpu}), "
          f"{mem} GiB memory; QEMU and qemu-storage-daemon {version[1] if version else '?'}, `{acc}`, "
          f"`{' '.join(MACHINE)}`; guest {setup['image']} (kernel {setup['kernel']}); "
          f"a {SIZE_MIB} MiB raw file under /var/tmp. Load average {l1:.2f} before, {l2:.2f} after.\n")
    print("Command: `scripts/bench transport`\n")
    print("| case | NBD | vhost-user-blk | ratio vhost-user-blk / NBD | guest vCPU busy NBD / vhost | "
          "QEMU CPU s/GiB NBD / vhost | server CPU s/GiB NBD / vhost | rounds NBD; vhost |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    n, v = results["nbd"], results["vhost-user-blk"]
    for label, _, _, _, unit in CASES:
        nv, vv = med(n, label, "value"), med(v, label, "value")
        def shown(r):
            if label in r:
                return f"{r[label]['value']:.0f}"
            return "hung" if r.get("_hung") == label else "skipped"

        rounds = "; ".join(", ".join(shown(r) for r in side) for side in (n, v))
        print(f"| {label} | {nv:.0f} {unit} | {vv:.0f} {unit} | **{vv / nv:.2f}** | "
              f"{med(n, label, 'guest_busy'):.0%} / {med(v, label, 'guest_busy'):.0%} | "
              f"{med(n, label, 'qemu_cpu_gib'):.1f} / {med(v, label, 'qemu_cpu_gib'):.1f} | "
              f"{med(n, label, 'server_cpu_gib'):.2f} / {med(v, label, 'server_cpu_gib'):.2f} | {rounds} |")
    print(f"\nQEMU's own CPU use during the cases (CPU s per wall s, medians): "
          + ", ".join(f"{label}: {med(n, label, 'qemu_util'):.2f} / {med(v, label, 'qemu_util'):.2f}"
                      for label, *_ in CASES) + " (NBD / vhost-user-blk).\n")
    if hangs:
        print(f"Cases that hung (no completion {HANG_AFTER} s after their planned end; the rest of that guest's "
              "cases were skipped, so some medians above have fewer rounds):\n")
        for rnd, t, label, d in hangs:
            print(f"- round {rnd}, {t}, {label}: guest's in-flight (reads writes) `{d['inflight']}`; "
                  f"server alive: {d['server_alive']}, its threads' states `{d['server_threads']}`; "
                  f"guest kernel: {'; '.join(d['kernel']) or 'nothing'}; "
                  f"server log: `{d['server_log'] or 'empty'}`; QEMU log: `{d['qemu_log'] or 'empty'}`")
        print()
    print(f"Reconnect: a 4 KiB random-write load at QD32 for {RECONNECT_RUN} s; the server killed (SIGKILL) "
          f"{RECONNECT_KILL_AT:.0f} s in and restarted {RECONNECT_DOWN:.0f} s later on the same socket.\n")
    print("| transport | load finished | guest I/O errors | seconds without a completion | completions per second | "
          "acknowledged blocks read back: verified / mismatched | a new write + read-back after | "
          "guest kernel says |")
    print("| --- | --- | --- | ---: | --- | --- | --- | --- |")
    for t in TRANSPORTS:
        r = recon[t]
        errors = r["errors"] if r["finished"] else "–"
        if r["errors"] not in (None, "0"):
            errors += f" ({r['first_error']})"
        dmesg = "; ".join(l.split("] ", 1)[-1] for l in r["dmesg"].splitlines()) or "nothing"
        print(f"| {t} | {'yes, exit ' + str(r['exit']) if r['finished'] else 'no (stuck; killed)'} | {errors} | "
              f"{r['stall_s']}{'' if r['resumed'] else ', never resumed'} | "
              f"{' '.join(str(x) for x in r['ticks'])} | {r['verified'] or '–'} / {r['mismatches'] or '–'} | "
              f"{'ok' if r['readback'] else 'FAILED'} | {dmesg} |")
    for t in TRANSPORTS:
        if recon[t]["qemu_log"]:
            print(f"\nQEMU's messages ({t}):\n\n```\n{recon[t]['qemu_log']}\n```")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
