"""Snapshots through alibabacloud_ecs20140526 (every answer checked against the official
models): CreateSnapshot, DescribeSnapshots with every filter and field, ModifySnapshotAttribute,
DeleteSnapshot, DescribeSnapshotLinks, tags, ClientToken, the snapshot quota, and every bad
input: its HTTP status, its code, and that nothing changed (docs/snapshots.md).

A snapshot is `progressing` until the disk's host has uploaded it. The tests named
`test_uploader_*` need the host's snapshot uploader and wait for `accomplished` (deselect them
with `-k "not uploader"` where it is not built); the others hold whether or not a snapshot gets
that far."""
import json
import uuid

import pytest

from conftest import Api, db_snapshot, ecs_v3, wait_for

IMAGE = "feitian_linux_x64_1G_alibase_20261122.vhd"
ZONE = "cn-hangzhou-h"
# What a snapshot action may change: compared before and after a refused call.
TABLES = ("snapshots", "snapshot_ranges", "snapshot_blocks", "snapshot_pin_releases", "resources", "tags",
          "client_tokens", "disks")
# How long an upload of a small, mostly empty disk may take on a loaded machine.
UPLOAD_TIMEOUT = 120


def make_net(feitian, key):
    vpc, ecs = Api(feitian, key, "vpc"), Api(feitian, key, "ecs")
    vid = vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    sid = vpc("CreateVSwitch", VpcId=vid, CidrBlock="192.168.1.0/24", ZoneId=ZONE)["VSwitchId"]
    wait_for(lambda: vpc("DescribeVSwitchAttributes", VSwitchId=sid)["Status"] == "Available")
    gid = ecs("CreateSecurityGroup", VpcId=vid)["SecurityGroupId"]
    return dict(vpc=vpc, ecs=ecs, vsw=sid, sg=gid, key=key, f=feitian)


@pytest.fixture
def net(feitian, account):
    """A VPC with a vSwitch and a security group, in a fresh account."""
    return make_net(feitian, account)


def disk(net, did):
    got = net["ecs"]("DescribeDisks", DiskIds=json.dumps([did]))["Disks"]["Disk"]
    return got[0] if got else None


def wait_disk(net, did, want):
    wait_for(lambda: (disk(net, did) or {}).get("Status") == want, timeout=20, what=f"{did} {want}")


def running_instance(net, **kw):
    """A running instance with one data disk: (instance, system disk, data disk)."""
    ecs = net["ecs"]
    iid = ecs("RunInstances", ImageId=IMAGE, InstanceType="ecs.t5-lc1m1.small", VSwitchId=net["vsw"],
              SecurityGroupId=net["sg"], **{"DataDisk.1.Size": "20", "DataDisk.1.Category": "cloud_essd"},
              **kw)["InstanceIdSets"]["InstanceIdSet"][0]
    wait_for(lambda: ecs("DescribeInstances", InstanceIds=json.dumps([iid]))["Instances"]["Instance"][0]["Status"]
             == "Running", timeout=20, what=f"{iid} Running")
    disks = ecs("DescribeDisks", InstanceId=iid)["Disks"]["Disk"]
    system = next(d["DiskId"] for d in disks if d["Type"] == "system")
    data = next(d["DiskId"] for d in disks if d["Type"] == "data")
    wait_disk(net, data, "In_use")
    return iid, system, data


def snap(net, sid):
    got = net["ecs"]("DescribeSnapshots", SnapshotIds=json.dumps([sid]))["Snapshots"]["Snapshot"]
    return got[0] if got else None


def wait_accomplished(net, sid):
    wait_for(lambda: (snap(net, sid) or {}).get("Available") is True, timeout=UPLOAD_TIMEOUT,
             pause=0.5, what=f"{sid} accomplished")
    return snap(net, sid)


def rows(f):
    s = db_snapshot(f)
    return {t: s.get(t) for t in TABLES}


