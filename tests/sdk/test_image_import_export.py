"""ImportImage and ExportImage through alibabacloud_ecs20140526 and oss2 (docs/snapshots.md,
"Image import and export"): disk files in RAW, QCOW2 and VHD uploaded with oss2 become images
(tasks in DescribeTasks / DescribeTaskAttribute, the image `Creating` then `Available`); an
image exported as raw, qcow2 and vhd is, to `qemu-img compare`, the disk that was imported; a
file that is not what `Format` says fails its task and its image, with the reason;
CancelTask; and the refusals, each with nothing changed. Booting an imported image is in
`test_qemu_snapshots.py`."""
import json
import os
import subprocess
import uuid

import oss2
import pytest

from conftest import Api, db_snapshot, wait_for

REGION = "cn-hangzhou"
MIB = 1 << 20
TABLES = ("images", "image_disks", "image_tasks", "image_import_sources", "snapshots", "resources")


def qemu_img(*args):
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "qemu-img"], capture_output=True).returncode != 0,
    reason="qemu-img is missing (scripts/test installs qemu-utils)")


@pytest.fixture
def env(feitian, account, tmp_path):
    ecs = Api(feitian, account, "ecs")
    name = f"imports-{uuid.uuid4().hex[:8]}"
    b = oss2.Bucket(oss2.Auth(*account), f"http://{feitian.endpoint}", name, region=REGION)
    b.create_bucket()
    # A 40 MiB disk with data at its start, in its middle and in its last MiB; zeros between.
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(40 * MIB)
        for at, n in ((0, 3 * MIB), (17 * MIB + 4096, 5000), (39 * MIB, MIB)):
            f.seek(at)
            f.write(os.urandom(n))
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp_path / "disk.qcow2"))
    qemu_img("convert", "-f", "raw", "-O", "vpc", str(raw), str(tmp_path / "disk.vhd"))
    for ext in ("raw", "qcow2", "vhd"):
        b.put_object_from_file(f"disks/disk.{ext}", str(tmp_path / f"disk.{ext}"))
    return dict(f=feitian, ecs=ecs, bucket=b, name=name, dir=tmp_path, raw=raw)


def task(env, tid):
    return env["ecs"]("DescribeTaskAttribute", TaskId=tid)


def wait_task(env, tid, want="Finished", timeout=120):
    wait_for(lambda: task(env, tid)["TaskStatus"] not in ("Processing",), timeout=timeout, pause=0.2,
             what=f"{tid} to end")
    got = task(env, tid)
    assert got["TaskStatus"] == want, got
    return got


def image(env, mid):
    got = env["ecs"]("DescribeImages", ImageId=mid, Status="Creating,Available,CreateFailed")["Images"]["Image"]
    return got[0] if got else None


def import_(env, fmt, **kw):
    params = {"DiskDeviceMapping.1.OSSBucket": env["name"], "DiskDeviceMapping.1.OSSObject": f"disks/disk.{fmt}",
              "DiskDeviceMapping.1.Format": fmt.upper()}
    params.update(kw)
    out = env["ecs"]("ImportImage", ImageName=f"imported-{fmt}-{uuid.uuid4().hex[:6]}", Platform="Debian", **params)
    assert out["RegionId"] == REGION and out["TaskId"].startswith("t-")
    return out["ImageId"], out["TaskId"]


def export_compare(env, mid, fmt):
    """Exports the image as `fmt`, downloads it with oss2, and compares it with the raw disk."""
    tid = env["ecs"]("ExportImage", ImageId=mid, OSSBucket=env["name"], OSSPrefix="out", ImageFormat=fmt)["TaskId"]
    wait_task(env, tid)
    key = f"out{mid}_system.{fmt}"
    local = env["dir"] / f"export-{mid}.{fmt}"
    env["bucket"].get_object_to_file(key, str(local))
    qfmt = {"raw": "raw", "qcow2": "qcow2", "vhd": "vpc"}[fmt]
    r = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", qfmt, str(env["raw"]), str(local)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"the {fmt} export differs from the imported disk: {r.stdout} {r.stderr}"


