"""Snapshot benchmark (issue 16, done-when 8): a first snapshot of a disk with 1 GiB written,
beside a plain copy of as many bytes into OSS, in one run; then a second snapshot after 1 %
of the 10 GiB disk changed, beside the first. Prints Markdown.

- One `feitian up` (release build, qemu driver, EIP pool 198.18.93.0/24), one guest (the
  built-in image), a 10 GiB data disk (`cloud`) attached to it. The guest writes 1 GiB of
  random bytes at the start of the disk (made on the host, sent to the guest's `nc` over
  plain TCP, written by `dd ... conv=fsync`): random, so no two 1 MiB ranges are alike and
  content addressing saves nothing.
- First snapshot: timed from the `CreateSnapshot` call until `DescribeSnapshots` (polled every
  0.1 s) shows it `accomplished`: the pin, reading 1 GiB from the disk's RAF volume at the
  instant, SHA-256 of each 1 MiB range, storing 1024 block objects in the system bucket, the
  commit. Each round deletes the snapshot and waits until the sweeper has emptied the system
  bucket, so the next round stores every block again.
- The reference: `oss2`'s `put_object_from_file` of a 1 GiB file of random bytes (on the
  host, read once first so it comes from the page cache) into a bucket of the same feitian,
  through its edge: the same number of bytes into the same object store, by the plainest
  client path. Timed from the call to its return; the object is deleted after each round.
- Rounds (BENCH_SNAPSHOT_ROUNDS) alternate which goes first; the table shows medians. The
  ratio is the reference's time over the snapshot's (1.0: as fast as a plain copy; the aim
  is 0.7 or better).
- Second snapshot: after a full snapshot (kept), the guest writes 100 MiB of fresh random
  bytes (1 % of the disk, the same way) and a second snapshot is timed the same way; the table shows its
  time as a share of the first's (aim: 5 % or less) and the bytes each stored
  (DescribeSnapshotLinks' TotalSize).

Needs root, QEMU, nftables, iproute2 and ssh, like tests/sdk/test_qemu_snapshots.py. Run
through scripts/bench (`scripts/bench snapshot`), which builds the release binaries and the
virtualenv. Environment (all optional):
  FEITIAN_BENCH_BIN_DIR   where feitian is (default $CARGO_TARGET_DIR/release, else target/release)
  BENCH_SNAPSHOT_ROUNDS   3
"""
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sdk"))