def refused(net, status, code, action, **params):
    """The call fails with `status` and `code`, and the store's snapshot state is as it was.
    The host may move snapshots along meanwhile (pins, progress, commits), so the snapshot
    tables are compared by what a refused call could have added or removed: ids."""
    before = rows(net["f"])
    e = net["ecs"].error(action, **params)
    assert (e.status_code, e.code) == (status, code), f"{action} {params}: {e}"
    after = rows(net["f"])
    for t in ("resources", "tags", "client_tokens", "disks"):
        assert after[t] == before[t], f"{action} {params} changed {t}"
    ids = lambda rs: {r.split(",")[0] for r in (rs or [])}  # noqa: E731
    assert ids(after["snapshots"]) == ids(before["snapshots"]), f"{action} {params} added or removed a snapshot"
    return e


def test_create_describe_every_field_and_filter(net):
    ecs = net["ecs"]
    iid, system, data = running_instance(net)
    sid = ecs("CreateSnapshot", DiskId=data, SnapshotName="before-upgrade", Description="first snapshot",
              RetentionDays=7, **{"Tag.1.Key": "team", "Tag.1.Value": "db"})["SnapshotId"]
    assert sid.startswith("s-")
    s = snap(net, sid)
    # Recorded at once: progressing until the host uploaded it.
    assert s["Status"] in ("progressing", "accomplished")
    assert s["Available"] == (s["Status"] == "accomplished")
    assert (s["SnapshotName"], s["Description"], s["SourceDiskId"], s["SourceDiskType"], s["SnapshotType"]) == \
        ("before-upgrade", "first snapshot", data, "data", "user")
    assert (s["SourceDiskSize"], s["RetentionDays"], s["Usage"], s["Category"], s["RegionId"]) == \
        ("20", 7, "none", "standard", "cn-hangzhou")
    assert s["Progress"].endswith("%") and 0 <= int(s["Progress"][:-1]) <= 100
    assert s["CreationTime"].endswith("Z") and s["LastModifiedTime"].endswith("Z")
    assert s["SnapshotLinkId"].startswith("sl-")
    assert s["Tags"]["Tag"] == [{"TagKey": "team", "TagValue": "db"}]
    # JSON types as the model has them (Terraform waits on Available as a bool).
    for k in ("Available", "Encrypted", "InstantAccess"):
        assert isinstance(s[k], bool), k
    for k in ("RemainTime", "RetentionDays", "FullSnapshotSizeInBytes", "InstantAccessRetentionDays"):
        assert isinstance(s[k], int) and not isinstance(s[k], bool), k
    for k in ("Progress", "SourceDiskSize", "SnapshotSN", "Status"):
        assert isinstance(s[k], str), k
    assert (s["Encrypted"], s["InstantAccess"]) == (False, False)

    sys_snap = ecs("CreateSnapshot", DiskId=system)["SnapshotId"]
    mine = {sid, sys_snap}

    def ids(**filters):
        return {x["SnapshotId"] for x in ecs("DescribeSnapshots", **filters)["Snapshots"]["Snapshot"]} & mine

    assert ids() == mine
    assert ids(SnapshotIds=json.dumps([sys_snap])) == {sys_snap}
    assert ids(SnapshotIds=sid) == {sid}
    assert ids(DiskId=data) == {sid}
    assert ids(InstanceId=iid) == mine
    assert ids(InstanceId="i-bp1nosuchinstance") == set()
    assert ids(SnapshotLinkId=s["SnapshotLinkId"]) == {sid}
    assert ids(SnapshotName="before-upgrade") == {sid} and ids(SnapshotName="nothing") == set()
    assert ids(SnapshotType="user") == mine and ids(SnapshotType="auto") == set() and ids(SnapshotType="all") == mine
    assert ids(SourceDiskType="System") == {sys_snap} and ids(SourceDiskType="data") == {sid}
    assert ids(SourceDiskType="DATA") == {sid}, "case-insensitive"
    assert ids(Usage="none") == mine and ids(Usage="image") == set() and ids(Usage="disk") == set()
    assert ids(Status="all") == mine
    by_status = {st: ids(Status=st) for st in ("progressing", "accomplished", "failed")}
    assert set().union(*by_status.values()) == mine and sum(map(len, by_status.values())) == 2
    assert ids(**{"Tag.1.Key": "team"}) == {sid}
    assert ids(**{"Tag.1.Key": "team", "Tag.1.Value": "web"}) == set()
    assert ids(Encrypted="false") == mine and ids(Encrypted="true") == set()
    assert ids(Category="Standard") == mine and ids(Category="Flash") == set()
    assert ids(**{"Filter.1.Key": "CreationStartTime", "Filter.1.Value": "2000-01-01T00:00Z"}) == mine
    assert ids(**{"Filter.1.Key": "CreationStartTime", "Filter.1.Value": "2999-01-01T00:00Z"}) == set()
    # Paging, both styles.
    page = ecs("DescribeSnapshots", PageSize=1, PageNumber=2)
    assert (page["PageSize"], page["PageNumber"], page["TotalCount"], len(page["Snapshots"]["Snapshot"])) == \
        (1, 2, 2, 1)
    first = ecs("DescribeSnapshots", MaxResults=1)
    assert first["NextToken"] != "" and len(first["Snapshots"]["Snapshot"]) == 1
    rest = ecs("DescribeSnapshots", MaxResults=1, NextToken=first["NextToken"])
    assert rest["NextToken"] == ""
    assert rest["Snapshots"]["Snapshot"][0]["SnapshotId"] != first["Snapshots"]["Snapshot"][0]["SnapshotId"]