def test_raw_qcow2_and_vhd_import_and_export_byte_exact(env):
    ecs = env["ecs"]
    imported = {}
    for fmt in ("raw", "qcow2", "vhd"):
        mid, tid = import_(env, fmt)
        first = image(env, mid)
        assert first["Status"] in ("Creating", "Available") and first["Platform"] == "Debian"
        done = wait_task(env, tid)
        assert (done["TaskAction"], done["TaskProcess"], done["SupportCancel"]) == ("ImportImage", "100%", "false")
        got = image(env, mid)
        assert (got["Status"], got["Size"]) == ("Available", 1), got
        snap = got["DiskDeviceMappings"]["DiskDeviceMapping"][0]["SnapshotId"]
        s = ecs("DescribeSnapshots", SnapshotIds=json.dumps([snap]))["Snapshots"]["Snapshot"][0]
        assert (s["Status"], s["SourceDiskId"], s["Usage"]) == ("accomplished", "", "image")
        imported[fmt] = mid
    listed = ecs("DescribeTasks", TaskAction="ImportImage", TaskStatus="Finished")["TaskSet"]["Task"]
    assert {t["ResourceId"] for t in listed} >= set(imported.values())
    # The three files hold the same disk: the same blocks, so the images share them.
    for fmt, mid in imported.items():
        export_compare(env, mid, {"raw": "qcow2", "qcow2": "vhd", "vhd": "raw"}[fmt])
    refused(env, 400, "OssBucket.NotFound", "ExportImage", ImageId=imported["raw"], OSSBucket="no-such-bucket-x")
    refused(env, 400, "InvalidImageFormat.NotSupported", "ExportImage", ImageId=imported["raw"],
            OSSBucket=env["name"], ImageFormat="vdi")
    for mid in imported.values():
        ecs("DeleteImage", ImageId=mid)


def test_a_file_that_is_not_its_format_fails_with_the_reason(env):
    mid, tid = import_(env, "qcow2", **{"DiskDeviceMapping.1.OSSObject": "disks/disk.raw"})
    got = wait_task(env, tid, want="Failed")
    assert "not QCOW2" in got["OperationProgressSet"]["OperationProgress"][0]["ErrorMsg"], got
    assert image(env, mid)["Status"] == "CreateFailed"
    mid2, tid2 = import_(env, "raw", **{"DiskDeviceMapping.1.DiskImageSize": "1"})
    wait_task(env, tid2)
    env["ecs"]("DeleteImage", ImageId=mid)
    env["ecs"]("DeleteImage", ImageId=mid2)


def refused(env, status, code, action, **params):
    before = {t: db_snapshot(env["f"]).get(t) for t in TABLES}
    e = env["ecs"].error(action, **params)
    assert (e.status_code, e.code) == (status, code), f"{action} {params}: {e}"
    after = {t: db_snapshot(env["f"]).get(t) for t in TABLES}
    for t in TABLES:
        assert after[t] == before[t], f"{action} {params} changed {t}"


def test_refusals_and_cancel(env):
    m = lambda **kw: {f"DiskDeviceMapping.1.{k}": v for k, v in kw.items()}  # noqa: E731
    refused(env, 400, "MissingParameter", "ImportImage", ImageName="no-source")
    refused(env, 400, "InvalidOSSObject.NotFound", "ImportImage", **m(OSSBucket=env["name"], OSSObject="nope.raw"))
    refused(env, 400, "InvalidOSSBucket.NotFound", "ImportImage", **m(OSSBucket="no-such-bucket-x", OSSObject="a"))
    refused(env, 400, "InvalidImageFormat.NotSupported", "ImportImage",
            **m(OSSBucket=env["name"], OSSObject="disks/disk.raw", Format="VDI"))
    refused(env, 400, "InvalidOSType.NotSupported", "ImportImage", OSType="windows",
            **m(OSSBucket=env["name"], OSSObject="disks/disk.raw"))
    refused(env, 404, "InvalidImageId.NotFound", "ExportImage", ImageId="m-bp1doesnotexist000", OSSBucket=env["name"])
    refused(env, 404, "InvalidTaskId.NotFound", "DescribeTaskAttribute", TaskId="t-bp1doesnotexist000")
    refused(env, 404, "InvalidTaskId.NotFound", "CancelTask", TaskId="t-bp1doesnotexist000")

    mid, tid = import_(env, "raw")
    try:
        env["ecs"]("CancelTask", TaskId=tid)
        cancelled = True
    except Exception as e:  # noqa: BLE001 - the import may have finished first
        assert getattr(e, "code", "") == "IncorrectTaskStatus", e
        cancelled = False
    got = task(env, tid)
    if cancelled:
        assert got["TaskStatus"] == "Cancelled"
        assert image(env, mid) is None, "a cancelled import leaves no image"
    else:
        assert got["TaskStatus"] == "Finished"
        refused(env, 400, "IncorrectTaskStatus", "CancelTask", TaskId=tid)
        env["ecs"]("DeleteImage", ImageId=mid)


