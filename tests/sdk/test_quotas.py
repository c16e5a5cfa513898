"""Issue 14, quotas and admission, through the official SDKs: per-account quotas (set with
`feitian account quota`) refuse the creates that would exceed them with the real codes and
change nothing, concurrent creates never pass a quota together, DescribeAccountAttributes
answers the limits through alibabacloud_ecs20140526's own models, and the host admits only
the instances it has the memory and vCPUs for (OperationDenied.NoStock otherwise)."""
import threading
import uuid

import oss2
import pytest

from conftest import Api, db_snapshot, ecs_v3, wait_for

IMAGE = "feitian_linux_x64_1G_alibase_20261122.vhd"
SMALL = "ecs.t5-lc1m1.small"  # 1 vCPU, 1 GiB
LARGE = "ecs.g6.large"  # 2 vCPUs, 8 GiB


def at_once(fn, n):
    """Runs `fn` in `n` threads started together; their results, in finishing order."""
    results, lock = [], threading.Lock()

    def run():
        out = fn()
        with lock:
            results.append(out)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def named_account(f):
    name = f"q-{uuid.uuid4().hex[:10]}"
    return name, f.new_account(name)


def set_quota(f, name, *settings):
    out = f.cli("account", "quota", name, *settings).stdout
    return {k: (int(v), src) for k, v, src in (line.split("\t") for line in out.strip().splitlines())}


def network(f, key):
    vpc, ecs = Api(f, key, "vpc"), Api(f, key, "ecs")
    vid = vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    sid = vpc("CreateVSwitch", VpcId=vid, CidrBlock="192.168.1.0/24", ZoneId="cn-hangzhou-h")["VSwitchId"]
    wait_for(lambda: vpc("DescribeVSwitchAttributes", VSwitchId=sid)["Status"] == "Available")
    gid = ecs("CreateSecurityGroup", VpcId=vid)["SecurityGroupId"]
    return dict(vpc=vpc, ecs=ecs, vpc_id=vid, vsw=sid, sg=gid)


def launch(net, action="RunInstances", **kw):
    kw.setdefault("ImageId", IMAGE)
    kw.setdefault("InstanceType", SMALL)
    kw.setdefault("VSwitchId", net["vsw"])
    kw.setdefault("SecurityGroupId", net["sg"])
    return net["ecs"](action, **kw)


def refused(net, code, status, action="RunInstances", **kw):
    kw.setdefault("ImageId", IMAGE)
    kw.setdefault("InstanceType", SMALL)
    kw.setdefault("VSwitchId", net["vsw"])
    kw.setdefault("SecurityGroupId", net["sg"])
    e = net["ecs"].error(action, **kw)
    assert (e.code, e.status_code) == (code, status), e
    return e


def instance_count(net):
    return net["ecs"]("DescribeInstances", PageSize=100)["TotalCount"]


def disk_rows(f):
    return db_snapshot(f)["disks"]


def test_quota_cli_shows_sets_and_resets(feitian):
    name, _ = named_account(feitian)
    shown = set_quota(feitian, name)
    assert shown["vcpus"] == (800, "default") and shown["eips"] == (20, "default") and shown["vpcs"] == (10, "default")
    assert set(shown) >= {"instances", "vcpus", "disk_capacity_gib", "snapshots", "images", "eips", "vpcs",
                          "security_groups", "key_pairs", "buckets"}
    assert set_quota(feitian, name, "vcpus=16", "eips=0")["vcpus"] == (16, "account")
    assert set_quota(feitian, name)["eips"] == (0, "account")
    assert set_quota(feitian, name, "vcpus=default")["vcpus"] == (800, "default")
    for bad in ["vcpu=3", "vcpus=-1", "vcpus", "vcpus=lots"]:
        r = feitian.cli("account", "quota", name, bad, check=False)
        assert r.returncode != 0 and r.stderr, bad
    assert set_quota(feitian, name)["vcpus"] == (800, "default"), "a refused setting changes nothing"
    assert feitian.cli("account", "quota", "no-such-account", check=False).returncode != 0


