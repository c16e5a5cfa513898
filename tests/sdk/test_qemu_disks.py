"""Cloud disks on real guests (docs/disks.md), through the official SDK: the system disk is a
RAF volume served over NBD, and a 20 GiB data disk is created, attached to a running
instance, written from inside (a file system with a file of known content, and raw blocks
at a few offsets past it), detached, attached to a second instance and read back byte for
byte; an online ResizeDisk is seen by the guest without a reboot; StopInstance and
StartInstance keep the disk attached with its data; ReInitDisk (instance stopped) gives back
an empty disk.

Two guests serve every check (CI has 2 cores and TCG only), so the tests run in order on one
module's state. One feitian (qemu driver, EIP pool 198.18.88.0/24: no other module uses it)
serves the module; at the end nothing may be left on the host."""
import hashlib
import json
import time
from pathlib import Path

import pytest

from qemu_helpers import Net, needs_vms, qemu_feitian, qemu_process, ssh_ok

pytestmark = needs_vms

POOL = "198.18.88.0/24"
ZONE = "cn-hangzhou-h"
GIB = 1 << 30
SYSTEM_GIB = 30
DATA_GIB = 20
GROWN_GIB = 24
# The file system covers the first 4 GiB of the data disk; raw blocks are written past it.
FS_SIZE = "4G"
FILE_LINES = 50_000
FILE_BYTES = b"".join(b"feitian data disk line %07d\n" % i for i in range(FILE_LINES))
# (offset in 4 KiB blocks, block count): past the file system, one at the very end, one
# crossing a 64 MiB segment boundary of the volume's log in no way the guest could know.
RAW = [(5 * GIB // 4096, 16), (12 * GIB // 4096 + 3, 5), (DATA_GIB * GIB // 4096 - 8, 8)]
# Never written: reads as zeros.
HOLE = (16 * GIB // 4096, 16)


class State:
    pass


S = State()


@pytest.fixture(scope="module")
def cloud():
    f, finish = qemu_feitian(POOL)
    yield f
    # Whatever a failed test left: the instances and the disk go before feitian stops.
    try:
        for iid in getattr(S, "ids", []):
            S.net.ecs("DeleteInstance", InstanceId=iid, Force="true")
        if getattr(S, "disk", None):
            wait_disk(S.disk, "Available")
            S.net.ecs("DeleteDisk", DiskId=S.disk)
    finally:
        left = finish()
    assert left == [], f"left on the host after shutdown: {left}"


@pytest.fixture(scope="module")
def pair(cloud):
    """Two running instances, A and B, each with an EIP."""
    S.net = Net(cloud)
    S.f = cloud
    S.ids = S.net.run(Amount=2, **{"SystemDisk.Size": str(SYSTEM_GIB)})
    S.a, S.b = S.ids
    S.ip = {iid: S.net.eip(iid) for iid in S.ids}
    for iid in S.ids:
        S.net.wait(iid, "Running")
    return S


# --- helpers ---------------------------------------------------------------------------------

def wait_until(fn, timeout, what, pause=1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def disk(did):
    got = S.net.ecs("DescribeDisks", DiskIds=json.dumps([did]))["Disks"]["Disk"]
    return got[0] if got else {}


def wait_disk(did, want, timeout=180):
    wait_until(lambda: disk(did).get("Status") == want, timeout, f"{did} {want}")


def sh(iid, command, deadline=180):
    return ssh_ok(S.net, S.ip[iid], command, deadline=deadline)


def serial(did):
    """What the guest reads as the disk's serial: its id without `d-` (virtio-blk keeps 20)."""
    return did.removeprefix("d-")[:20]


def device(iid, did):
    """The guest's block device (`vdX`) whose serial is the disk's, or None."""
    out = sh(iid, "for d in /sys/block/vd*; do echo \"${d##*/} $(cat $d/serial 2>/dev/null)\"; done")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == serial(did):
            return parts[0]
    return None


def wait_device(iid, did, timeout=120):
    return wait_until(lambda: device(iid, did), timeout, f"{did} to show in {iid}", pause=2)


def size_bytes(iid, dev):
    return int(sh(iid, f"cat /sys/block/{dev}/size").strip()) * 512


def block_sums(iid, dev, ranges):
    """sha256 of each (block, count) range of /dev/DEV, read in 4 KiB blocks."""
    cmd = "; ".join(f"dd if=/dev/{dev} bs=4096 skip={b} count={n} 2>/dev/null | sha256sum" for b, n in ranges)
    return [line.split()[0] for line in sh(iid, cmd).splitlines()]


def zeros(n_blocks):
    return hashlib.sha256(bytes(4096 * n_blocks)).hexdigest()


def boot_id(iid):
    return sh(iid, "cat /proc/sys/kernel/random/boot_id").strip()


# --- 1. the system disk ----------------------------------------------------------------------

def test_the_system_disk_is_a_served_volume(pair):
    """The root file system is on /dev/vda, whose serial is the system disk's id, and fills
    SystemDisk.Size (the clone of the image's volume was grown); QEMU opens it over NBD from
    a socket in the instance's directory, and there is no qcow2 overlay any more."""
    system = S.net.ecs("DescribeDisks", InstanceId=S.a, DiskType="system")["Disks"]["Disk"][0]
    assert system["Size"] == SYSTEM_GIB
    assert device(S.a, system["DiskId"]) == "vda"
    assert size_bytes(S.a, "vda") == SYSTEM_GIB * GIB
    total_kib = int(sh(S.a, "df -k / | tail -n 1").split()[1])
    assert 0.9 * SYSTEM_GIB * 2**20 < total_kib <= SYSTEM_GIB * 2**20, total_kib
    d = Path(S.f.data_dir) / "instances" / S.a
    assert (d / f"{system['DiskId']}.sock").is_socket()
    assert not (d / "system.qcow2").exists()
    cmdline = Path(f"/proc/{qemu_process(S.f, S.a)['pid']}/cmdline").read_bytes().decode(errors="replace")
    assert '"driver":"nbd"' in cmdline and f"{system['DiskId']}.sock" in cmdline
    # The two system disks are two volumes: a write to one is not in the other.
    sh(S.a, "echo only-on-a > /root/mine && sync")
    assert sh(S.b, "cat /root/mine 2>/dev/null || echo absent").strip() == "absent"


# --- 2. a data disk moves between instances -------------------------------------------------

def test_a_data_disk_written_in_one_instance_reads_the_same_in_another(pair):
    """Done-when 1: CreateDisk 20 GiB, AttachDisk to running A, mke2fs and a file of known
    content and raw blocks from inside A, DetachDisk, AttachDisk to running B: the file and
    the raw blocks are byte-identical, and what was never written reads as zeros."""
    ecs = S.net.ecs
    S.disk = ecs("CreateDisk", ZoneId=ZONE, Size=DATA_GIB, DiskCategory="cloud_essd", DiskName="moving")["DiskId"]
    wait_disk(S.disk, "Available")
    ecs("AttachDisk", DiskId=S.disk, InstanceId=S.a, DeleteWithInstance="false")
    wait_disk(S.disk, "In_use")
    dev = wait_device(S.a, S.disk)
    assert dev != "vda"
    assert size_bytes(S.a, dev) == DATA_GIB * GIB

    # A file system on the first 4 GiB (ext4, inode tables initialised lazily), a file.
    # The full path: the guest's shell prefers busybox's applets (its mke2fs makes only ext2).
    sh(S.a, f"/sbin/mke2fs -q -F -t ext4 -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 /dev/{dev} {FS_SIZE}")
    sh(S.a, f"mkdir -p /mnt/d && mount /dev/{dev} /mnt/d")
    want_file = hashlib.sha256(FILE_BYTES).hexdigest()
    sh(S.a, f"awk 'BEGIN {{ for (i = 0; i < {FILE_LINES}; i++) printf \"feitian data disk line %07d\\n\", i }}'"
            " > /mnt/d/known && sync")
    assert sh(S.a, "sha256sum /mnt/d/known").split()[0] == want_file
    sh(S.a, "umount /mnt/d")

    # Raw blocks past it, each range its own random bytes, flushed to the disk.
    for b, n in RAW:
        sh(S.a, f"dd if=/dev/urandom of=/dev/{dev} bs=4096 seek={b} count={n} conv=fsync 2>/dev/null")
    S.sums = block_sums(S.a, dev, RAW)
    assert len(set(S.sums)) == len(RAW) and zeros(16) not in S.sums
    assert block_sums(S.a, dev, [HOLE]) == [zeros(HOLE[1])]

    # Detach: gone from A's guest, Available.
    ecs("DetachDisk", DiskId=S.disk, InstanceId=S.a)
    wait_disk(S.disk, "Available")
    wait_until(lambda: device(S.a, S.disk) is None, 60, f"{S.disk} to leave {S.a}", pause=2)
    assert not (Path(S.f.data_dir) / "instances" / S.a / f"{S.disk}.sock").exists(), "its server still runs"

    # Attach to B: the same bytes.
    ecs("AttachDisk", DiskId=S.disk, InstanceId=S.b, DeleteWithInstance="false")
    wait_disk(S.disk, "In_use")
    dev = wait_device(S.b, S.disk)
    assert size_bytes(S.b, dev) == DATA_GIB * GIB
    assert block_sums(S.b, dev, RAW) == S.sums
    assert block_sums(S.b, dev, [HOLE]) == [zeros(HOLE[1])]
    sh(S.b, f"mkdir -p /mnt/d && mount /dev/{dev} /mnt/d")
    assert sh(S.b, "sha256sum /mnt/d/known").split()[0] == want_file
    sh(S.b, "umount /mnt/d")


# --- 3. online resize -------------------------------------------------------------------------

def test_online_resize_is_seen_without_a_reboot(pair):
    """ResizeDisk Type=online on B's running guest: /sys/block/vdX/size grows, on the same
    boot, and the data is still there."""
    boot = boot_id(S.b)
    dev = device(S.b, S.disk)
    S.net.ecs("ResizeDisk", DiskId=S.disk, NewSize=GROWN_GIB, Type="online")
    assert disk(S.disk)["Size"] == GROWN_GIB
    wait_until(lambda: size_bytes(S.b, dev) == GROWN_GIB * GIB, 120, "the guest to see the new size", pause=2)
    assert boot_id(S.b) == boot
    assert device(S.b, S.disk) == dev
    assert block_sums(S.b, dev, RAW) == S.sums


# --- 4. stop and start ------------------------------------------------------------------------

def test_stop_and_start_keep_the_data_disk(pair):
    """StopInstance: the guest's QEMU goes, then its disks' servers; StartInstance: the data
    disk is still In_use, attached at boot, with its size and data."""
    d = Path(S.f.data_dir) / "instances" / S.b
    S.net.ecs("StopInstance", InstanceId=S.b)
    S.net.wait(S.b, "Stopped", timeout=180)
    assert list(d.glob("d-*.sock")) == [], "a stopped instance's disk servers still run"
    assert disk(S.disk)["Status"] == "In_use"
    S.net.ecs("StartInstance", InstanceId=S.b)
    S.net.wait(S.b, "Running")
    dev = wait_device(S.b, S.disk)
    assert size_bytes(S.b, dev) == GROWN_GIB * GIB
    assert block_sums(S.b, dev, RAW) == S.sums
    sh(S.b, f"mkdir -p /mnt/d && mount /dev/{dev} /mnt/d")
    assert sh(S.b, "sha256sum /mnt/d/known").split()[0] == hashlib.sha256(FILE_BYTES).hexdigest()
    sh(S.b, "umount /mnt/d")


# --- 5. re-initialise -------------------------------------------------------------------------

def test_reinit_of_a_data_disk_gives_an_empty_disk(pair):
    """ReInitDisk of the data disk, its instance stopped: started again, the disk reads as
    zeros everywhere it was written (no file system left), at the size it has."""
    S.net.ecs("StopInstance", InstanceId=S.b)
    S.net.wait(S.b, "Stopped", timeout=180)
    S.net.ecs("ReInitDisk", DiskId=S.disk)
    wait_disk(S.disk, "In_use")
    S.net.ecs("StartInstance", InstanceId=S.b)
    S.net.wait(S.b, "Running")
    dev = wait_device(S.b, S.disk)
    assert size_bytes(S.b, dev) == GROWN_GIB * GIB
    assert block_sums(S.b, dev, RAW + [(0, 256)]) == [zeros(n) for _, n in RAW] + [zeros(256)]
    # The system disk was left alone.
    assert sh(S.a, "cat /root/mine").strip() == "only-on-a"


def test_everything_goes(pair):
    """Deleting the instances (forced) and the disk leaves no disk server behind."""
    for iid in S.ids:
        S.net.ecs("DeleteInstance", InstanceId=iid, Force="true")
    S.ids = []
    wait_disk(S.disk, "Available")
    S.net.ecs("DeleteDisk", DiskId=S.disk)
    S.disk = None
    wait_until(lambda: S.f.qemu_pids() == [], 120, "every QEMU to end")