def test_links_modify_tags_delete(net):
    ecs = net["ecs"]
    iid, system, data = running_instance(net)
    sid = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    link = snap(net, sid)["SnapshotLinkId"]

    links = ecs("DescribeSnapshotLinks", DiskIds=json.dumps([data]))
    assert links["TotalCount"] == 1
    l = links["SnapshotLinks"]["SnapshotLink"][0]
    assert (l["SnapshotLinkId"], l["SourceDiskId"], l["SourceDiskType"], l["SourceDiskSize"], l["TotalCount"]) == \
        (link, data, "data", 20, 1)
    assert (l["InstanceId"], l["RegionId"], l["Category"], l["InstantAccess"]) == (iid, "cn-hangzhou", "standard", False)
    assert isinstance(l["TotalSize"], int)
    assert ecs("DescribeSnapshotLinks", SnapshotLinkIds=json.dumps([link]))["TotalCount"] == 1
    assert ecs("DescribeSnapshotLinks", InstanceId=iid)["TotalCount"] == 1
    assert ecs("DescribeSnapshotLinks", InstanceId="i-bp1nosuchinstance")["TotalCount"] == 0
    assert ecs("DescribeSnapshotLinks", DiskIds=json.dumps([system]))["TotalCount"] == 0

    ecs("ModifySnapshotAttribute", RegionId=None, SnapshotId=sid, SnapshotName="renamed", Description="kept",
        RetentionDays=30, DisableInstantAccess="true")
    s = snap(net, sid)
    assert (s["SnapshotName"], s["Description"], s["RetentionDays"]) == ("renamed", "kept", 30)
    ecs("ModifySnapshotAttribute", SnapshotId=sid, Description="")
    assert (snap(net, sid)["SnapshotName"], snap(net, sid)["Description"]) == ("renamed", "")

    ecs("TagResources", ResourceType="snapshot", **{"ResourceId.1": sid, "Tag.1.Key": "env", "Tag.1.Value": "ci"})
    assert snap(net, sid)["Tags"]["Tag"] == [{"TagKey": "env", "TagValue": "ci"}]
    listed = ecs("ListTagResources", ResourceType="snapshot", **{"ResourceId.1": sid})
    assert [t["TagKey"] for t in listed["TagResources"]["TagResource"]] == ["env"]

    ecs("DeleteSnapshot", RegionId=None, SnapshotId=sid)
    assert snap(net, sid) is None
    assert ecs("DescribeSnapshotLinks", DiskIds=json.dumps([data]))["TotalCount"] == 0
    refused(net, 404, "InvalidSnapshotId.NotFound", "DeleteSnapshot", SnapshotId=sid)
    # The disk takes a snapshot again once the deleted one no longer progresses.
    again = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    assert snap(net, again)["SnapshotLinkId"] == link, "one chain per disk"


