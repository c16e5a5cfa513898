"""Custom images through alibabacloud_ecs20140526 (every answer checked against the official
models): CreateImage from an instance, a snapshot and DiskDeviceMapping.N; DescribeImages with
the Status list, ImageOwnerAlias, exact and fuzzy ImageName, DiskDeviceMappings; DeleteImage
(ImageUsingByInstance unless Force); ModifyImageAttribute; Modify/DescribeImageSharePermission
(the other account sees `others`, launches from it, cannot change it; empty lists are a no-op);
CopyImage to the second region and CancelCopyImage; AddTags; and the refusals, each with the
store unchanged (docs/snapshots.md guarantee 7).

These tests run on the default driver (the guests are models) with real disks and the real
snapshot uploader; `test_qemu_images.py` boots a guest from an image and reads its files."""
import json
import re
import uuid

import pytest

from conftest import Api, db_snapshot, wait_for
from test_snapshots import UPLOAD_TIMEOUT, make_net, running_instance, snap, wait_accomplished

IMAGE = "feitian_linux_x64_1G_alibase_20261122.vhd"
ALL_STATUSES = "Waiting,Creating,CreateFailed,Available"
TABLES = ("images", "image_disks", "image_shares", "resources", "tags", "client_tokens", "disks", "instances")


def rows(f):
    s = db_snapshot(f)
    return {t: s.get(t) for t in TABLES}


def refused(net, status, code, action, **params):
    """The call fails with `status` and `code`, and no image, share, tag or disk changed."""
    before = rows(net["f"])
    e = net["ecs"].error(action, **params)
    assert (e.status_code, e.code) == (status, code), f"{action} {params}: {e}"
    after = rows(net["f"])
    for t in TABLES:
        assert after[t] == before[t], f"{action} {params} changed {t}"
    return e


def image(net, iid, **kw):
    got = net["ecs"]("DescribeImages", ImageId=iid, Status=ALL_STATUSES, **kw)["Images"]["Image"]
    return got[0] if got else None


def wait_available(net, iid):
    wait_for(lambda: (image(net, iid) or {}).get("Status") == "Available", timeout=UPLOAD_TIMEOUT, pause=0.5,
             what=f"{iid} Available")
    return image(net, iid)


def name():
    return f"img-{uuid.uuid4().hex[:10]}"


def account_id(feitian, label):
    """A new account: its key pair and its numeric id (what sharing names)."""
    account = f"{label}-{uuid.uuid4().hex[:8]}"
    out = feitian.cli("account", "create", account)
    m = re.search(r"created account \S+ \((\d+)\)", out.stderr)
    assert m, out.stderr
    c = json.loads(out.stdout.strip().splitlines()[-1])
    return (c["access_key_id"], c["access_key_secret"]), m.group(1)


@pytest.fixture
def net(feitian, account):
    return make_net(feitian, account)


