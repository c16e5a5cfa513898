"""Cloud disks through alibabacloud_ecs20140526 (every answer checked against the official
models): CreateDisk, DescribeDisks with every filter, AttachDisk, DetachDisk, ResizeDisk,
ReInitDisk, ModifyDiskAttribute, DeleteDisk, DataDisk.N on RunInstances and DeleteWithInstance
both ways, and every bad input: its HTTP status, its code, and that nothing changed."""
import json

import pytest

from conftest import Api, db_snapshot, ecs_v3, wait_for

IMAGE = "feitian_linux_x64_1G_alibase_20261122.vhd"
ZONE = "cn-hangzhou-h"
OTHER_ZONE = "cn-hangzhou-i"
# What a disk action may change: compared before and after a refused call.
DISK_TABLES = ("disks", "disk_volume_deletions", "resources", "tags", "client_tokens", "instances")


@pytest.fixture
def net(feitian, account):
    """A VPC with a vSwitch in ZONE and a security group, in a fresh account."""
    vpc = Api(feitian, account, "vpc")
    ecs = Api(feitian, account, "ecs")
    vid = vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    sid = vpc("CreateVSwitch", VpcId=vid, CidrBlock="192.168.1.0/24", ZoneId=ZONE)["VSwitchId"]
    wait_for(lambda: vpc("DescribeVSwitchAttributes", VSwitchId=sid)["Status"] == "Available")
    gid = ecs("CreateSecurityGroup", VpcId=vid)["SecurityGroupId"]
    return dict(vpc=vpc, ecs=ecs, vpc_id=vid, vsw=sid, sg=gid, key=account, f=feitian)


def run(net, **kw):
    kw.setdefault("ImageId", IMAGE)
    kw.setdefault("InstanceType", "ecs.t5-lc1m1.small")
    kw.setdefault("VSwitchId", net["vsw"])
    kw.setdefault("SecurityGroupId", net["sg"])
    return net["ecs"]("RunInstances", **kw)["InstanceIdSets"]["InstanceIdSet"][0]


def instance_status(net, iid):
    return net["ecs"]("DescribeInstances", InstanceIds=json.dumps([iid]))["Instances"]["Instance"][0]["Status"]


def wait_instance(net, iid, want):
    wait_for(lambda: instance_status(net, iid) == want, timeout=20, what=f"{iid} {want}")


def disk(net, did):
    got = net["ecs"]("DescribeDisks", DiskIds=json.dumps([did]))["Disks"]["Disk"]
    return got[0] if got else None


def wait_disk(net, did, want):
    wait_for(lambda: (disk(net, did) or {}).get("Status") == want, timeout=20, what=f"{did} {want}")


def create(net, **kw):
    kw.setdefault("ZoneId", ZONE)
    kw.setdefault("Size", 20)
    did = net["ecs"]("CreateDisk", **kw)["DiskId"]
    assert did.startswith("d-")
    wait_disk(net, did, "Available")
    return did


def disk_rows(f):
    snap = db_snapshot(f)
    return {t: snap.get(t) for t in DISK_TABLES}


def refused(net, status, code, action, **params):
    """The call fails with `status` and `code`, and the store's disk state is as it was."""
    before = disk_rows(net["f"])
    e = net["ecs"].error(action, **params)
    assert (e.status_code, e.code) == (status, code), f"{action} {params}: {e}"
    after = disk_rows(net["f"])
    # The host drains the queue of volumes to delete in the background, so rows queued by
    # earlier calls may go meanwhile; a refused call must not queue one.
    queued_before = set(before.pop("disk_volume_deletions") or [])
    queued_after = set(after.pop("disk_volume_deletions") or [])
    assert queued_after <= queued_before, f"{action} {params} queued a volume deletion"
    assert after == before, f"{action} {params} changed the store"
    return e