def test_typed_sdk_and_client_token(net):
    from alibabacloud_ecs20140526 import models as m
    _, _, data = running_instance(net)
    c = ecs_v3(net["f"], net["key"])
    made = c.create_snapshot(m.CreateSnapshotRequest(disk_id=data, snapshot_name="typed", client_token="snap-1")).body
    again = c.create_snapshot(m.CreateSnapshotRequest(disk_id=data, snapshot_name="typed", client_token="snap-1")).body
    assert made.snapshot_id == again.snapshot_id
    got = c.describe_snapshots(m.DescribeSnapshotsRequest(region_id="cn-hangzhou",
                                                          snapshot_ids=json.dumps([made.snapshot_id]))).body
    s = got.snapshots.snapshot[0]
    assert (s.snapshot_name, s.source_disk_id, s.source_disk_size, s.encrypted) == ("typed", data, "20", False)
    assert got.total_count == 1
    c.modify_snapshot_attribute(m.ModifySnapshotAttributeRequest(snapshot_id=made.snapshot_id, snapshot_name="typed2"))
    links = c.describe_snapshot_links(m.DescribeSnapshotLinksRequest(region_id="cn-hangzhou",
                                                                     disk_ids=json.dumps([data]))).body
    assert links.snapshot_links.snapshot_link[0].total_count == 1
    c.delete_snapshot(m.DeleteSnapshotRequest(snapshot_id=made.snapshot_id, force=False))
    assert snap(net, made.snapshot_id) is None