def test_image_of_an_instance_lists_while_creating_and_launches(net):
    ecs = net["ecs"]
    iid, system, data = running_instance(net)
    n = name()
    # Terraform and Packer send Description even when empty.
    mid = ecs("CreateImage", InstanceId=iid, ImageName=n, Description="", ImageVersion="1.0",
              ClientToken=uuid.uuid4().hex)["ImageId"]
    assert mid.startswith("m-bp")
    # Listed at once (Packer halts on "Unable to find created image" otherwise).
    first = image(net, mid)
    assert first and first["Status"] in ("Creating", "Available"), first
    assert first["ImageOwnerAlias"] == "self" and first["IsCopied"] is False
    got = wait_available(net, mid)
    assert (got["ImageName"], got["ImageVersion"], got["Description"], got["Progress"]) == (n, "1.0", "", "100%")
    assert got["Size"] == 20 and got["OSType"] == "linux" and got["Platform"] == "Others Linux"
    assert got["OSName"] == "Feitian Linux 1.0 64位"
    maps = got["DiskDeviceMappings"]["DiskDeviceMapping"]
    assert [(m["Device"], m["Type"]) for m in maps] == [("/dev/xvda", "system"), ("/dev/xvdb", "data")]
    sids = [m["SnapshotId"] for m in maps]
    for sid, did in zip(sids, (system, data)):
        s = wait_accomplished(net, sid)
        assert (s["SourceDiskId"], s["Usage"]) == (did, "image")
    # Exact name, as Packer asks; a longer name is another image; stars are the fuzzy search.
    assert [i["ImageId"] for i in ecs("DescribeImages", ImageName=n, Status=ALL_STATUSES,
                                      ImageOwnerAlias="self")["Images"]["Image"]] == [mid]
    assert ecs("DescribeImages", ImageName=n[:-1], Status=ALL_STATUSES)["Images"]["Image"] == []
    assert [i["ImageId"] for i in ecs("DescribeImages", ImageName=n[:-2] + "*")["Images"]["Image"]] == [mid]
    assert ecs("DescribeImages", ImageOwnerAlias="system", ImageName=n)["Images"]["Image"] == []
    assert [i["ImageId"] for i in ecs("DescribeImages", SnapshotId=sids[0])["Images"]["Image"]] == [mid]
    # An image's snapshots cannot be deleted, even forced.
    refused(net, 403, "SnapshotCreatedImage", "DeleteSnapshot", SnapshotId=sids[0], Force=True)
    refused(net, 400, "InvalidImageName.Duplicated", "CreateImage", InstanceId=iid, ImageName=n)

    # Launch from it: the system disk and the data disk are made from the image's snapshots.
    new = ecs("RunInstances", ImageId=mid, InstanceType="ecs.t5-lc1m1.small", VSwitchId=net["vsw"],
              SecurityGroupId=net["sg"])["InstanceIdSets"]["InstanceIdSet"][0]
    wait_for(lambda: ecs("DescribeInstances", InstanceIds=json.dumps([new]))["Instances"]["Instance"][0]["Status"]
             == "Running", timeout=UPLOAD_TIMEOUT, what=f"{new} Running")
    inst = ecs("DescribeInstances", InstanceIds=json.dumps([new]))["Instances"]["Instance"][0]
    assert (inst["ImageId"], inst["OSName"]) == (mid, "Feitian Linux 1.0 64位")
    disks = sorted(ecs("DescribeDisks", InstanceId=new)["Disks"]["Disk"], key=lambda d: d["Device"])
    assert [(d["Type"], d["SourceSnapshotId"], d["Size"]) for d in disks] == \
        [("system", sids[0], 20), ("data", sids[1], 20)]
    assert image(net, mid)["Usage"] == "instance"
    refused(net, 400, "InvalidSystemDiskSize.LessThanImageSize", "RunInstances", ImageId=mid,
            InstanceType="ecs.t5-lc1m1.small", VSwitchId=net["vsw"], SecurityGroupId=net["sg"],
            **{"SystemDisk.Size": "10"})

    # In use: DeleteImage needs Force; a missing image is ignored, as the API says.
    refused(net, 403, "ImageUsingByInstance", "DeleteImage", ImageId=mid)
    ecs("DeleteImage", ImageId="m-bp1doesnotexist000")
    ecs("DeleteImage", ImageId=mid, Force=True)
    assert image(net, mid) is None
    # Its snapshots stay, and may be deleted now (the new disks were filled from them).
    wait_for(lambda: snap(net, sids[1])["Usage"] == "disk", what="usage back to disk")
    ecs("DeleteSnapshot", SnapshotId=sids[1], Force=True)