def test_create_describe_every_field_and_filter(net):
    ecs = net["ecs"]
    did = ecs("CreateDisk", ZoneId=ZONE, Size=40, DiskCategory="cloud_essd", PerformanceLevel="PL0",
              DiskName="data-1", Description="first disk", **{"Tag.1.Key": "team", "Tag.1.Value": "db"})["DiskId"]
    # Recorded at once; Available once the host made its volume.
    assert disk(net, did)["Status"] in ("Creating", "Available")
    wait_disk(net, did, "Available")
    d = disk(net, did)
    assert (d["DiskName"], d["Description"], d["Category"], d["PerformanceLevel"], d["Size"]) == \
        ("data-1", "first disk", "cloud_essd", "PL0", 40)
    assert (d["Type"], d["ZoneId"], d["RegionId"], d["InstanceId"], d["Device"]) == ("data", ZONE, "cn-hangzhou", "", "")
    assert (d["Portable"], d["DeleteWithInstance"], d["Encrypted"]) == (True, False, False)
    # JSON types as the model has them (Terraform type-asserts DeleteAutoSnapshot as a bool).
    for k in ("Portable", "DeleteWithInstance", "DeleteAutoSnapshot", "EnableAutoSnapshot", "Encrypted",
              "EnableAutomatedSnapshotPolicy", "BurstingEnabled"):
        assert isinstance(d[k], bool), k
    for k in ("Size", "IOPS", "IOPSRead", "IOPSWrite", "MountInstanceNum", "ProvisionedIops", "Throughput"):
        assert isinstance(d[k], int) and not isinstance(d[k], bool), k
    assert d["Tags"]["Tag"] == [{"TagKey": "team", "TagValue": "db"}]
    for wrapper, inner in (("OperationLocks", "OperationLock"), ("Attachments", "Attachment"),
                           ("MountInstances", "MountInstance")):
        assert d[wrapper][inner] == [], wrapper
    assert d["CreationTime"].endswith("Z")

    other = create(net, DiskCategory="cloud_ssd", Size=30, ZoneId=OTHER_ZONE)
    mine = {did, other}

    def ids(**filters):
        return {x["DiskId"] for x in ecs("DescribeDisks", **filters)["Disks"]["Disk"]} & mine

    assert ids() == mine
    assert ids(ZoneId=ZONE) == {did}
    assert ids(DiskIds=json.dumps([other])) == {other}
    assert ids(DiskType="data") == mine and ids(DiskType="system") == set() and ids(DiskType="all") == mine
    assert ids(Category="cloud_ssd") == {other} and ids(Category="all") == mine
    assert ids(Status="Available") == mine and ids(Status="In_use") == set() and ids(Status="All") == mine
    assert ids(DiskName="data-1") == {did}
    assert ids(PerformanceLevel="PL0") == {did}
    assert ids(**{"Tag.1.Key": "team"}) == {did}
    assert ids(**{"Tag.1.Key": "team", "Tag.1.Value": "web"}) == set()
    assert ids(Portable="true") == mine and ids(Portable="false") == set()
    assert ids(DeleteWithInstance="false") == mine and ids(DeleteWithInstance="true") == set()
    assert ids(DeleteAutoSnapshot="true") == mine and ids(EnableAutoSnapshot="false") == set()
    assert ids(Encrypted="false") == mine and ids(Encrypted="true") == set()
    assert ids(SnapshotId="s-bp1nosuchsnapshot") == set()
    assert ids(AutoSnapshotPolicyId="sp-bp1nosuchpolicy") == set()
    assert ids(DiskChargeType="PostPaid") == mine and ids(DiskChargeType="PrePaid") == set()
    assert ids(InstanceId="i-bp1nosuchinstance") == set()
    # Paging, both styles.
    page = ecs("DescribeDisks", PageSize=1, PageNumber=2)
    assert (page["PageSize"], page["PageNumber"], page["TotalCount"], len(page["Disks"]["Disk"])) == (1, 2, 2, 1)
    first = ecs("DescribeDisks", MaxResults=1)
    assert first["NextToken"] != "" and len(first["Disks"]["Disk"]) == 1
    rest = ecs("DescribeDisks", MaxResults=1, NextToken=first["NextToken"])
    assert rest["NextToken"] == "" and rest["Disks"]["Disk"][0]["DiskId"] != first["Disks"]["Disk"][0]["DiskId"]


