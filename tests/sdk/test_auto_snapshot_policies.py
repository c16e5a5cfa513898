"""Automatic snapshot policies through alibabacloud_ecs20140526 (every answer checked against
the official models): CreateAutoSnapshotPolicy, ModifyAutoSnapshotPolicyEx,
DeleteAutoSnapshotPolicy, ApplyAutoSnapshotPolicy, CancelAutoSnapshotPolicy and
DescribeAutoSnapshotPolicyEx; both spellings of their parameters (the SDKs send
lowerCamelCase `regionId`, `timePoints`, `diskIds`…, the Go SDK's signer adds `RegionId`);
every field and its JSON type; a disk's policy in DescribeDisks; tags; the quota; and every
bad input: its HTTP status, its code, and that nothing changed (docs/snapshots.md,
"Automatic snapshot policies"). The scheduler itself is tested with an injected clock in
crates/ecs/tests/auto_snapshot_scheduler.rs."""
import json

import pytest

from conftest import Api, db_snapshot, ecs_v3, model_round_trip, v3_raw

ZONE = "cn-hangzhou-h"
VERSION = "2014-05-26"
# What a policy action may change: compared before and after a refused call. (Disk and
# snapshot rows are left out: the host moves them along meanwhile, and no policy action
# writes them.)
TABLES = ("auto_snapshot_policies", "auto_snapshot_policy_disks", "resources", "tags")


@pytest.fixture
def ecs(feitian, account):
    return Api(feitian, account, "ecs")


def raw(ecs, action, **params):
    """A call with exactly these parameter names (no RegionId added), checked against the model."""
    import alibabacloud_ecs20140526.models as m
    body = v3_raw(ecs.client, action, VERSION, {k: v for k, v in params.items() if v is not None})
    model_round_trip(getattr(m, f"{action}ResponseBody"), body)
    return body


def create(ecs, **kw):
    params = {"timePoints": '["1"]', "repeatWeekdays": '["1"]', "retentionDays": "3"}
    params.update(kw)
    return ecs("CreateAutoSnapshotPolicy", **params)["AutoSnapshotPolicyId"]


def policy(ecs, pid):
    got = ecs("DescribeAutoSnapshotPolicyEx", AutoSnapshotPolicyId=pid)["AutoSnapshotPolicies"]["AutoSnapshotPolicy"]
    return got[0] if got else None


def disk(ecs, did):
    return ecs("DescribeDisks", DiskIds=json.dumps([did]))["Disks"]["Disk"][0]


def new_disk(ecs):
    return ecs("CreateDisk", ZoneId=ZONE, Size=20)["DiskId"]


def rows(f):
    s = db_snapshot(f)
    return {t: s.get(t) for t in TABLES}


def test_typed_sdk_every_field_and_type(ecs):
    from alibabacloud_ecs20140526 import models as m
    c = ecs_v3(ecs.f, ecs.key)
    made = c.create_auto_snapshot_policy(m.CreateAutoSnapshotPolicyRequest(
        region_id="cn-hangzhou", auto_snapshot_policy_name="nightly", time_points='["22","1"]',
        repeat_weekdays='["7","1"]', retention_days=7, enable_cross_region_copy=False,
        tag=[m.CreateAutoSnapshotPolicyRequestTag(key="team", value="db")])).body
    pid = made.auto_snapshot_policy_id
    assert pid.startswith("sp-")
    p = policy(ecs, pid)
    assert p == {
        "AutoSnapshotPolicyId": pid,
        "AutoSnapshotPolicyName": "nightly",
        "RegionId": "cn-hangzhou",
        "CreationTime": p["CreationTime"],
        # JSON arrays as strings, in order (Terraform decodes them).
        "TimePoints": '["1","22"]',
        "RepeatWeekdays": '["1","7"]',
        "RetentionDays": 7,
        "DiskNums": 0,
        "VolumeNums": 0,
        "Status": "Normal",
        "EnableCrossRegionCopy": False,
        "TargetCopyRegions": "",
        "CopiedSnapshotsRetentionDays": -1,
        "CopyEncryptionConfiguration": {"Encrypted": False, "KMSKeyId": ""},
        "AssociationType": "AssociatedWithDisk",
        "Type": "Custom",
        "ResourceGroupId": "",
        "Tags": {"Tag": [{"TagKey": "team", "TagValue": "db"}]},
        "TargetTags": {"TargetTag": []},
    }
    assert p["CreationTime"].endswith("Z")
    assert json.loads(p["TimePoints"]) == ["1", "22"]
    got = c.describe_auto_snapshot_policy_ex(m.DescribeAutoSnapshotPolicyExRequest(
        region_id="cn-hangzhou", auto_snapshot_policy_id=pid)).body
    assert got.total_count == 1 and got.page_number == 1 and got.page_size == 10
    typed = got.auto_snapshot_policies.auto_snapshot_policy[0]
    assert (typed.retention_days, typed.disk_nums, typed.status) == (7, 0, "Normal")
    # Modify, Apply, Cancel and Delete through the typed client too.
    d = new_disk(ecs)
    c.modify_auto_snapshot_policy_ex(m.ModifyAutoSnapshotPolicyExRequest(
        region_id="cn-hangzhou", auto_snapshot_policy_id=pid, retention_days=-1))
    c.apply_auto_snapshot_policy(m.ApplyAutoSnapshotPolicyRequest(
        region_id="cn-hangzhou", auto_snapshot_policy_id=pid, disk_ids=json.dumps([d])))
    p = policy(ecs, pid)
    assert (p["RetentionDays"], p["DiskNums"], p["AutoSnapshotPolicyName"]) == (-1, 1, "nightly")
    c.cancel_auto_snapshot_policy(m.CancelAutoSnapshotPolicyRequest(region_id="cn-hangzhou", disk_ids=json.dumps([d])))
    assert policy(ecs, pid)["DiskNums"] == 0
    c.delete_auto_snapshot_policy(m.DeleteAutoSnapshotPolicyRequest(region_id="cn-hangzhou", auto_snapshot_policy_id=pid))
    assert policy(ecs, pid) is None