def test_image_of_a_snapshot_and_of_mappings(net):
    ecs = net["ecs"]
    iid, system, data = running_instance(net)
    s_sys = ecs("CreateSnapshot", DiskId=system)["SnapshotId"]
    s_data = ecs("CreateSnapshot", DiskId=data)["SnapshotId"]
    # Not accomplished yet: not ready.
    if snap(net, s_sys)["Status"] == "progressing":
        refused(net, 403, "InvalidSnapshotId.NotReady", "CreateImage", SnapshotId=s_sys, ImageName=name())
    wait_accomplished(net, s_sys)
    wait_accomplished(net, s_data)

    one = ecs("CreateImage", SnapshotId=s_sys, ImageName=name())["ImageId"]
    got = image(net, one)
    assert got["Status"] == "Available", "an image of an accomplished snapshot needs nothing more"
    assert [m["SnapshotId"] for m in got["DiskDeviceMappings"]["DiskDeviceMapping"]] == [s_sys]
    assert got["OSName"] == "Feitian Linux 1.0 64位"

    two = ecs("CreateImage", ImageName=name(), Platform="Debian", **{
        "DiskDeviceMapping.1.SnapshotId": s_sys, "DiskDeviceMapping.1.Device": "/dev/xvda",
        "DiskDeviceMapping.2.SnapshotId": s_data, "DiskDeviceMapping.2.Size": "40"})["ImageId"]
    got = image(net, two)
    assert [(m["Device"], m["Type"], m["Size"], m["SnapshotId"])
            for m in got["DiskDeviceMappings"]["DiskDeviceMapping"]] == \
        [("/dev/xvda", "system", "20", s_sys), ("/dev/xvdb", "data", "40", s_data)]
    assert got["Platform"] == "Debian"

    # The refusals.
    refused(net, 400, "MissingParameter", "CreateImage", ImageName=name())
    refused(net, 400, "InvalidParameter", "CreateImage", InstanceId=iid, SnapshotId=s_sys)
    refused(net, 403, "OperationDenied", "CreateImage", **{
        "DiskDeviceMapping.1.SnapshotId": s_data, "DiskDeviceMapping.1.DiskType": "data"})
    refused(net, 403, "OperationDenied", "CreateImage", **{
        "DiskDeviceMapping.1.SnapshotId": s_sys, "DiskDeviceMapping.1.DiskType": "system",
        "DiskDeviceMapping.2.SnapshotId": s_data, "DiskDeviceMapping.2.DiskType": "system"})
    refused(net, 400, "InvalidSize.ValueNotSupported", "CreateImage", **{
        "DiskDeviceMapping.1.SnapshotId": s_sys, "DiskDeviceMapping.1.Size": "5"})
    refused(net, 404, "InvalidSnapshotId.NotFound", "CreateImage", SnapshotId="s-bp1doesnotexist000")
    refused(net, 404, "InvalidInstanceId.NotFound", "CreateImage", InstanceId="i-bp1doesnotexist000")
    for bad in ("1x", "aliyun-image", "acs:image", "http://image", "x" * 129):
        refused(net, 400, "InvalidImageName.Malformed", "CreateImage", SnapshotId=s_sys, ImageName=bad)
    refused(net, 400, "InvalidDescription.Malformed", "CreateImage", SnapshotId=s_sys, Description="x")
    refused(net, 400, "InvalidParameter", "DescribeImages", Status="Sleeping")
    refused(net, 400, "InvalidParameter", "DescribeImages", ImageOwnerAlias="nobody")

    # ModifyImageAttribute: name, description, family, deprecation; a name in use is refused.
    ecs("ModifyImageAttribute", ImageId=one, ImageName="renamed-" + one[-6:], Description="now described",
        ImageFamily="fam-a")
    got = image(net, one)
    assert (got["ImageName"], got["Description"], got["ImageFamily"]) == \
        ("renamed-" + one[-6:], "now described", "fam-a")
    refused(net, 400, "InvalidImageName.Duplicated", "ModifyImageAttribute", ImageId=one,
            ImageName=image(net, two)["ImageName"])
    ecs("ModifyImageAttribute", ImageId=one, Status="Deprecated")
    assert ecs("DescribeImages", ImageId=one, Status="Deprecated")["Images"]["Image"][0]["Status"] == "Deprecated"
    assert ecs("DescribeImages", ImageId=one)["Images"]["Image"] == [], "the default Status is Available"
    refused(net, 404, "InvalidImageId.NotFound", "ModifyImageAttribute", ImageId="m-bp1doesnotexist000")

    # Tags: the legacy AddTags (Packer) and TagResources; DescribeImages filters on them.
    ecs("AddTags", ResourceType="image", ResourceId=two, **{"Tag.1.Key": "built-by", "Tag.1.Value": "packer"})
    ecs("TagResources", ResourceType="image", **{"ResourceId.1": two, "Tag.1.Key": "env", "Tag.1.Value": "ci"})
    got = image(net, two)
    assert {(t["TagKey"], t["TagValue"]) for t in got["Tags"]["Tag"]} == {("built-by", "packer"), ("env", "ci")}
    assert [i["ImageId"] for i in ecs("DescribeImages", **{"Tag.1.Key": "built-by", "Tag.1.Value": "packer"})
            ["Images"]["Image"]] == [two]
    ecs("RemoveTags", ResourceType="image", ResourceId=two, **{"Tag.1.Key": "built-by"})
    assert [t["TagKey"] for t in image(net, two)["Tags"]["Tag"]] == ["env"]
    ecs("DeleteImage", ImageId=one)
    ecs("DeleteImage", ImageId=two)


