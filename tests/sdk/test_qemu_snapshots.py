"""Snapshots of a real guest's disk (docs/snapshots.md), through the official SDK: issue 16's
done-when 1.

A 10 GiB data disk of a running guest is written from inside (random bytes, flushed), then
snapshotted; 1 % of it (100 MiB) is changed and it is snapshotted again; half of that change
is changed again and a third snapshot taken. Each snapshot stores what changed since the one
before (reported by DescribeSnapshotLinks' TotalSize, and by the bytes in the system bucket),
each restores (CreateDisk SnapshotId, attached to the guest) to exactly the bytes the guest
checksummed at its instant, and deleting the middle one frees exactly the blocks only it held
while the others still restore byte for byte; ResetDisk rolls the disk itself back.

Then done-when 6's first fault: feitian is killed (`kill -9`) in the middle of an upload and
started again: the snapshot completes from its pin, restores byte for byte, and every object
in the system bucket is one the store counts (nothing leaked), until the last snapshot goes
and the bucket is empty.

Then images (done-when 3 and 4): an image of the guest, shared to a second account, launches
there with the guest's files; exported as qcow2 and as vhd and imported back, it boots with
them; and the built-in image's root disk, converted to RAW and uploaded with oss2, imports and
boots.

One feitian (qemu driver, EIP pool 198.18.91.0/24: no other module uses it), one guest."""
import json
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import oss2
import pytest

from conftest import Api
from qemu_helpers import Net, needs_vms, qemu_feitian, ssh_ok

pytestmark = needs_vms

POOL = "198.18.91.0/24"
ZONE = "cn-hangzhou-h"
MIB = 1 << 20
DISK_GIB = 10
SYSTEM_BUCKET = "feitian-system-cn-hangzhou"
# Regions of the disk (start, length in MiB) whose checksums stand for its contents: every
# byte ever written is in one of them, and 7 GiB is never written (zeros throughout).
CHECK = [(0, 192), (5 * 1024, 4), (7 * 1024, 1), (9 * 1024, 1), (DISK_GIB * 1024 - 1, 1)]
# What each phase writes (start, length in MiB) with fresh random bytes.
FIRST = [(0, 64), (5 * 1024, 4), (DISK_GIB * 1024 - 1, 1)]
SECOND = [(32, 100)]  # 1 % of the disk
THIRD = [(82, 50), (9 * 1024, 1)]  # half of the second change, and one new MiB


class State:
    pass


S = State()


@pytest.fixture(scope="module")
def guest():
    f, finish = qemu_feitian(POOL)
    S.f = f
    S.disks = []
    try:
        S.net = Net(f)
        (S.iid,) = S.net.run(Amount=1)
        S.ip = S.net.eip(S.iid)
        S.net.wait(S.iid, "Running")
        yield S
    finally:
        try:
            if getattr(S, "iid", None):
                S.net.ecs("DeleteInstance", InstanceId=S.iid, Force="true")
            for did in S.disks:
                try:
                    wait_disk(did, "Available", 120)
                    S.net.ecs("DeleteDisk", DiskId=did)
                except Exception:  # noqa: BLE001 - best effort: feitian stops next
                    pass
        finally:
            left = finish()
    assert left == [], f"left on the host after shutdown: {left}"


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


def wait_task(tid, timeout=900):
    """Waits for an image task to finish (and fails on any other end)."""
    attr = lambda: S.net.ecs("DescribeTaskAttribute", TaskId=tid)  # noqa: E731
    wait_until(lambda: attr()["TaskStatus"] != "Processing", timeout, f"{tid} to end", pause=2)
    got = attr()
    assert got["TaskStatus"] == "Finished", got


def sh(command, deadline=180):
    return ssh_ok(S.net, S.ip, command, deadline=deadline)


def disk(did):
    got = S.net.ecs("DescribeDisks", DiskIds=json.dumps([did]))["Disks"]["Disk"]
    return got[0] if got else {}