def test_attach_detach_resize_reinit_modify_delete(net):
    ecs = net["ecs"]
    a = run(net)
    b = run(net)
    wait_instance(net, a, "Running")
    wait_instance(net, b, "Running")
    did = create(net, Size=20, DiskCategory="cloud_efficiency")

    # Attach to a running instance: Attaching, then In_use once the host plugged it.
    ecs("AttachDisk", RegionId=None, DiskId=did, InstanceId=a, DeleteWithInstance="false")
    assert disk(net, did)["Status"] in ("Attaching", "In_use")
    wait_disk(net, did, "In_use")
    d = disk(net, did)
    assert (d["InstanceId"], d["Device"], d["DeleteWithInstance"]) == (a, "/dev/xvdb", False)
    assert d["Attachments"]["Attachment"][0]["InstanceId"] == a
    assert d["MountInstances"]["MountInstance"][0]["Device"] == "/dev/xvdb"
    assert ecs("DescribeDisks", InstanceId=a, DiskType="data")["Disks"]["Disk"][0]["DiskId"] == did

    # Detach: Detaching, then Available and attached to nothing.
    ecs("DetachDisk", RegionId=None, DiskId=did, InstanceId=a)
    assert disk(net, did)["Status"] in ("Detaching", "Available")
    wait_disk(net, did, "Available")
    d = disk(net, did)
    assert (d["InstanceId"], d["Device"], d["Attachments"]["Attachment"]) == ("", "", [])
    assert d["DetachedTime"] != ""

    # Attach to a second instance, stopped: In_use at once.
    ecs("StopInstance", InstanceId=b)
    wait_instance(net, b, "Stopped")
    ecs("AttachDisk", DiskId=did, InstanceId=b)
    assert disk(net, did)["Status"] == "In_use"
    assert disk(net, did)["InstanceId"] == b

    # Resize offline (the instance is stopped), then online once it runs.
    ecs("ResizeDisk", DiskId=did, NewSize=30)
    assert disk(net, did)["Size"] == 30
    refused(net, 403, "IncorrectInstanceStatus", "ResizeDisk", DiskId=did, NewSize=40, Type="online")
    ecs("StartInstance", InstanceId=b)
    wait_instance(net, b, "Running")
    ecs("ResizeDisk", DiskId=did, NewSize=40, Type="online")
    assert disk(net, did)["Size"] == 40

    # Re-initialise: needs the instance stopped.
    refused(net, 403, "IncorrectInstanceStatus", "ReInitDisk", DiskId=did)
    ecs("StopInstance", InstanceId=b)
    wait_instance(net, b, "Stopped")
    ecs("ReInitDisk", DiskId=did)
    assert disk(net, did)["Status"] in ("ReIniting", "In_use")
    wait_disk(net, did, "In_use")
    system = ecs("DescribeDisks", InstanceId=b, DiskType="system")["Disks"]["Disk"][0]
    ecs("ReInitDisk", RegionId=None, DiskId=system["DiskId"])
    wait_disk(net, system["DiskId"], "In_use")
    assert disk(net, system["DiskId"])["ImageId"] == IMAGE

    # Modify: one disk by DiskId, several by DiskIds.N; bools stay bools.
    ecs("ModifyDiskAttribute", RegionId=None, DiskId=did, DiskName="renamed", Description="moved to b",
        DeleteAutoSnapshot="false", EnableAutoSnapshot="false")
    d = disk(net, did)
    assert (d["DiskName"], d["Description"], d["DeleteAutoSnapshot"], d["EnableAutoSnapshot"]) == \
        ("renamed", "moved to b", False, False)
    other = create(net)
    ecs("ModifyDiskAttribute", **{"DiskIds.1": did, "DiskIds.2": other, "DeleteWithInstance": "true"})
    assert disk(net, did)["DeleteWithInstance"] is True and disk(net, other)["DeleteWithInstance"] is True

    # Delete: refused while attached; fine once detached.
    refused(net, 403, "IncorrectDiskStatus", "DeleteDisk", DiskId=did)
    ecs("DetachDisk", DiskId=did, InstanceId=b)
    wait_disk(net, did, "Available")
    ecs("DeleteDisk", RegionId=None, DiskId=did)
    ecs("DeleteDisk", DiskId=other)
    assert disk(net, did) is None and disk(net, other) is None
    refused(net, 404, "InvalidDiskId.NotFound", "DeleteDisk", DiskId=did)