def test_bad_inputs_change_nothing(net):
    ecs = net["ecs"]
    _, _, data = running_instance(net)
    never = ecs("CreateDisk", ZoneId=ZONE, Size=20)["DiskId"]
    wait_disk(net, never, "Available")
    for status, code, params in [
        (400, "MissingParameter", {}),
        (404, "InvalidDiskId.NotFound", {"DiskId": "d-bp1nosuchdisk"}),
        (403, "IncorrectDiskStatus.NeverAttached", {"DiskId": never}),
        (400, "InvalidSnapshotName.Malformed", {"DiskId": data, "SnapshotName": "auto-mine"}),
        (400, "InvalidSnapshotName.Malformed", {"DiskId": data, "SnapshotName": "http://x"}),
        (400, "InvalidSnapshotName.Malformed", {"DiskId": data, "SnapshotName": "x"}),
        (400, "InvalidSnapshotName.Malformed", {"DiskId": data, "SnapshotName": "1starts-with-digit"}),
        (400, "InvalidSnapshotName.Malformed", {"DiskId": data, "SnapshotName": "x" * 129}),
        (400, "InvalidDescription.Malformed", {"DiskId": data, "Description": "https://x"}),
        (400, "InvalidDescription.Malformed", {"DiskId": data, "Description": "x" * 257}),
        (400, "InvalidParameter", {"DiskId": data, "RetentionDays": "0"}),
        (400, "InvalidParameter", {"DiskId": data, "RetentionDays": "65537"}),
        (400, "InvalidParameter", {"DiskId": data, "RetentionDays": "soon"}),
        (400, "InvalidTagKey.Malformed", {"DiskId": data, "Tag.1.Key": "aliyun-x", "Tag.1.Value": "v"}),
        (400, "DryRunOperation", {"DiskId": data, "DryRun": "true"}),
    ]:
        refused(net, status, code, "CreateSnapshot", **params)

    sid = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    # One snapshot of a disk at a time: refused while the first progresses.
    if snap(net, sid)["Status"] == "progressing":
        before = rows(net["f"])
        e = ecs.error("CreateSnapshot", DiskId=data)
        if (e.status_code, e.code) != (403, "IncorrectDiskStatus.CreatingSnapshot"):
            raise AssertionError(f"a second snapshot while one progresses: {e}")
        after = rows(net["f"])
        assert after["resources"] == before["resources"]
    for status, code, params in [
        (400, "InvalidParameter", {"Status": "done"}),
        (400, "InvalidParameter", {"SnapshotType": "manual"}),
        (400, "InvalidParameter", {"SourceDiskType": "root"}),
        (400, "InvalidParameter", {"Usage": "tape"}),
        (400, "InvalidParameter", {"SnapshotIds": "[not json"}),
        (400, "InvalidParameter", {"SnapshotIds": json.dumps([f"s-{i}" for i in range(101)])}),
        (400, "InvalidParameter", {"PageSize": "101"}),
        (400, "InvalidParameter", {"MaxResults": "101"}),
        (400, "InvalidParameter", {"Filter.1.Key": "CreationStartTime", "Filter.1.Value": "yesterday"}),
        (400, "InvalidParameter", {"Filter.1.Key": "Color", "Filter.1.Value": "2026-01-01T00:00Z"}),
    ]:
        refused(net, status, code, "DescribeSnapshots", **params)
    for status, code, action, params in [
        (400, "MissingParameter", "DeleteSnapshot", {}),
        (404, "InvalidSnapshotId.NotFound", "DeleteSnapshot", {"SnapshotId": "s-bp1nosuchsnapshot"}),
        (400, "InvalidParameter", "DeleteSnapshot", {"SnapshotId": sid, "Force": "maybe"}),
        (400, "MissingParameter", "ModifySnapshotAttribute", {}),
        (404, "InvalidSnapshotId.NotFound", "ModifySnapshotAttribute", {"SnapshotId": "s-bp1nosuchsnapshot"}),
        (400, "InvalidSnapshotName.Malformed", "ModifySnapshotAttribute", {"SnapshotId": sid, "SnapshotName": "autoX"}),
        (400, "InvalidDescription.Malformed", "ModifySnapshotAttribute", {"SnapshotId": sid, "Description": "http://x"}),
        (400, "InvalidParameter", "ModifySnapshotAttribute", {"SnapshotId": sid, "RetentionDays": "0"}),
        (400, "InvalidParameter", "DescribeSnapshotLinks", {"DiskIds": "[1, 2"}),
        (400, "InvalidParameter", "DescribeSnapshotLinks", {"PageSize": "0"}),
    ]:
        refused(net, status, code, action, **params)
    assert snap(net, sid)["SnapshotName"] == ""


def test_another_accounts_snapshot_is_not_found(net, feitian):
    _, _, data = running_instance(net)
    sid = net["ecs"]("CreateSnapshot", DiskId=data)["SnapshotId"]
    stranger = Api(feitian, feitian.new_account(f"snap-stranger-{uuid.uuid4().hex[:6]}"), "ecs")
    for action, params in [("DeleteSnapshot", {"SnapshotId": sid}), ("ModifySnapshotAttribute", {"SnapshotId": sid}),
                           ("CreateSnapshot", {"DiskId": data})]:
        e = stranger.error(action, **params)
        assert e.status_code == 404 and e.code in ("InvalidSnapshotId.NotFound", "InvalidDiskId.NotFound"), action
    assert stranger("DescribeSnapshots", SnapshotIds=json.dumps([sid]))["TotalCount"] == 0
    assert stranger("DescribeSnapshotLinks", DiskIds=json.dumps([data]))["TotalCount"] == 0
    assert snap(net, sid) is not None