def test_instance_and_vcpu_quotas_refuse_with_the_real_code_and_change_nothing(feitian):
    name, key = named_account(feitian)
    net = network(feitian, key)
    set_quota(feitian, name, "instances=3")
    before = db_snapshot(feitian)
    e = refused(net, "QuotaExceed.ElasticQuota", 403, Amount=4)
    assert "number of the specified ECS instances" in e.message
    assert db_snapshot(feitian) == before, "a refused RunInstances changed the store"
    assert len(launch(net, Amount=3)["InstanceIdSets"]["InstanceIdSet"]) == 3
    refused(net, "QuotaExceed.ElasticQuota", 403, action="CreateInstance")
    assert instance_count(net) == 3

    # vCPUs: 3 used by the small ones; 7 allowed leaves room for 2 of 2 vCPUs, not 3.
    set_quota(feitian, name, "instances=100", "vcpus=7")
    refused(net, "QuotaExceed.ElasticQuota", 403, InstanceType=LARGE, Amount=3)
    launch(net, InstanceType=LARGE, Amount=2)
    e = refused(net, "QuotaExceed.ElasticQuota", 403, action="CreateInstance")
    assert "vCPUs" in e.message
    assert instance_count(net) == 5
    # Deleting gives the room back.
    ids = [i["InstanceId"] for i in net["ecs"]("DescribeInstances", InstanceType=LARGE)["Instances"]["Instance"]]
    net["ecs"]("DeleteInstance", InstanceId=ids[0], Force="true")
    launch(net, action="CreateInstance")
    assert instance_count(net) == 5


def test_disk_capacity_quota(feitian):
    name, key = named_account(feitian)
    net = network(feitian, key)
    set_quota(feitian, name, "disk_capacity_gib=50")
    launch(net, **{"SystemDisk.Size": "40"})
    before = disk_rows(feitian)
    e = refused(net, "QuotaExceed.DiskCapacity", 400, **{"SystemDisk.Size": "20"})
    assert "cloud_essd" in e.message
    assert disk_rows(feitian) == before and instance_count(net) == 1
    launch(net, **{"SystemDisk.Size": "10"})
    assert instance_count(net) == 2


def test_concurrent_creates_never_exceed_the_quota(feitian):
    name, key = named_account(feitian)
    net = network(feitian, key)
    set_quota(feitian, name, "instances=5")

    def one():
        ecs = Api(feitian, key, "ecs")  # a client per thread
        try:
            ids = ecs("RunInstances", ImageId=IMAGE, InstanceType=SMALL, VSwitchId=net["vsw"],
                      SecurityGroupId=net["sg"])["InstanceIdSets"]["InstanceIdSet"]
            return ("ok", ids)
        except Exception as e:  # the SDK's ClientException
            return ("refused", getattr(e, "code", repr(e)))

    results = at_once(one, 12)
    ok = [r for r in results if r[0] == "ok"]
    assert len(ok) == 5, results
    assert sorted(r[1] for r in results if r[0] == "refused") == ["QuotaExceed.ElasticQuota"] * 7
    assert instance_count(net) == 5


def test_network_and_key_pair_quotas(feitian):
    name, key = named_account(feitian)
    set_quota(feitian, name, "vpcs=1", "eips=1", "security_groups=1", "key_pairs=1")
    vpc, ecs = Api(feitian, key, "vpc"), Api(feitian, key, "ecs")
    vid = vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    e = vpc.error("CreateVpc", CidrBlock="10.0.0.0/8")
    assert (e.code, e.status_code) == ("QuotaExceeded.Vpc", 400)
    assert vpc("DescribeVpcs")["TotalCount"] == 1
    vpc("AllocateEipAddress")
    e = vpc.error("AllocateEipAddress")
    assert (e.code, e.status_code) == ("QuotaExceeded.Eip", 400)
    assert vpc("DescribeEipAddresses")["TotalCount"] == 1
    ecs("CreateSecurityGroup", VpcId=vid)
    assert ecs.error("CreateSecurityGroup", VpcId=vid).code == "QuotaExceed.SecurityGroup"
    assert ecs("DescribeSecurityGroups")["TotalCount"] == 1
    ecs("CreateKeyPair", KeyPairName="one")
    assert ecs.error("CreateKeyPair", KeyPairName="two").code == "QuotaExceed.KeyPair"
    assert ecs("DescribeKeyPairs")["TotalCount"] == 1
    # Raised for this account only, it takes effect at once.
    set_quota(feitian, name, "eips=2")
    vpc("AllocateEipAddress")
    assert vpc("DescribeEipAddresses")["TotalCount"] == 2