def wait_disk(did, want, timeout=300):
    wait_until(lambda: disk(did).get("Status") == want, timeout, f"{did} {want}")


def device(did):
    """The guest's block device whose serial is the disk's id without `d-` (20 characters)."""
    want = did.removeprefix("d-")[:20]
    out = sh("for d in /sys/block/vd*; do echo \"${d##*/} $(cat $d/serial 2>/dev/null)\"; done")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == want:
            return parts[0]
    return None


def attach(did):
    S.net.ecs("AttachDisk", DiskId=did, InstanceId=S.iid, DeleteWithInstance="false")
    wait_disk(did, "In_use")
    return wait_until(lambda: device(did), 120, f"{did} in the guest", pause=2)


def detach(did):
    S.net.ecs("DetachDisk", DiskId=did, InstanceId=S.iid)
    wait_disk(did, "Available")
    wait_until(lambda: device(did) is None, 60, f"{did} to leave the guest", pause=2)


def sums(dev, regions=CHECK):
    """sha256 of each region (start, length in MiB) of /dev/DEV, as the guest reads it."""
    cmd = "; ".join(
        f"dd if=/dev/{dev} bs={MIB} skip={start} count={n} 2>/dev/null | sha256sum" for start, n in regions)
    return [line.split()[0] for line in sh(cmd, deadline=300).splitlines()]


def write_random(dev, regions):
    for start, n in regions:
        sh(f"dd if=/dev/urandom of=/dev/{dev} bs={MIB} seek={start} count={n} conv=fsync 2>/dev/null")


def create_snapshot(did, name):
    """CreateSnapshot: (id, the clock when it returned). It returns once the instant is taken."""
    sid = S.net.ecs("CreateSnapshot", DiskId=did, SnapshotName=name)["SnapshotId"]
    return sid, time.monotonic()


def accomplished(sid, since):
    """Waits for the snapshot; the seconds since `since`."""
    def done():
        got = S.net.ecs("DescribeSnapshots", SnapshotIds=json.dumps([sid]))["Snapshots"]["Snapshot"]
        assert got and got[0]["Status"] != "failed", got
        return got[0]["Status"] == "accomplished" and got[0]

    s = wait_until(done, 600, f"{sid} accomplished", pause=0.5)
    assert (s["Progress"], s["Available"]) == ("100%", True)
    return time.monotonic() - since


def link_total(did):
    links = S.net.ecs("DescribeSnapshotLinks", DiskIds=json.dumps([did]))["SnapshotLinks"]["SnapshotLink"]
    return links[0]["TotalSize"] if links else 0


def system_bucket_bytes():
    con = sqlite3.connect(f"file:{S.f.data_dir / 'meta.db'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COALESCE(SUM(size), 0) FROM oss_objects WHERE bucket = ?",
                           (SYSTEM_BUCKET,)).fetchone()[0]
    finally:
        con.close()


def restore(sid):
    did = S.net.ecs("CreateDisk", ZoneId=ZONE, SnapshotId=sid, DiskCategory="cloud")["DiskId"]
    S.disks.append(did)
    wait_disk(did, "Available")
    d = disk(did)
    assert (d["SourceSnapshotId"], d["Size"]) == (sid, DISK_GIB)
    return did


def restored_sums(sid, regions=CHECK):
    did = restore(sid)
    dev = attach(did)
    got = sums(dev, regions)
    detach(did)
    return did, got


def system_objects():
    """The system bucket's objects, and the blocks the store counts references on."""
    con = sqlite3.connect(f"file:{S.f.data_dir / 'meta.db'}?mode=ro", uri=True)
    try:
        objects = {k for (k,) in con.execute("SELECT object_key FROM oss_objects WHERE bucket = ?", (SYSTEM_BUCKET,))}
        named = {f"blocks/{h}" for (h,) in con.execute("SELECT hash FROM snapshot_blocks WHERE refs > 0")}
        return objects, named
    finally:
        con.close()