def test_a_deleted_disks_snapshots_stay(net):
    """Deleting a disk keeps its (user) snapshots and their chain, as on Alibaba Cloud."""
    ecs = net["ecs"]
    iid, _, data = running_instance(net)
    sid = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    ecs("DetachDisk", DiskId=data, InstanceId=iid)
    wait_disk(net, data, "Available")
    # Detached, the disk was attached once: it may still be snapshotted.
    if snap(net, sid)["Status"] != "progressing":
        ecs("DeleteSnapshot", SnapshotId=ecs("CreateSnapshot", DiskId=data)["SnapshotId"])
    ecs("DeleteDisk", DiskId=data)
    assert disk(net, data) is None
    s = snap(net, sid)
    assert (s["SourceDiskId"], s["SnapshotType"]) == (data, "user")
    link = ecs("DescribeSnapshotLinks", DiskIds=json.dumps([data]))["SnapshotLinks"]["SnapshotLink"][0]
    assert (link["SourceDiskName"], link["InstanceId"], link["TotalCount"]) == ("", "", 1)
    refused(net, 404, "InvalidDiskId.NotFound", "CreateSnapshot", DiskId=data)


def test_snapshot_quota(feitian):
    """`snapshots` caps how many snapshots an account holds in a region."""
    name = f"sq-{uuid.uuid4().hex[:10]}"
    net = make_net(feitian, feitian.new_account(name))
    _, system, data = running_instance(net)
    feitian.cli("account", "quota", name, "snapshots=1")
    net["ecs"]("CreateSnapshot", DiskId=data)
    refused(net, 403, "QuotaExceed.Snapshot", "CreateSnapshot", DiskId=system)


def test_uploader_accomplished_and_incremental_chain(net):
    """Needs the host's snapshot uploader: snapshots become accomplished (100 %, Available),
    the second of a disk is incremental to the first, and deleting the first leaves the
    second whole."""
    ecs = net["ecs"]
    _, _, data = running_instance(net)
    first = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    s = wait_accomplished(net, first)
    assert (s["Status"], s["Progress"], s["Available"], s["RemainTime"]) == ("accomplished", "100%", True, 0)
    second = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    s2 = wait_accomplished(net, second)
    assert s2["SnapshotLinkId"] == s["SnapshotLinkId"]
    link = ecs("DescribeSnapshotLinks", DiskIds=json.dumps([data]))["SnapshotLinks"]["SnapshotLink"][0]
    assert link["TotalCount"] == 2
    assert {x["SnapshotId"] for x in ecs("DescribeSnapshots", Status="accomplished", DiskId=data)
            ["Snapshots"]["Snapshot"]} == {first, second}
    ecs("DeleteSnapshot", SnapshotId=first)
    assert snap(net, second)["FullSnapshotSizeInBytes"] == s2["FullSnapshotSizeInBytes"], \
        "the second keeps every block it named"
    # The disk may be snapshotted again at once: no snapshot of it progresses.
    third = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    wait_accomplished(net, third)


def test_uploader_pin_is_taken_before_create_returns(net):
    """Needs the host's snapshot uploader (its pin): CreationTime is the pin's time, and a
    disk whose snapshot progresses refuses a second one until it is accomplished."""
    ecs = net["ecs"]
    _, _, data = running_instance(net)
    sid = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    s = wait_accomplished(net, sid)
    assert s["CreationTime"] <= s["LastModifiedTime"]