def test_create_disk_for_an_instance_attaches_it(net):
    ecs = net["ecs"]
    iid = run(net)
    wait_instance(net, iid, "Running")
    did = ecs("CreateDisk", InstanceId=iid, Size=20)["DiskId"]
    wait_disk(net, did, "In_use")
    d = disk(net, did)
    assert (d["InstanceId"], d["ZoneId"], d["Device"]) == (iid, ZONE, "/dev/xvdb")


def test_data_disks_on_run_instances_and_delete_with_instance(net):
    ecs = net["ecs"]
    iid = run(net, **{
        "DataDisk.1.Size": "20", "DataDisk.1.DiskName": "goes", "DataDisk.1.DeleteWithInstance": "true",
        "DataDisk.2.Size": "30", "DataDisk.2.Category": "cloud_essd", "DataDisk.2.DiskName": "stays",
        "DataDisk.2.DeleteWithInstance": "false",
    })
    wait_instance(net, iid, "Running")
    disks = ecs("DescribeDisks", InstanceId=iid)["Disks"]["Disk"]
    shown = sorted((d["Type"], d["Device"], d["Status"], d["Size"], d["DiskName"], d["Category"]) for d in disks)
    assert shown == [
        ("data", "/dev/xvdb", "In_use", 20, "goes", "cloud_efficiency"),
        ("data", "/dev/xvdc", "In_use", 30, "stays", "cloud_essd"),
        ("system", "/dev/xvda", "In_use", 20, "", "cloud_essd"),
    ]
    by_name = {d["DiskName"]: d["DiskId"] for d in disks}
    ecs("DeleteInstance", InstanceId=iid, Force="true")
    assert disk(net, by_name["goes"]) is None
    stays = disk(net, by_name["stays"])
    assert (stays["Status"], stays["InstanceId"], stays["Device"]) == ("Available", "", "")
    assert ecs("DescribeDisks", DiskType="system", InstanceId=iid)["TotalCount"] == 0
    # What survived can be attached elsewhere.
    other = run(net)
    wait_instance(net, other, "Running")
    ecs("AttachDisk", DiskId=by_name["stays"], InstanceId=other)
    wait_disk(net, by_name["stays"], "In_use")