def test_both_spellings_of_every_parameter(ecs):
    d = new_disk(ecs)
    lower = raw(ecs, "CreateAutoSnapshotPolicy", regionId="cn-hangzhou", autoSnapshotPolicyName="lower",
                timePoints='["2"]', repeatWeekdays='["3"]', retentionDays="5")["AutoSnapshotPolicyId"]
    upper = raw(ecs, "CreateAutoSnapshotPolicy", RegionId="cn-hangzhou", AutoSnapshotPolicyName="upper",
                TimePoints='["4"]', RepeatWeekdays='["6"]', RetentionDays="-1")["AutoSnapshotPolicyId"]
    a, b = policy(ecs, lower), policy(ecs, upper)
    assert (a["AutoSnapshotPolicyName"], a["TimePoints"], a["RepeatWeekdays"], a["RetentionDays"]) == \
        ("lower", '["2"]', '["3"]', 5)
    assert (b["AutoSnapshotPolicyName"], b["TimePoints"], b["RepeatWeekdays"], b["RetentionDays"]) == \
        ("upper", '["4"]', '["6"]', -1)
    # The Go SDK's signer adds RegionId beside regionId.
    raw(ecs, "ModifyAutoSnapshotPolicyEx", regionId="cn-hangzhou", RegionId="cn-hangzhou",
        autoSnapshotPolicyId=lower, timePoints='["0","23"]')
    raw(ecs, "ModifyAutoSnapshotPolicyEx", RegionId="cn-hangzhou", AutoSnapshotPolicyId=upper,
        AutoSnapshotPolicyName="upper2")
    assert policy(ecs, lower)["TimePoints"] == '["0","23"]'
    assert policy(ecs, upper)["AutoSnapshotPolicyName"] == "upper2"
    # Describe, both ways.
    for params in ({"RegionId": "cn-hangzhou", "AutoSnapshotPolicyId": lower},
                   {"regionId": "cn-hangzhou", "autoSnapshotPolicyId": lower}):
        got = raw(ecs, "DescribeAutoSnapshotPolicyEx", **params)["AutoSnapshotPolicies"]["AutoSnapshotPolicy"]
        assert [p["AutoSnapshotPolicyId"] for p in got] == [lower], params
    # Apply and Cancel, both ways.
    raw(ecs, "ApplyAutoSnapshotPolicy", regionId="cn-hangzhou", autoSnapshotPolicyId=lower, diskIds=json.dumps([d]))
    assert disk(ecs, d)["AutoSnapshotPolicyId"] == lower
    raw(ecs, "ApplyAutoSnapshotPolicy", RegionId="cn-hangzhou", AutoSnapshotPolicyId=upper, DiskIds=json.dumps([d]))
    assert disk(ecs, d)["AutoSnapshotPolicyId"] == upper
    raw(ecs, "CancelAutoSnapshotPolicy", regionId="cn-hangzhou", diskIds=json.dumps([d]))
    assert disk(ecs, d)["AutoSnapshotPolicyId"] == ""
    raw(ecs, "ApplyAutoSnapshotPolicy", regionId="cn-hangzhou", autoSnapshotPolicyId=lower, diskIds=json.dumps([d]))
    raw(ecs, "CancelAutoSnapshotPolicy", RegionId="cn-hangzhou", DiskIds=json.dumps([d]))
    assert disk(ecs, d)["AutoSnapshotPolicyId"] == ""
    # Delete, both ways.
    raw(ecs, "DeleteAutoSnapshotPolicy", regionId="cn-hangzhou", autoSnapshotPolicyId=lower)
    raw(ecs, "DeleteAutoSnapshotPolicy", RegionId="cn-hangzhou", AutoSnapshotPolicyId=upper)
    assert policy(ecs, lower) is None and policy(ecs, upper) is None