def test_uploader_disks_made_from_snapshots_and_reset(net):
    """CreateDisk SnapshotId, DataDisk.N.SnapshotId on RunInstances and ResetDisk, on the sim
    driver (its volumes hold no guest data: tests/sdk/test_qemu_snapshots.py checks the bytes):
    sizes, SourceSnapshotId, Usage, SnapshotCreatedDisk, and every refusal with an unchanged
    store."""
    ecs = net["ecs"]
    iid, system, data = running_instance(net)
    sid = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    s = wait_accomplished(net, sid)
    assert s["Usage"] == "none"

    # CreateDisk from it: the snapshot's size unless a larger Size is asked.
    d1 = ecs("CreateDisk", ZoneId=ZONE, SnapshotId=sid, DiskCategory="cloud_essd")["DiskId"]
    d2 = ecs("CreateDisk", ZoneId=ZONE, SnapshotId=sid, Size=50, DiskCategory="cloud_essd")["DiskId"]
    for did, size in ((d1, 20), (d2, 50)):
        wait_disk(net, did, "Available")
        got = disk(net, did)
        assert (got["SourceSnapshotId"], got["Size"]) == (sid, size)
    made = ecs("DescribeDisks", SnapshotId=sid)["Disks"]["Disk"]
    assert sorted(d["DiskId"] for d in made) == sorted([d1, d2])
    assert snap(net, sid)["Usage"] == "disk"

    # DataDisk.N.SnapshotId: the instance's data disk is made from it.
    other = ecs("RunInstances", ImageId=IMAGE, InstanceType="ecs.t5-lc1m1.small", VSwitchId=net["vsw"],
                SecurityGroupId=net["sg"], **{"DataDisk.1.SnapshotId": sid, "DataDisk.1.Category": "cloud_essd"})
    oid = other["InstanceIdSets"]["InstanceIdSet"][0]
    wait_for(lambda: ecs("DescribeInstances", InstanceIds=json.dumps([oid]))["Instances"]["Instance"][0]["Status"]
             == "Running", timeout=30, what=f"{oid} Running")
    od = next(d for d in ecs("DescribeDisks", InstanceId=oid)["Disks"]["Disk"] if d["Type"] == "data")
    assert (od["SourceSnapshotId"], od["Size"], od["Status"]) == (sid, 20, "In_use")

    # A snapshot disks were made from is kept unless forced.
    refused(net, 403, "SnapshotCreatedDisk", "DeleteSnapshot", SnapshotId=sid)

    # ResetDisk: the instance must be stopped, the snapshot the disk's own and accomplished.
    refused(net, 403, "IncorrectInstanceStatus", "ResetDisk", DiskId=data, SnapshotId=sid)
    refused(net, 404, "InvalidSnapshotId.NotFound", "ResetDisk", DiskId=data, SnapshotId="s-nosuch")
    refused(net, 404, "InvalidDiskId.NotFound", "ResetDisk", DiskId="d-nosuch", SnapshotId=sid)
    refused(net, 403, "OperationDenied", "ResetDisk", DiskId=d1, SnapshotId=sid)
    ecs("StopInstances", **{"InstanceId.1": iid})
    wait_for(lambda: ecs("DescribeInstances", InstanceIds=json.dumps([iid]))["Instances"]["Instance"][0]["Status"]
             == "Stopped", timeout=30, what=f"{iid} Stopped")
    ecs("ResetDisk", DiskId=data, SnapshotId=sid)
    wait_disk(net, data, "In_use")
    # A detached disk resets too, and stays Available.
    ecs("DetachDisk", DiskId=data, InstanceId=iid)
    wait_disk(net, data, "Available")
    ecs("ResetDisk", DiskId=data, SnapshotId=sid)
    wait_disk(net, data, "Available")

    # Bad input for the restores.
    refused(net, 404, "InvalidSnapshotId.NotFound", "CreateDisk", ZoneId=ZONE, SnapshotId="s-nosuch")
    refused(net, 404, "InvalidSnapshotId.NotFound", "RunInstances", ImageId=IMAGE, InstanceType="ecs.t5-lc1m1.small",
            VSwitchId=net["vsw"], SecurityGroupId=net["sg"], **{"DataDisk.1.SnapshotId": "s-nosuch"})
    busy = ecs("CreateSnapshot", DiskId=system)["SnapshotId"]
    if snap(net, busy)["Status"] == "progressing":
        e = net["ecs"].error("CreateDisk", ZoneId=ZONE, SnapshotId=busy)
        assert (e.status_code, e.code) in ((403, "InvalidSnapshotId.NotReady"),), e
    wait_accomplished(net, busy)