def test_typed_sdk_and_client_token(net):
    from alibabacloud_ecs20140526 import models as m
    c = ecs_v3(net["f"], net["key"])
    made = c.create_disk(m.CreateDiskRequest(region_id="cn-hangzhou", zone_id=ZONE, size=25, disk_category="cloud_ssd",
                                             client_token="tok-1")).body
    again = c.create_disk(m.CreateDiskRequest(region_id="cn-hangzhou", zone_id=ZONE, size=25, disk_category="cloud_ssd",
                                              client_token="tok-1")).body
    assert made.disk_id == again.disk_id
    wait_disk(net, made.disk_id, "Available")
    got = c.describe_disks(m.DescribeDisksRequest(region_id="cn-hangzhou", disk_ids=json.dumps([made.disk_id]))).body
    d = got.disks.disk[0]
    assert (d.size, d.category, d.status, d.portable, d.delete_auto_snapshot) == (25, "cloud_ssd", "Available", True, True)
    c.modify_disk_attribute(m.ModifyDiskAttributeRequest(disk_id=made.disk_id, delete_auto_snapshot=False))
    c.resize_disk(m.ResizeDiskRequest(disk_id=made.disk_id, new_size=50, type="offline", client_token="tok-2"))
    c.resize_disk(m.ResizeDiskRequest(disk_id=made.disk_id, new_size=50, type="offline", client_token="tok-2"))
    d = c.describe_disks(m.DescribeDisksRequest(region_id="cn-hangzhou", disk_ids=json.dumps([made.disk_id]))).body.disks.disk[0]
    assert (d.size, d.delete_auto_snapshot) == (50, False)
    c.delete_disk(m.DeleteDiskRequest(disk_id=made.disk_id))