# --- the test --------------------------------------------------------------------------------

def test_incremental_snapshots_restore_byte_exact_and_deleting_one_frees_what_only_it_held(guest):
    ecs = S.net.ecs
    src = ecs("CreateDisk", ZoneId=ZONE, Size=DISK_GIB, DiskCategory="cloud", DiskName="src")["DiskId"]
    S.disks.append(src)
    wait_disk(src, "Available")
    dev = attach(src)
    assert sums(dev)[2] == sums(dev)[2]  # reads are stable
    zero_mib = sums(dev)[2]

    # Each snapshot's instant is when CreateSnapshot returns: the next phase's writes start
    # at once, while its upload runs, and must not leak in (guarantee 1).
    write_random(dev, FIRST)
    want1 = sums(dev)
    s1, at = create_snapshot(src, "first")
    write_random(dev, SECOND)
    t1 = accomplished(s1, at)
    stored1 = link_total(src)
    assert stored1 == 69 * MIB, stored1  # everything written before it
    want2 = sums(dev)
    s2, at = create_snapshot(src, "second")
    write_random(dev, THIRD)
    t2 = accomplished(s2, at)
    stored2 = link_total(src) - stored1
    want3 = sums(dev)
    s3, at = create_snapshot(src, "third")
    t3 = accomplished(s3, at)
    stored3 = link_total(src) - stored1 - stored2
    print(f"\nsnapshot 1: {stored1 / MIB:.0f} MiB stored in {t1:.1f} s; "
          f"snapshot 2 (1 % of {DISK_GIB} GiB changed): {stored2 / MIB:.0f} MiB in {t2:.1f} s; "
          f"snapshot 3: {stored3 / MIB:.0f} MiB in {t3:.1f} s")
    # Each stores exactly what changed since the one before, in whole MiB ranges.
    assert stored2 == 100 * MIB, stored2
    assert stored3 == 51 * MIB, stored3
    assert system_bucket_bytes() == (69 + 100 + 51) * MIB
    assert want1 != want2 != want3 and want1[2] == want2[2] == want3[2] == zero_mib

    # Each restores to the bytes at its instant.
    made = {}
    for sid, want in ((s1, want1), (s2, want2), (s3, want3)):
        made[sid], got = restored_sums(sid)
        assert got == want, f"{sid} restored differently from the guest's checksums at its instant"
    snaps = {s["SnapshotId"]: s for s in ecs("DescribeSnapshots", DiskId=src)["Snapshots"]["Snapshot"]}
    assert {snaps[s]["Usage"] for s in (s1, s2, s3)} == {"disk"}

    # A snapshot a disk was made from is not deleted without Force; once the disk is gone it is.
    with pytest.raises(Exception) as refused:
        ecs("DeleteSnapshot", SnapshotId=s2)
    assert "SnapshotCreatedDisk" in str(refused.value)
    for did in made.values():
        ecs("DeleteDisk", DiskId=did)
        S.disks.remove(did)
    before = system_bucket_bytes()
    ecs("DeleteSnapshot", SnapshotId=s2)
    # Freed: the second snapshot's version of the 50 MiB the third changed again. Its other
    # 50 MiB are the third's too, and the first's 69 MiB are the first's.
    wait_until(lambda: system_bucket_bytes() == before - 50 * MIB, 60,
               "the sweeper to delete the middle snapshot's own blocks")
    time.sleep(6)  # one more sweep: nothing else goes
    assert system_bucket_bytes() == (69 + 50 + 51) * MIB

    # The others still restore byte for byte.
    for sid, want in ((s1, want1), (s3, want3)):
        did, got = restored_sums(sid)
        assert got == want, f"{sid} restored differently after the middle snapshot was deleted"
        ecs("DeleteDisk", DiskId=did)
        S.disks.remove(did)

    # ResetDisk rolls the disk itself back to its first snapshot.
    detach(src)
    ecs("ResetDisk", DiskId=src, SnapshotId=s1)
    wait_disk(src, "Available")
    dev = attach(src)
    assert sums(dev) == want1, "ResetDisk did not roll the disk back to the first snapshot's bytes"
    detach(src)