def test_bucket_quota(feitian):
    name, key = named_account(feitian)
    set_quota(feitian, name, "buckets=2")
    endpoint = f"http://{feitian.endpoint}"
    names = [f"ftq-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    for n in names[:2]:
        oss2.Bucket(oss2.Auth(*key), endpoint, n).create_bucket()
    with pytest.raises(oss2.exceptions.OssError) as e:
        oss2.Bucket(oss2.Auth(*key), endpoint, names[2]).create_bucket()
    assert (e.value.status, e.value.code) == (400, "TooManyBuckets")
    listed = oss2.Service(oss2.Auth(*key), endpoint).list_buckets().buckets
    assert sorted(b.name for b in listed) == sorted(names[:2])
    # One's own bucket again is not a new bucket.
    oss2.Bucket(oss2.Auth(*key), endpoint, names[0]).create_bucket()


def test_describe_account_attributes_through_the_sdk(feitian):
    from alibabacloud_ecs20140526 import models

    name, key = named_account(feitian)
    net = network(feitian, key)
    set_quota(feitian, name, "vcpus=40", "security_groups=7")
    launch(net, InstanceType=LARGE)
    client = ecs_v3(feitian, key)
    body = client.describe_account_attributes(models.DescribeAccountAttributesRequest(
        region_id="cn-hangzhou",
        attribute_name=["max-postpaid-instance-vcpu-count", "used-postpaid-instance-vcpu-count",
                        "max-security-groups", "max-axt-command-count"],
    )).body
    got = {i.attribute_name: i.attribute_values.value_item for i in body.account_attribute_items.account_attribute_item}
    assert list(got) == ["max-postpaid-instance-vcpu-count", "used-postpaid-instance-vcpu-count",
                         "max-security-groups"], "only what was asked, and nothing feitian has no value for"
    assert [(v.value, v.count) for v in got["max-postpaid-instance-vcpu-count"]] == [("40", 1)]
    assert [v.value for v in got["used-postpaid-instance-vcpu-count"]] == ["2"]
    assert [v.value for v in got["max-security-groups"]] == ["7"]

    # Unfiltered, through the raw call checked against the model (no key it does not know).
    ecs = net["ecs"]
    every = ecs("DescribeAccountAttributes")["AccountAttributeItems"]["AccountAttributeItem"]
    by_name = {i["AttributeName"]: i["AttributeValues"]["ValueItem"] for i in every}
    assert by_name["instance-network-type"] == [{"Value": "vpc", "Count": 1}]
    assert by_name["real-name-authentication"][0]["Value"] == "unnecessary"
    types = [v["InstanceType"] for v in by_name["supported-postpay-instance-types"]]
    assert SMALL in types and LARGE in types
    # Another account sees its own numbers.
    _, other = named_account(feitian)
    theirs = Api(feitian, other, "ecs")("DescribeAccountAttributes", **{"AttributeName.1": "max-postpaid-instance-vcpu-count",
                                                                         "AttributeName.2": "used-postpaid-instance-vcpu-count"})
    values = [i["AttributeValues"]["ValueItem"][0]["Value"] for i in theirs["AccountAttributeItems"]["AccountAttributeItem"]]
    assert values == ["800", "0"]
    assert ecs.error("DescribeAccountAttributes", **{"AttributeName.9": "max-security-groups"}).code == "InvalidParameter"


def sim_host(own_feitian, tmp_path, vcpus, memory_mib, reserve_mib=1024, overcommit=2.0):
    """A feitian whose (sim) host has `vcpus` CPUs and `memory_mib` of memory."""
    cfg = tmp_path / "feitian.toml"
    cfg.write_text(f"[compute]\nsim_vcpus = {vcpus}\nsim_memory_mib = {memory_mib}\n"
                   f"memory_reserve_mib = {reserve_mib}\nvcpu_overcommit = {overcommit}\n")
    return own_feitian(config=cfg).start()


@pytest.fixture
def small_host(own_feitian, tmp_path):
    """4 CPUs and 8 GiB, 1 GiB of it reserved: 7 GiB and 8 vCPUs (overcommit 2) to give."""
    return sim_host(own_feitian, tmp_path, 4, 8192)


def test_admission_refuses_what_the_host_cannot_hold(small_host):
    f = small_host
    assert "admission: host of 4 CPUs and 8192 MiB" in f.stdout()
    assert "up to 8 vCPUs (overcommit 2) and 7168 MiB" in f.stdout()
    net = network(f, f.credentials())
    before = db_snapshot(f)
    e = refused(net, "OperationDenied.NoStock", 403, InstanceType=LARGE)  # 8 GiB > 7 GiB
    assert "sold out" in e.message
    assert db_snapshot(f) == before, "a refused RunInstances changed the store"
    # 7 small ones fit exactly; the 8th does not (memory), even one at a time.
    launch(net, Amount=4)
    launch(net, Amount=3)
    refused(net, "OperationDenied.NoStock", 403)
    assert instance_count(net) == 7
    # A stopped instance holds nothing: CreateInstance is not admitted, its start is.
    created = launch(net, action="CreateInstance")["InstanceId"]
    wait_for(lambda: net["ecs"]("DescribeInstanceAttribute", InstanceId=created)["Status"] == "Stopped",
             what="the created instance Stopped")
    e = net["ecs"].error("StartInstance", InstanceId=created)
    assert (e.code, e.status_code) == ("OperationDenied.NoStock", 403)
    assert net["ecs"]("DescribeInstanceAttribute", InstanceId=created)["Status"] == "Stopped"
    # Stopping one gives its memory back to the host.
    running = [i["InstanceId"] for i in net["ecs"]("DescribeInstances", PageSize=100)["Instances"]["Instance"]
               if i["InstanceId"] != created]
    wait_for(lambda: all(i["Status"] == "Running" for i in net["ecs"]("DescribeInstances", PageSize=100)
                         ["Instances"]["Instance"] if i["InstanceId"] != created), timeout=30, what="Running")
    net["ecs"]("StopInstance", InstanceId=running[0])
    wait_for(lambda: net["ecs"]("DescribeInstanceAttribute", InstanceId=running[0])["Status"] == "Stopped",
             timeout=30, what="stopped")
    net["ecs"]("StartInstance", InstanceId=created)
    assert net["ecs"]("DescribeInstanceAttribute", InstanceId=created)["Status"] == "Starting"


def test_admission_counts_vcpus(own_feitian, tmp_path):
    f = sim_host(own_feitian, tmp_path, 2, 16384, overcommit=1.5)  # 3 vCPUs to give, 15 GiB
    net = network(f, f.credentials())
    launch(net, InstanceType="ecs.t6-c1m1.large")  # 2 vCPUs
    e = refused(net, "OperationDenied.NoStock", 403, InstanceType="ecs.t6-c1m1.large")
    assert "vCPUs" in (e.data or {}).get("Recommend", ""), e.data
    launch(net)  # 1 vCPU fits
    refused(net, "OperationDenied.NoStock", 403)
    assert instance_count(net) == 2


def test_concurrent_runs_never_overfill_the_host(small_host):
    f = small_host
    net = network(f, f.credentials())
    def one():
        ecs = Api(f, f.credentials(), "ecs")
        try:
            ecs("RunInstances", ImageId=IMAGE, InstanceType=SMALL, VSwitchId=net["vsw"], SecurityGroupId=net["sg"],
                Amount=2)
            return "ok"
        except Exception as e:
            return getattr(e, "code", repr(e))

    results = at_once(one, 6)
    # 7 GiB: three pairs fit, the others are refused; never more than the host holds.
    assert sorted(results) == ["OperationDenied.NoStock"] * 3 + ["ok"] * 3, results
    assert instance_count(net) == 6