def test_bad_inputs_change_nothing(net):
    ecs = net["ecs"]
    running = run(net)
    wait_instance(net, running, "Running")
    free = create(net)
    far = create(net, ZoneId=OTHER_ZONE)
    used = create(net)
    ecs("AttachDisk", DiskId=used, InstanceId=running)
    wait_disk(net, used, "In_use")
    system = ecs("DescribeDisks", InstanceId=running, DiskType="system")["Disks"]["Disk"][0]["DiskId"]
    nosuch_disk, nosuch_instance = "d-bp1nosuchdisk000000", "i-bp1nosuchinstance00"

    for params, status, code in [
        (dict(Size=20), 400, "MissingParameter"),  # neither ZoneId nor InstanceId
        (dict(ZoneId=ZONE), 400, "MissingParameter"),  # neither Size nor SnapshotId
        (dict(ZoneId="cn-hangzhou-z", Size=20), 404, "InvalidZoneId.NotFound"),
        (dict(InstanceId=nosuch_instance, Size=20), 404, "InvalidInstanceId.NotFound"),
        (dict(ZoneId=ZONE, SnapshotId="s-bp1nosuchsnapshot"), 404, "InvalidSnapshotId.NotFound"),
        (dict(ZoneId=ZONE, Size=20, DiskCategory="floppy"), 400, "InvalidDiskCategory.ValueNotSupported"),
        (dict(ZoneId=ZONE, Size=4, DiskCategory="cloud"), 400, "InvalidDiskSize.NotSupported"),
        (dict(ZoneId=ZONE, Size=2001, DiskCategory="cloud"), 400, "InvalidDiskSize.NotSupported"),
        (dict(ZoneId=ZONE, Size=19, DiskCategory="cloud_efficiency"), 400, "InvalidDiskSize.NotSupported"),
        (dict(ZoneId=ZONE, Size=32769, DiskCategory="cloud_ssd"), 400, "InvalidDiskSize.NotSupported"),
        (dict(ZoneId=ZONE, Size=65537, DiskCategory="cloud_essd"), 400, "InvalidDiskSize.NotSupported"),
        (dict(ZoneId=ZONE, Size=19, DiskCategory="cloud_essd"), 400, "OperationDenied.PerformanceLevelNotMatch"),
        (dict(ZoneId=ZONE, Size=100, DiskCategory="cloud_essd", PerformanceLevel="PL3"), 400,
         "OperationDenied.PerformanceLevelNotMatch"),
        (dict(ZoneId=ZONE, Size=20, DiskCategory="cloud_essd", PerformanceLevel="PL7"), 400,
         "InvalidPerformanceLevel.Malformed"),
        (dict(ZoneId=ZONE, Size="twenty"), 400, "InvalidParameter"),
        (dict(ZoneId=ZONE, Size=20, DiskName="1starts-with-digit"), 400, "InvalidDiskName.Malformed"),
        (dict(ZoneId=ZONE, Size=20, DiskName="x"), 400, "InvalidDiskName.Malformed"),
        (dict(ZoneId=ZONE, Size=20, DiskName="http://name"), 400, "InvalidDiskName.Malformed"),
        (dict(ZoneId=ZONE, Size=20, Description="https://example.com"), 400, "InvalidDescription.Malformed"),
        (dict(ZoneId=ZONE, Size=20, Description="d" * 257), 400, "InvalidDescription.Malformed"),
    ]:
        refused(net, status, code, "CreateDisk", **params)

    for action, params, status, code in [
        ("AttachDisk", dict(DiskId=nosuch_disk, InstanceId=running), 404, "InvalidDiskId.NotFound"),
        ("AttachDisk", dict(DiskId=free, InstanceId=nosuch_instance), 404, "InvalidInstanceId.NotFound"),
        ("AttachDisk", dict(DiskId=far, InstanceId=running), 403, "ResourcesNotInSameZone"),
        ("AttachDisk", dict(DiskId=used, InstanceId=running), 403, "IncorrectDiskStatus"),
        ("AttachDisk", dict(DiskId=free, InstanceId=running, DeleteWithInstance="maybe"), 400, "InvalidParameter"),
        ("AttachDisk", dict(DiskId=free), 400, "MissingParameter"),
        ("DetachDisk", dict(DiskId=system, InstanceId=running), 403, "DiskTypeViolation"),
        ("DetachDisk", dict(DiskId=free, InstanceId=running), 403, "IncorrectDiskStatus"),
        ("DetachDisk", dict(DiskId=nosuch_disk, InstanceId=running), 404, "InvalidDiskId.NotFound"),
        ("DeleteDisk", dict(DiskId=used), 403, "IncorrectDiskStatus"),
        ("DeleteDisk", dict(DiskId=system), 403, "IncorrectDiskStatus"),
        ("DeleteDisk", dict(DiskId=nosuch_disk), 404, "InvalidDiskId.NotFound"),
        ("ResizeDisk", dict(DiskId=free, NewSize=20), 403, "InvalidDiskSize.TooSmall"),
        ("ResizeDisk", dict(DiskId=free, NewSize=10), 403, "InvalidDiskSize.TooSmall"),
        ("ResizeDisk", dict(DiskId=free, NewSize=32769), 400, "InvalidDiskSize.NotSupported"),
        ("ResizeDisk", dict(DiskId=free, NewSize=30, Type="sideways"), 400, "InvalidParameter"),
        ("ResizeDisk", dict(DiskId=free, NewSize=30, Type="online"), 403, "IncorrectDiskStatus"),
        ("ResizeDisk", dict(DiskId=nosuch_disk, NewSize=30), 404, "InvalidDiskId.NotFound"),
        ("ReInitDisk", dict(DiskId=free), 403, "IncorrectDiskStatus"),
        ("ReInitDisk", dict(DiskId=used), 403, "IncorrectInstanceStatus"),
        ("ReInitDisk", dict(DiskId=nosuch_disk), 404, "InvalidDiskId.NotFound"),
        ("ModifyDiskAttribute", dict(DiskId=free, DiskName="9lives"), 400, "InvalidDiskName.Malformed"),
        ("ModifyDiskAttribute", dict(DiskId=free, DeleteAutoSnapshot="perhaps"), 400, "InvalidParameter"),
        ("ModifyDiskAttribute", {"DiskIds.1": free, "DiskIds.2": nosuch_disk, "DiskName": "both"}, 404,
         "InvalidDiskId.NotFound"),
        ("ModifyDiskAttribute", dict(DiskName="nobody"), 400, "MissingParameter"),
        ("DescribeDisks", dict(DiskType="both"), 400, "InvalidParameter"),
        ("DescribeDisks", dict(Status="Lost"), 400, "InvalidParameter"),
        ("DescribeDisks", dict(RegionId="xx-nowhere-1"), 404, "InvalidRegionId.NotFound"),
    ]:
        refused(net, status, code, action, **params)

    # RunInstances with bad data disks creates no instance and no disk.
    base = dict(ImageId=IMAGE, InstanceType="ecs.t5-lc1m1.small", VSwitchId=net["vsw"], SecurityGroupId=net["sg"])
    for extra, status, code in [
        ({"DataDisk.1.Size": "10"}, 400, "InvalidDiskSize.NotSupported"),
        ({"DataDisk.1.Size": "20", "DataDisk.1.Category": "tape"}, 400, "InvalidDataDiskCategory.ValueNotSupported"),
        ({"DataDisk.1.SnapshotId": "s-bp1nosuchsnapshot"}, 404, "InvalidSnapshotId.NotFound"),
        ({"DataDisk.1.Category": "cloud_ssd"}, 400, "MissingParameter"),
        ({"DataDisk.17.Size": "20"}, 400, "InvalidParameter"),
    ]:
        refused(net, status, code, "RunInstances", **base, **extra)

    # The disks are as they were.
    assert disk(net, free)["Status"] == "Available" and disk(net, used)["InstanceId"] == running