def test_shared_image_launches_in_the_other_account_which_cannot_change_it(feitian, net):
    ecs = net["ecs"]
    iid, system, _ = running_instance(net)
    s_sys = ecs("CreateSnapshot", DiskId=system)["SnapshotId"]
    wait_accomplished(net, s_sys)
    mid = ecs("CreateImage", SnapshotId=s_sys, ImageName=name())["ImageId"]
    key_b, id_b = account_id(feitian, "share")
    other = make_net(feitian, key_b)
    b = other["ecs"]
    assert b("DescribeImages", ImageId=mid)["Images"]["Image"] == []
    refused(other, 404, "InvalidImageId.NotFound", "RunInstances", ImageId=mid, InstanceType="ecs.t5-lc1m1.small",
            VSwitchId=other["vsw"], SecurityGroupId=other["sg"])

    # Both lists empty: a no-op that succeeds (Packer's last step, always).
    before = rows(feitian)
    ecs("ModifyImageSharePermission", ImageId=mid)
    assert rows(feitian)["image_shares"] == before["image_shares"]
    refused(net, 400, "InvalidAccount.NotFound", "ModifyImageSharePermission", ImageId=mid,
            **{"AddAccount.1": "999999999999"})
    refused(net, 400, "InvalidParameter", "ModifyImageSharePermission", ImageId=mid, **{"AddAccount.1": "bob"})
    ecs("ModifyImageSharePermission", ImageId=mid, **{"AddAccount.1": id_b})
    shared = ecs("DescribeImageSharePermission", ImageId=mid)
    assert [a["AliyunId"] for a in shared["Accounts"]["Account"]] == [id_b] and shared["TotalCount"] == 1
    assert image(net, mid)["IsSelfShared"] == "True"

    # The other account: sees it as `others`, launches from it, cannot change or delete it.
    seen = b("DescribeImages", ImageOwnerAlias="others")["Images"]["Image"]
    assert [(i["ImageId"], i["ImageOwnerAlias"]) for i in seen] == [(mid, "others")]
    assert b("DescribeImages", ImageOwnerAlias="self")["Images"]["Image"] == []
    theirs = b("RunInstances", ImageId=mid, InstanceType="ecs.t5-lc1m1.small", VSwitchId=other["vsw"],
               SecurityGroupId=other["sg"])["InstanceIdSets"]["InstanceIdSet"][0]
    wait_for(lambda: b("DescribeInstances", InstanceIds=json.dumps([theirs]))["Instances"]["Instance"][0]["Status"]
             == "Running", timeout=UPLOAD_TIMEOUT, what=f"{theirs} Running")
    sysdisk = next(d for d in b("DescribeDisks", InstanceId=theirs)["Disks"]["Disk"] if d["Type"] == "system")
    assert sysdisk["ImageId"] == mid
    for action, params in (("DeleteImage", {}), ("ModifyImageAttribute", {"ImageName": "mine-now"}),
                           ("ModifyImageSharePermission", {"AddAccount.1": id_b}),
                           ("CopyImage", {"DestinationRegionId": "cn-hangzhou"})):
        refused(other, 403, "OperationDenied", action, ImageId=mid, **params)
    # The owner cannot delete it while the other account's instance runs from it.
    refused(net, 403, "ImageUsingByInstance", "DeleteImage", ImageId=mid)

    ecs("ModifyImageSharePermission", ImageId=mid, **{"RemoveAccount.1": id_b})
    assert b("DescribeImages", ImageId=mid, Status=ALL_STATUSES)["Images"]["Image"] == []
    assert ecs("DescribeImageSharePermission", ImageId=mid)["Accounts"]["Account"] == []
    b("DeleteInstance", InstanceId=theirs, Force=True)
    wait_for(lambda: not b("DescribeInstances", InstanceIds=json.dumps([theirs]))["Instances"]["Instance"],
             timeout=30, what=f"{theirs} deleted")
    ecs("DeleteImage", ImageId=mid)