def test_apply_cancel_in_describe_disks_and_disk_nums(ecs):
    p1, p2 = create(ecs, autoSnapshotPolicyName="one"), create(ecs, autoSnapshotPolicyName="two")
    d1, d2 = new_disk(ecs), new_disk(ecs)
    assert (disk(ecs, d1)["AutoSnapshotPolicyId"], disk(ecs, d1)["EnableAutomatedSnapshotPolicy"]) == ("", False)
    ecs("ApplyAutoSnapshotPolicy", autoSnapshotPolicyId=p1, diskIds=json.dumps([d1, d2]))
    for d in (d1, d2):
        got = disk(ecs, d)
        assert (got["AutoSnapshotPolicyId"], got["EnableAutomatedSnapshotPolicy"]) == (p1, True)
    assert policy(ecs, p1)["DiskNums"] == 2
    following = ecs("DescribeDisks", AutoSnapshotPolicyId=p1)["Disks"]["Disk"]
    assert sorted(x["DiskId"] for x in following) == sorted([d1, d2])
    # One policy per disk: applying another replaces it.
    ecs("ApplyAutoSnapshotPolicy", autoSnapshotPolicyId=p2, diskIds=json.dumps([d2]))
    assert (policy(ecs, p1)["DiskNums"], policy(ecs, p2)["DiskNums"]) == (1, 1)
    assert disk(ecs, d2)["AutoSnapshotPolicyId"] == p2
    # Cancel naming a policy the disk does not follow leaves it.
    ecs("CancelAutoSnapshotPolicy", autoSnapshotPolicyId=p1, diskIds=json.dumps([d2]))
    assert disk(ecs, d2)["AutoSnapshotPolicyId"] == p2
    ecs("CancelAutoSnapshotPolicy", autoSnapshotPolicyId=p1, diskIds=json.dumps([d1]))
    assert disk(ecs, d1)["AutoSnapshotPolicyId"] == ""
    assert policy(ecs, p1)["DiskNums"] == 0
    assert ecs("DescribeDisks", AutoSnapshotPolicyId=p1)["Disks"]["Disk"] == []
    # Deleting a policy: its disks follow nothing; deleting a disk: the policy counts one less.
    ecs("DeleteAutoSnapshotPolicy", autoSnapshotPolicyId=p2)
    assert disk(ecs, d2)["AutoSnapshotPolicyId"] == ""
    ecs("ApplyAutoSnapshotPolicy", autoSnapshotPolicyId=p1, diskIds=json.dumps([d1, d2]))
    ecs("DeleteDisk", DiskId=d2)
    assert policy(ecs, p1)["DiskNums"] == 1


def test_modify_is_partial(ecs):
    pid = create(ecs, autoSnapshotPolicyName="keep", timePoints='["5"]', repeatWeekdays='["2"]', retentionDays="9")
    before = policy(ecs, pid)
    ecs("ModifyAutoSnapshotPolicyEx", autoSnapshotPolicyId=pid, repeatWeekdays='["2","4"]')
    after = policy(ecs, pid)
    assert after["RepeatWeekdays"] == '["2","4"]'
    assert {k: v for k, v in after.items() if k != "RepeatWeekdays"} == \
        {k: v for k, v in before.items() if k != "RepeatWeekdays"}
    ecs("ModifyAutoSnapshotPolicyEx", autoSnapshotPolicyId=pid, retentionDays="-1", EnableCrossRegionCopy="true",
        TargetCopyRegions='["cn-shanghai"]', CopiedSnapshotsRetentionDays="30")
    after = policy(ecs, pid)
    assert (after["RetentionDays"], after["EnableCrossRegionCopy"], after["TargetCopyRegions"],
            after["CopiedSnapshotsRetentionDays"], after["AutoSnapshotPolicyName"]) == \
        (-1, True, '["cn-shanghai"]', 30, "keep")