def test_kill9_during_an_upload_loses_nothing_and_leaks_nothing(guest):
    ecs = S.net.ecs
    src = ecs("CreateDisk", ZoneId=ZONE, Size=DISK_GIB, DiskCategory="cloud", DiskName="crash")["DiskId"]
    S.disks.append(src)
    wait_disk(src, "Available")
    dev = attach(src)
    regions = [(0, 384)]
    write_random(dev, regions)
    want = sums(dev, regions)
    sid, _ = create_snapshot(src, "interrupted")

    def uploading():
        s = ecs("DescribeSnapshots", SnapshotIds=json.dumps([sid]))["Snapshots"]["Snapshot"][0]
        assert s["Status"] == "progressing", f"finished before it could be interrupted: {s}"
        return int(s["Progress"].rstrip("%")) > 0
    wait_until(uploading, 120, f"{sid} to be uploading", pause=0.05)
    S.f.kill9()
    S.f.start(timeout=300)
    S.net.vpc, S.net.ecs = Api(S.f, S.net.key, "vpc"), Api(S.f, S.net.key, "ecs")  # a new port
    ecs = S.net.ecs
    accomplished(sid, time.monotonic())
    objects, named = system_objects()
    assert objects == named, f"objects nothing counts: {sorted(objects - named)[:3]}; counted, missing: {sorted(named - objects)[:3]}"
    did, got = restored_sums(sid, regions)
    assert got == want, "the interrupted snapshot restored differently from the guest's checksums"
    ecs("DeleteDisk", DiskId=did)
    S.disks.remove(did)
    detach(src)

    # Every snapshot goes: the bucket empties.
    for s in ecs("DescribeSnapshots", PageSize=100)["Snapshots"]["Snapshot"]:
        ecs("DeleteSnapshot", SnapshotId=s["SnapshotId"], Force="true")
    wait_until(lambda: system_objects() == (set(), set()), 60, "the system bucket to empty")