def test_kill9_during_an_import_loses_nothing_and_leaks_nothing(own_feitian, tmp_path):
    """Done-when 6: feitian is killed in the middle of an import and started again: the task
    finishes from its start, the image is never Available before its one commit, exports
    byte-exact, and every object of the system bucket is one the store counts."""
    import sqlite3

    f = own_feitian().start()
    key = f.new_account(f"crash-{uuid.uuid4().hex[:6]}")
    name = f"crash-{uuid.uuid4().hex[:8]}"
    oss2.Bucket(oss2.Auth(*key), f"http://{f.endpoint}", name, region=REGION).create_bucket()
    raw = tmp_path / "big.raw"
    with open(raw, "wb") as fh:  # 160 MiB of data: long enough to be caught mid-way
        for _ in range(160):
            fh.write(os.urandom(MIB))
    oss2.Bucket(oss2.Auth(*key), f"http://{f.endpoint}", name, region=REGION).put_object_from_file(
        "big.raw", str(raw))
    env = dict(f=f, ecs=Api(f, key, "ecs"), bucket=oss2.Bucket(oss2.Auth(*key), f"http://{f.endpoint}", name,
                                                                region=REGION), name=name, dir=tmp_path, raw=raw)
    out = env["ecs"]("ImportImage", ImageName="crash", **{
        "DiskDeviceMapping.1.OSSBucket": name, "DiskDeviceMapping.1.OSSObject": "big.raw",
        "DiskDeviceMapping.1.Format": "RAW"})
    mid, tid = out["ImageId"], out["TaskId"]

    def storing():
        t = task(env, tid)
        assert t["TaskStatus"] == "Processing", f"finished before it could be interrupted: {t}"
        return int(t["TaskProcess"].rstrip("%")) > 0
    wait_for(storing, timeout=120, pause=0.02, what=f"{tid} to be storing blocks")
    assert image(env, mid)["Status"] == "Creating"
    f.kill9()
    f.start(timeout=120)
    env["ecs"] = Api(f, key, "ecs")  # a new port
    env["bucket"] = oss2.Bucket(oss2.Auth(*key), f"http://{f.endpoint}", name, region=REGION)
    assert image(env, mid)["Status"] == "Creating", "never Available before the commit"
    wait_task(env, tid, timeout=300)
    assert image(env, mid)["Status"] == "Available"
    export_compare(env, mid, "raw")

    def system_objects():
        con = sqlite3.connect(f"file:{f.data_dir / 'meta.db'}?mode=ro", uri=True)
        try:
            objects = {k for (k,) in con.execute("SELECT object_key FROM oss_objects WHERE bucket = ?",
                                                 ("feitian-system-cn-hangzhou",))}
            named = {f"blocks/{h}" for (h,) in con.execute("SELECT hash FROM snapshot_blocks WHERE refs > 0")}
            return objects, named
        finally:
            con.close()
    objects, named = system_objects()
    assert objects == named and len(named) == 160, (len(objects), len(named))
    # The image and its snapshot go: the sweeper empties the system bucket.
    snap = image(env, mid)["DiskDeviceMappings"]["DiskDeviceMapping"][0]["SnapshotId"]
    env["ecs"]("DeleteImage", ImageId=mid)
    env["ecs"]("DeleteSnapshot", SnapshotId=snap)
    wait_for(lambda: system_objects() == (set(), set()), timeout=60, pause=0.5, what="the system bucket to empty")
    f.stop()


def test_feitian_image_import_of_a_local_file(feitian, tmp_path):
    """`feitian image import FILE`: the file becomes an image of the account, the same bytes."""
    account = f"cli-{uuid.uuid4().hex[:8]}"
    out = feitian.cli("account", "create", account)
    c = json.loads(out.stdout.strip().splitlines()[-1])
    key = (c["access_key_id"], c["access_key_secret"])
    raw = tmp_path / "local.raw"
    with open(raw, "wb") as f:
        f.truncate(24 * MIB)
        f.seek(5 * MIB)
        f.write(os.urandom(2 * MIB))
    qcow = tmp_path / "local.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow))
    done = feitian.cli("image", "import", str(qcow), "--name", "from-the-cli", "--account", account,
                       "--platform", "Debian")
    mid = done.stdout.strip().splitlines()[-1]
    assert mid.startswith("m-bp"), (done.stdout, done.stderr)
    assert "importing" in done.stderr and "qcow2" in done.stderr
    name = f"cli-{uuid.uuid4().hex[:8]}"
    b = oss2.Bucket(oss2.Auth(*key), f"http://{feitian.endpoint}", name, region=REGION)
    b.create_bucket()
    env = dict(f=feitian, ecs=Api(feitian, key, "ecs"), bucket=b, name=name, dir=tmp_path, raw=raw)
    got = image(env, mid)
    assert (got["ImageName"], got["Status"], got["Platform"]) == ("from-the-cli", "Available", "Debian")
    export_compare(env, mid, "raw")
    # A file that is no disk image, and an account that does not exist: clear errors, nothing made.
    bad = feitian.cli("image", "import", str(tmp_path / "missing.raw"), "--account", account, check=False)
    assert bad.returncode != 0 and "cannot find" in bad.stderr
    bad = feitian.cli("image", "import", str(qcow), "--account", "nobody-here", check=False)
    assert bad.returncode != 0 and "no account" in bad.stderr
    env["ecs"]("DeleteImage", ImageId=mid)