def test_filters_paging_and_tags(ecs):
    ids = [create(ecs, autoSnapshotPolicyName=f"page{i}") for i in range(3)]
    ecs("TagResources", ResourceType="snapshotpolicy", **{"ResourceId.1": ids[1], "Tag.1.Key": "env",
                                                          "Tag.1.Value": "prod"})
    listed = ecs("ListTagResources", ResourceType="snapshotpolicy", **{"ResourceId.1": ids[1]})
    assert listed["TagResources"]["TagResource"] == [
        {"ResourceId": ids[1], "ResourceType": "snapshotpolicy", "TagKey": "env", "TagValue": "prod"}]
    got = ecs("DescribeAutoSnapshotPolicyEx", **{"Tag.1.Key": "env", "Tag.1.Value": "prod"})
    assert [p["AutoSnapshotPolicyId"] for p in got["AutoSnapshotPolicies"]["AutoSnapshotPolicy"]] == [ids[1]]
    got = ecs("DescribeAutoSnapshotPolicyEx", AutoSnapshotPolicyName="page2")
    assert [p["AutoSnapshotPolicyId"] for p in got["AutoSnapshotPolicies"]["AutoSnapshotPolicy"]] == [ids[2]]
    # Two pages hold each policy once (in creation order; ids break ties within a second).
    first = ecs("DescribeAutoSnapshotPolicyEx", PageSize=2, PageNumber=1)
    page = ecs("DescribeAutoSnapshotPolicyEx", PageSize=2, PageNumber=2)
    assert (page["TotalCount"], page["PageNumber"], page["PageSize"]) == (3, 2, 2)
    listed = [p["AutoSnapshotPolicyId"] for r in (first, page) for p in r["AutoSnapshotPolicies"]["AutoSnapshotPolicy"]]
    assert len(page["AutoSnapshotPolicies"]["AutoSnapshotPolicy"]) == 1
    assert sorted(listed) == sorted(ids)
    # Another account sees none of them.
    other = Api(ecs.f, ecs.f.new_account("policies-other"), "ecs")
    assert other("DescribeAutoSnapshotPolicyEx")["TotalCount"] == 0
    e = other.error("DeleteAutoSnapshotPolicy", autoSnapshotPolicyId=ids[0])
    assert (e.status_code, e.code) == (404, "InvalidAutoSnapshotPolicyId.NotFound")