def test_an_image_of_the_guest_launches_in_another_account_with_its_files(guest):
    """Done-when 3: CreateImage from a provisioned instance, shared to a second account that
    launches from it: the guest there has the files the first one wrote."""
    ecs = S.net.ecs
    marker = f"image-{time.monotonic_ns()}"
    sh(f"echo {marker} > /root/image-marker && sync")
    mid = ecs("CreateImage", InstanceId=S.iid, ImageName="from-a-guest", Description="")["ImageId"]
    status = lambda: ecs("DescribeImages", ImageId=mid, Status="Creating,Available,CreateFailed")[  # noqa: E731
        "Images"]["Image"][0]
    wait_until(lambda: status()["Status"] == "Available", 600, f"{mid} Available")
    other = Net(S.f, cidr="10.0.0.0/16", vsw="10.0.1.0/24")
    ecs("ModifyImageSharePermission", ImageId=mid, **{"AddAccount.1": other.account_id()})
    (theirs,) = other.run(Amount=1, ImageId=mid)
    try:
        ip = other.eip(theirs)
        other.wait(theirs, "Running")
        got = ssh_ok(other, ip, "cat /root/image-marker", deadline=300).strip()
        assert got == marker, f"the guest launched from {mid} reads {got!r}"
    finally:
        other.ecs("DeleteInstance", InstanceId=theirs, Force="true")
    wait_until(lambda: not other.ecs("DescribeInstances", InstanceIds=json.dumps([theirs]))["Instances"]["Instance"],
               180, f"{theirs} deleted")
    # Done-when 4: the image exported as qcow2 and as vhd, each imported back, boots with the
    # same files (the raw round trip is byte-compared in test_image_import_export.py).
    bucket = f"exports-{time.monotonic_ns()}"
    oss2.Bucket(oss2.Auth(*S.net.key), f"http://{S.f.endpoint}", bucket, region="cn-hangzhou").create_bucket()
    for fmt in ("qcow2", "vhd"):
        tid = ecs("ExportImage", ImageId=mid, OSSBucket=bucket, ImageFormat=fmt)["TaskId"]
        wait_task(tid)
        out = ecs("ImportImage", ImageName=f"back-from-{fmt}", **{
            "DiskDeviceMapping.1.OSSBucket": bucket, "DiskDeviceMapping.1.OSSObject": f"{mid}_system.{fmt}",
            "DiskDeviceMapping.1.Format": fmt.upper()})
        wait_task(out["TaskId"])
        (iid,) = S.net.run(Amount=1, ImageId=out["ImageId"])
        try:
            ip = S.net.eip(iid)
            S.net.wait(iid, "Running")
            got = ssh_ok(S.net, ip, "cat /root/image-marker", deadline=300).strip()
            assert got == marker, f"the guest of the image imported from {fmt} reads {got!r}"
        finally:
            ecs("DeleteInstance", InstanceId=iid, Force="true")
        wait_until(lambda: not ecs("DescribeInstances", InstanceIds=json.dumps([iid]))["Instances"]["Instance"],
                   180, f"{iid} deleted")
        back = ecs("DescribeImages", ImageId=out["ImageId"])["Images"]["Image"][0]
        ecs("DeleteImage", ImageId=out["ImageId"])
        for m in back["DiskDeviceMappings"]["DiskDeviceMapping"]:
            ecs("DeleteSnapshot", SnapshotId=m["SnapshotId"], Force="true")

    # And a RAW file: the built-in image's root disk (1 GiB), converted and uploaded with oss2.
    m = re.search(r"image (/\S+?)\)", S.f.stdout())
    assert m, "feitian did not say which guest image it uses"
    raw = Path(tempfile.mkdtemp(prefix="feitian-raw-")) / "builtin.raw"
    try:
        subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(Path(m.group(1)) / "rootfs.qcow2"),
                        str(raw)], check=True, capture_output=True)
        oss2.Bucket(oss2.Auth(*S.net.key), f"http://{S.f.endpoint}", bucket, region="cn-hangzhou") \
            .put_object_from_file("builtin.raw", str(raw))
    finally:
        shutil.rmtree(raw.parent, ignore_errors=True)
    out = ecs("ImportImage", ImageName="builtin-from-raw", **{
        "DiskDeviceMapping.1.OSSBucket": bucket, "DiskDeviceMapping.1.OSSObject": "builtin.raw",
        "DiskDeviceMapping.1.Format": "RAW"})
    wait_task(out["TaskId"])
    (iid,) = S.net.run(Amount=1, ImageId=out["ImageId"], **{"SystemDisk.Size": "20"})
    try:
        ip = S.net.eip(iid)
        S.net.wait(iid, "Running")
        assert ssh_ok(S.net, ip, "cat /proc/cmdline", deadline=300).strip(), "the guest of the RAW import"
    finally:
        ecs("DeleteInstance", InstanceId=iid, Force="true")
    wait_until(lambda: not ecs("DescribeInstances", InstanceIds=json.dumps([iid]))["Instances"]["Instance"],
               180, f"{iid} deleted")
    back = ecs("DescribeImages", ImageId=out["ImageId"])["Images"]["Image"][0]
    assert back["Size"] == 1
    ecs("DeleteImage", ImageId=out["ImageId"])
    for m in back["DiskDeviceMappings"]["DiskDeviceMapping"]:
        ecs("DeleteSnapshot", SnapshotId=m["SnapshotId"], Force="true")

    snaps = [m["SnapshotId"] for m in status()["DiskDeviceMappings"]["DiskDeviceMapping"]]
    ecs("DeleteImage", ImageId=mid)
    for sid in snaps:
        ecs("DeleteSnapshot", SnapshotId=sid, Force="true")