def test_another_accounts_disk_is_not_found(net, feitian):
    did = create(net)
    stranger = Api(feitian, feitian.new_account("disk-stranger"), "ecs")
    e = stranger.error("DeleteDisk", DiskId=did)
    assert (e.status_code, e.code) == (404, "InvalidDiskId.NotFound")
    assert stranger("DescribeDisks", DiskIds=json.dumps([did]))["TotalCount"] == 0
    assert disk(net, did)["Status"] == "Available"


def test_disk_quotas_count_and_capacity(feitian):
    """`disks` caps how many disks an account holds, `disk_capacity_gib` their GiB; data disks
    and system disks count alike."""
    import uuid
    name = f"dq-{uuid.uuid4().hex[:10]}"
    key = feitian.new_account(name)
    vpc, ecs = Api(feitian, key, "vpc"), Api(feitian, key, "ecs")
    vid = vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    sid = vpc("CreateVSwitch", VpcId=vid, CidrBlock="192.168.1.0/24", ZoneId=ZONE)["VSwitchId"]
    wait_for(lambda: vpc("DescribeVSwitchAttributes", VSwitchId=sid)["Status"] == "Available")
    gid = ecs("CreateSecurityGroup", VpcId=vid)["SecurityGroupId"]
    net = dict(vpc=vpc, ecs=ecs, vpc_id=vid, vsw=sid, sg=gid, key=key, f=feitian)

    feitian.cli("account", "quota", name, "disks=2", "disk_capacity_gib=100")
    create(net, Size=20)
    # An instance with one data disk is two disks: one too many.
    refused(net, 403, "QuotaExceed.Disk", "RunInstances", ImageId=IMAGE, InstanceType="ecs.t5-lc1m1.small",
            VSwitchId=sid, SecurityGroupId=gid, **{"DataDisk.1.Size": "20", "DataDisk.1.Category": "cloud_ssd"})
    iid = run(net)  # its system disk (20 GiB) is the second of 2
    wait_instance(net, iid, "Running")
    refused(net, 403, "QuotaExceed.Disk", "CreateDisk", ZoneId=ZONE, Size=20)
    feitian.cli("account", "quota", name, "disks=10")
    # 40 GiB held; 61 more would pass 100.
    refused(net, 400, "QuotaExceed.DiskCapacity", "CreateDisk", ZoneId=ZONE, Size=61)
    big = create(net, Size=60)
    refused(net, 400, "QuotaExceed.DiskCapacity", "ResizeDisk", DiskId=big, NewSize=61)
    # Deleting a disk frees its share.
    ecs("DeleteDisk", DiskId=big)
    create(net, Size=60)