def test_bad_inputs_change_nothing(ecs):
    pid = create(ecs)
    d = new_disk(ecs)
    ok = {"timePoints": '["1"]', "repeatWeekdays": '["1"]', "retentionDays": "3"}
    cases = [
        (400, "MissingParameter", "CreateAutoSnapshotPolicy", {"repeatWeekdays": '["1"]', "retentionDays": "3"}),
        (400, "MissingParameter", "CreateAutoSnapshotPolicy", {"timePoints": '["1"]', "retentionDays": "3"}),
        (400, "MissingParameter", "CreateAutoSnapshotPolicy", {"timePoints": '["1"]', "repeatWeekdays": '["1"]'}),
        (400, "InvalidTimePoints.Malformed", "CreateAutoSnapshotPolicy", {**ok, "timePoints": '["24"]'}),
        (400, "InvalidTimePoints.Malformed", "CreateAutoSnapshotPolicy", {**ok, "timePoints": "1"}),
        (400, "InvalidTimePoints.Malformed", "CreateAutoSnapshotPolicy", {**ok, "timePoints": "[]"}),
        (400, "InvalidRepeatWeekdays.Malformed", "CreateAutoSnapshotPolicy", {**ok, "repeatWeekdays": '["0"]'}),
        (400, "InvalidRepeatWeekdays.Malformed", "CreateAutoSnapshotPolicy", {**ok, "repeatWeekdays": '["8"]'}),
        (400, "InvalidRetentionDays.Malformed", "CreateAutoSnapshotPolicy", {**ok, "retentionDays": "0"}),
        (400, "InvalidRetentionDays.Malformed", "CreateAutoSnapshotPolicy", {**ok, "retentionDays": "65537"}),
        (400, "InvalidRetentionDays.Malformed", "CreateAutoSnapshotPolicy", {**ok, "retentionDays": "forever"}),
        (400, "InvalidAutoSnapshotPolicyName.Malformed", "CreateAutoSnapshotPolicy",
         {**ok, "autoSnapshotPolicyName": "http://x"}),
        (400, "InvalidAutoSnapshotPolicyName.Malformed", "CreateAutoSnapshotPolicy",
         {**ok, "autoSnapshotPolicyName": "1digit"}),
        (400, "InvalidAutoSnapshotPolicyName.Malformed", "CreateAutoSnapshotPolicy",
         {**ok, "autoSnapshotPolicyName": "x" * 129}),
        (400, "InvalidParameter", "CreateAutoSnapshotPolicy", {**ok, "CopiedSnapshotsRetentionDays": "0"}),
        (400, "InvalidParameter", "CreateAutoSnapshotPolicy", {**ok, "EnableCrossRegionCopy": "maybe"}),
        (400, "InvalidParameter", "CreateAutoSnapshotPolicy", {**ok, "AssociationType": "AssociatedWithInstanceTag"}),
        (400, "InvalidTagKey.Malformed", "CreateAutoSnapshotPolicy", {**ok, "Tag.1.Key": "acs:x"}),
        (404, "InvalidRegionId.NotFound", "CreateAutoSnapshotPolicy", {**ok, "RegionId": "cn-nowhere"}),
        (400, "MissingParameter", "ModifyAutoSnapshotPolicyEx", {"timePoints": '["1"]'}),
        (404, "InvalidAutoSnapshotPolicyId.NotFound", "ModifyAutoSnapshotPolicyEx",
         {"autoSnapshotPolicyId": "sp-nosuch"}),
        (400, "InvalidTimePoints.Malformed", "ModifyAutoSnapshotPolicyEx",
         {"autoSnapshotPolicyId": pid, "timePoints": '["-1"]'}),
        (400, "InvalidRetentionDays.Malformed", "ModifyAutoSnapshotPolicyEx",
         {"autoSnapshotPolicyId": pid, "retentionDays": "-2"}),
        (404, "InvalidAutoSnapshotPolicyId.NotFound", "DeleteAutoSnapshotPolicy", {"autoSnapshotPolicyId": "sp-x"}),
        (400, "MissingParameter", "DeleteAutoSnapshotPolicy", {}),
        (404, "InvalidAutoSnapshotPolicyId.NotFound", "ApplyAutoSnapshotPolicy",
         {"autoSnapshotPolicyId": "sp-x", "diskIds": json.dumps([d])}),
        (404, "InvalidDiskId.NotFound", "ApplyAutoSnapshotPolicy",
         {"autoSnapshotPolicyId": pid, "diskIds": json.dumps([d, "d-nosuch"])}),
        (400, "MissingParameter", "ApplyAutoSnapshotPolicy", {"autoSnapshotPolicyId": pid}),
        (400, "InvalidParameter", "ApplyAutoSnapshotPolicy", {"autoSnapshotPolicyId": pid, "diskIds": "[1, 2"}),
        (400, "InvalidParameter", "ApplyAutoSnapshotPolicy", {"autoSnapshotPolicyId": pid, "diskIds": "[]"}),
        (404, "InvalidDiskId.NotFound", "CancelAutoSnapshotPolicy", {"diskIds": json.dumps(["d-nosuch"])}),
        (404, "InvalidAutoSnapshotPolicyId.NotFound", "CancelAutoSnapshotPolicy",
         {"autoSnapshotPolicyId": "sp-x", "diskIds": json.dumps([d])}),
        (400, "InvalidParameter", "DescribeAutoSnapshotPolicyEx", {"PageSize": "101"}),
        (400, "MissingParameter", "DescribeAutoSnapshotPolicyEx", {"RegionId": ""}),
    ]
    ecs("ApplyAutoSnapshotPolicy", autoSnapshotPolicyId=pid, diskIds=json.dumps([d]))
    for status, code, action, params in cases:
        before = rows(ecs.f)
        e = ecs.error(action, **params)
        assert (e.status_code, e.code) == (status, code), f"{action} {params}: {e}"
        assert rows(ecs.f) == before, f"{action} {params} changed the store"
    assert disk(ecs, d)["AutoSnapshotPolicyId"] == pid


def test_quota_of_policies_per_region(ecs):
    for i in range(100):
        create(ecs)
    before = rows(ecs.f)
    e = ecs.error("CreateAutoSnapshotPolicy", timePoints='["1"]', repeatWeekdays='["1"]', retentionDays="3")
    assert (e.status_code, e.code) == (403, "QuotaExceed.AutoSnapshotPolicy")
    assert rows(ecs.f) == before
    assert ecs("DescribeAutoSnapshotPolicyEx")["TotalCount"] == 100