BIN_DIR = Path(os.environ.get("FEITIAN_BENCH_BIN_DIR")
               or Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release").resolve()
ROUNDS = int(os.environ.get("BENCH_SNAPSHOT_ROUNDS", "3"))
EIP_POOL = "198.18.93.0/24"
ZONE = "cn-hangzhou-h"
MIB = 1 << 20
WRITTEN_MIB = 1024
DISK_GIB = 10
CHANGED_MIB = 100
SYSTEM_BUCKET = "feitian-system-cn-hangzhou"
# The guest receives the bytes to write on this port (nc), from the host.
DATA_PORT = 9000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wait_until(fn, timeout, what, pause=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(pause)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


class Bench:
    def __init__(self, f, net):
        from qemu_helpers import ssh_ok
        self.f, self.net, self.ssh_ok = f, net, ssh_ok
        (self.iid,) = net.run(Amount=1)
        self.ip = net.eip(self.iid)
        net.wait(self.iid, "Running")
        net.ecs("AuthorizeSecurityGroup", SecurityGroupId=net.sg, IpProtocol="tcp",
                PortRange=f"{DATA_PORT}/{DATA_PORT}", SourceCidrIp="0.0.0.0/0")
        self.disk = net.ecs("CreateDisk", ZoneId=ZONE, Size=DISK_GIB, DiskCategory="cloud")["DiskId"]
        self.wait_disk("Available")
        net.ecs("AttachDisk", DiskId=self.disk, InstanceId=self.iid)
        self.wait_disk("In_use")
        serial = self.disk.removeprefix("d-")[:20]
        self.dev = wait_until(lambda: self.device(serial), 120, "the data disk in the guest", pause=2)

    def sh(self, command, deadline=600):
        return self.ssh_ok(self.net, self.ip, command, deadline=deadline)

    def device(self, serial):
        out = self.sh("for d in /sys/block/vd*; do echo \"${d##*/} $(cat $d/serial 2>/dev/null)\"; done")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == serial:
                return parts[0]
        return None

    def wait_disk(self, want):
        def status():
            d = self.net.ecs("DescribeDisks", DiskIds=json.dumps([self.disk]))["Disks"]["Disk"]
            return d and d[0]["Status"] == want
        wait_until(status, 300, f"{self.disk} {want}", pause=0.5)

    def write(self, source, start_mib, mib):
        """Writes `mib` MiB of the host file `source` at `start_mib` of the guest's disk: sent
        over plain TCP to `nc` in the guest (a TCG guest makes random bytes at about 1 MiB/s,
        and SSH's ciphers are slow there too), written by dd and flushed."""
        from qemu_helpers import ssh_options
        import socket
        import subprocess
        guest = subprocess.Popen(
            ["ssh", *ssh_options(self.net), f"root@{self.ip}",
             f"nc -l -p {DATA_PORT} | dd of=/dev/{self.dev} bs={MIB} seek={start_mib} conv=fsync 2>/dev/null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def connect():
                try:
                    return socket.create_connection((self.ip, DATA_PORT), timeout=5)
                except OSError:
                    return None
            conn = wait_until(connect, 60, "the guest's nc to listen", pause=0.5)
            with conn, open(source, "rb") as f:
                left = mib * MIB
                while left:
                    chunk = f.read(min(left, MIB))
                    conn.sendall(chunk)
                    left -= len(chunk)
                conn.shutdown(socket.SHUT_WR)
            if guest.wait(timeout=1200) != 0:
                raise RuntimeError(f"writing in the guest failed: {guest.stderr.read().decode(errors='replace')}")
        finally:
            if guest.poll() is None:
                guest.kill()

    def snapshot(self):
        """(snapshot id, seconds from CreateSnapshot to accomplished)."""
        t0 = time.monotonic()
        sid = self.net.ecs("CreateSnapshot", DiskId=self.disk)["SnapshotId"]

        def done():
            s = self.net.ecs("DescribeSnapshots", SnapshotIds=json.dumps([sid]))["Snapshots"]["Snapshot"][0]
            if s["Status"] == "failed":
                raise RuntimeError(f"snapshot {sid} failed")
            return s["Status"] == "accomplished"
        wait_until(done, 1800, f"{sid} accomplished")
        return sid, time.monotonic() - t0

    def total_stored(self):
        links = self.net.ecs("DescribeSnapshotLinks", DiskIds=json.dumps([self.disk]))["SnapshotLinks"]["SnapshotLink"]
        return links[0]["TotalSize"] if links else 0

    def bucket_bytes(self):
        con = sqlite3.connect(f"file:{self.f.data_dir / 'meta.db'}?mode=ro", uri=True)
        try:
            return con.execute("SELECT COALESCE(SUM(size), 0) FROM oss_objects WHERE bucket = ?",
                               (SYSTEM_BUCKET,)).fetchone()[0]
        finally:
            con.close()

    def delete(self, sid):
        self.net.ecs("DeleteSnapshot", SnapshotId=sid)
        wait_until(lambda: self.bucket_bytes() == 0, 300, "the sweeper to empty the system bucket", pause=0.5)


def main():
    os.environ["FEITIAN_BIN"] = str(BIN_DIR / "feitian")
    import oss2
    from qemu_helpers import WHY, Net, qemu_feitian
    if WHY:
        sys.exit(f"the snapshot benchmark needs root, QEMU, nftables, iproute2 and ssh: {WHY}")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    source = work / "random.bin"
    with open(source, "wb") as out:
        for _ in range(WRITTEN_MIB):
            out.write(os.urandom(MIB))
    source.read_bytes()  # into the page cache
    log("starting feitian on the qemu driver ...")
    f, finish = qemu_feitian(EIP_POOL)
    rows = {"snapshot": [], "copy": []}
    left = []
    try:
        net = Net(f)
        b = Bench(f, net)
        log(f"the guest writes {WRITTEN_MIB} MiB of random bytes ...")
        b.write(source, 0, WRITTEN_MIB)
        bucket = oss2.Bucket(oss2.Auth(*net.key), f"http://{f.endpoint}", "bench-snapshot-copy", region="cn-hangzhou")
        bucket.create_bucket()
        for n in range(ROUNDS):
            order = ("snapshot", "copy") if n % 2 == 0 else ("copy", "snapshot")
            for kind in order:
                if kind == "snapshot":
                    sid, took = b.snapshot()
                    stored = b.total_stored()
                    b.delete(sid)
                else:
                    t0 = time.monotonic()
                    bucket.put_object_from_file("copy", str(source))
                    took = time.monotonic() - t0
                    stored = bucket.head_object("copy").content_length
                    bucket.delete_object("copy")
                rows[kind].append((took, stored))
                log(f"round {n + 1}: {kind} {took:.2f} s ({stored / MIB:.0f} MiB)")
        first, first_t = b.snapshot()
        first_stored = b.total_stored()
        log(f"the guest changes {CHANGED_MIB} MiB ...")
        fresh = work / "fresh.bin"
        with open(fresh, "wb") as out:
            for _ in range(CHANGED_MIB):
                out.write(os.urandom(MIB))
        b.write(fresh, WRITTEN_MIB + 512, CHANGED_MIB)
        fresh.unlink()
        _, second_t = b.snapshot()
        second_stored = b.total_stored() - first_stored
        bucket.delete_bucket()
    finally:
        left = finish()
        source.unlink(missing_ok=True)
        work.rmdir()
    snap = statistics.median(t for t, _ in rows["snapshot"])
    copy = statistics.median(t for t, _ in rows["copy"])
    print(f"### Snapshots ({platform.node()}, {os.cpu_count()} CPUs, {ROUNDS} rounds, "
          f"{time.monotonic() - started:.0f} s in all)\n")
    print("| case | feitian | reference | ratio (reference / feitian) |")
    print("|---|---|---|---|")
    print(f"| first snapshot of {WRITTEN_MIB} MiB written (median) vs oss2 put of {WRITTEN_MIB} MiB | "
          f"{snap:.2f} s ({WRITTEN_MIB / snap:.0f} MiB/s) | {copy:.2f} s ({WRITTEN_MIB / copy:.0f} MiB/s) | "
          f"{copy / snap:.2f} |")
    print()
    print("| snapshot | time | stored | share of the first's time |")
    print("|---|---|---|---|")
    print(f"| first (full, {WRITTEN_MIB} MiB written) | {first_t:.2f} s | {first_stored / MIB:.0f} MiB | 100 % |")
    print(f"| second ({CHANGED_MIB} MiB = 1 % of {DISK_GIB} GiB changed) | {second_t:.2f} s | "
          f"{second_stored / MIB:.0f} MiB | {100 * second_t / first_t:.1f} % |")
    if left:
        log(f"feitian left this on the host after shutdown: {left}")
        sys.exit(1)


if __name__ == "__main__":
    main()