def test_copy_to_the_second_region(net):
    ecs = net["ecs"]
    regions = [r["RegionId"] for r in ecs("DescribeRegions")["Regions"]["Region"]]
    assert "cn-shanghai" in regions, f"the default configuration has a second region: {regions}"
    _, system, _ = running_instance(net)
    s_sys = ecs("CreateSnapshot", DiskId=system)["SnapshotId"]
    wait_accomplished(net, s_sys)
    n = name()
    mid = ecs("CreateImage", SnapshotId=s_sys, ImageName=n, Description="the source")["ImageId"]
    refused(net, 400, "DestinationRegion.NotFound", "CopyImage", ImageId=mid, DestinationRegionId="mars-1")
    cid = ecs("CopyImage", ImageId=mid, DestinationRegionId="cn-shanghai", DestinationImageName=n,
              ClientToken=uuid.uuid4().hex)["ImageId"]
    assert cid.startswith("m-uf")
    # Packer's last call on every copy, whatever its status.
    ecs("ModifyImageSharePermission", ImageId=cid, RegionId="cn-shanghai")
    got = image(net, cid, RegionId="cn-shanghai")
    assert (got["ImageName"], got["Description"], got["IsCopied"], got["Status"]) == (n, "the source", True,
                                                                                       "Available")
    copied_snap = got["DiskDeviceMappings"]["DiskDeviceMapping"][0]["SnapshotId"]
    assert copied_snap != s_sys
    s = ecs("DescribeSnapshots", RegionId="cn-shanghai", SnapshotIds=json.dumps([copied_snap]))["Snapshots"]["Snapshot"]
    assert s and s[0]["Status"] == "accomplished" and s[0]["Usage"] == "image"
    assert image(net, cid) is None, "the copy is in the destination region only"
    refused(net, 400, "InvalidImageName.Duplicated", "CopyImage", ImageId=mid, DestinationRegionId="cn-shanghai",
            DestinationImageName=n)
    refused(net, 400, "ImageCreatedNotFromCopy", "CancelCopyImage", ImageId=mid)
    refused(net, 400, "IncorrectImageStatus", "CancelCopyImage", ImageId=cid, RegionId="cn-shanghai")
    # The source goes; the copy keeps every block (its snapshot names them).
    ecs("DeleteImage", ImageId=mid)
    ecs("DeleteSnapshot", SnapshotId=s_sys)
    ecs("DeleteImage", ImageId=cid, RegionId="cn-shanghai")
