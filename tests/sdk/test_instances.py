"""Issue 3, ECS instances and what hangs off them, through alibabacloud_ecs20140526 (every
answer checked against the official models), with a smoke run through aliyun-python-sdk-ecs:
key pairs, images, instance types, RunInstances/CreateInstance, the lifecycle and
IncorrectInstanceStatus, describe filters, public IPs and EIPs, security-group membership,
disks, tags, ClientToken and DryRun."""
import base64
import ipaddress
import json

import pytest

from conftest import Api, db_snapshot, ecs_v3, v1_client, wait_for

IMAGE = "feitian_linux_x64_1G_alibase_20261122.vhd"


@pytest.fixture
def net(feitian, account):
    """A VPC with a /24 vSwitch and a security group, in a fresh account."""
    vpc = Api(feitian, account, "vpc")
    ecs = Api(feitian, account, "ecs")
    vid = vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    sid = vpc("CreateVSwitch", VpcId=vid, CidrBlock="192.168.1.0/24", ZoneId="cn-hangzhou-h")["VSwitchId"]
    wait_for(lambda: vpc("DescribeVSwitchAttributes", VSwitchId=sid)["Status"] == "Available")
    gid = ecs("CreateSecurityGroup", VpcId=vid)["SecurityGroupId"]
    return dict(vpc=vpc, ecs=ecs, vpc_id=vid, vsw=sid, sg=gid, key=account)


def run(net, **kw):
    kw.setdefault("ImageId", IMAGE)
    kw.setdefault("InstanceType", "ecs.t5-lc1m1.small")
    kw.setdefault("VSwitchId", net["vsw"])
    kw.setdefault("SecurityGroupId", net["sg"])
    return net["ecs"]("RunInstances", **kw)["InstanceIdSets"]["InstanceIdSet"]


def status(net, iid):
    return net["ecs"]("DescribeInstanceStatus", **{"InstanceId.1": iid})["InstanceStatuses"]["InstanceStatus"][0]["Status"]


def wait_status(net, iid, want):
    wait_for(lambda: status(net, iid) == want, timeout=20, what=f"{iid} {want}")


def test_catalogs(feitian, account):
    ecs = Api(feitian, account, "ecs")
    imgs = ecs("DescribeImages")["Images"]["Image"]
    assert IMAGE in [i["ImageId"] for i in imgs]
    img = [i for i in imgs if i["ImageId"] == IMAGE][0]
    assert (img["ImageOwnerAlias"], img["OSType"], img["Status"], img["IsPublic"]) == ("system", "linux", "Available", True)
    assert ecs("DescribeImages", ImageOwnerAlias="self")["TotalCount"] == 0
    assert ecs("DescribeImages", ImageId="ubuntu_22_04_x64_20G_alibase_20230907.vhd")["TotalCount"] == 0
    types = ecs("DescribeInstanceTypes")["InstanceTypes"]["InstanceType"]
    g6 = [t for t in types if t["InstanceTypeId"] == "ecs.g6.large"][0]
    assert (g6["CpuCoreCount"], g6["MemorySize"], g6["InstanceTypeFamily"]) == (2, 8.0, "ecs.g6")
    assert len(ecs("DescribeInstanceTypes", InstanceTypeFamily="ecs.c6")["InstanceTypes"]["InstanceType"]) == 2
    assert len(ecs("DescribeInstanceTypes", **{"InstanceTypes.1": "ecs.g6.large"})["InstanceTypes"]["InstanceType"]) == 1


def test_key_pairs(feitian, account):
    ecs = Api(feitian, account, "ecs")
    made = ecs("CreateKeyPair", KeyPairName="deploy")
    assert made["PrivateKeyBody"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert len(made["KeyPairFingerPrint"].split(":")) == 16
    assert ecs.error("CreateKeyPair", KeyPairName="deploy").code == "KeyPair.AlreadyExist"
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"
    imp = ecs("ImportKeyPair", KeyPairName="laptop", PublicKeyBody=pub)
    assert imp["KeyPairName"] == "laptop"
    assert ecs.error("ImportKeyPair", KeyPairName="bad", PublicKeyBody="ssh-rsa !!!").code == "InvalidPublicKeyBody.Malformed"
    assert ecs.error("ImportKeyPair", KeyPairName="1bad", PublicKeyBody=pub).code == "InvalidKeyPairName.Malformed"
    listed = ecs("DescribeKeyPairs")
    assert listed["TotalCount"] == 2
    assert ecs("DescribeKeyPairs", KeyPairName="lap*")["KeyPairs"]["KeyPair"][0]["KeyPairName"] == "laptop"
    with_key = ecs("DescribeKeyPairs", KeyPairName="laptop", IncludePublicKey="true")["KeyPairs"]["KeyPair"][0]
    assert with_key["PublicKey"] == pub.rsplit(" ", 1)[0]
    assert ecs.error("DeleteKeyPairs", KeyPairNames='["nope"]').code == "InvalidKeyPair.NotFound"
    ecs("DeleteKeyPairs", KeyPairNames='["deploy", "laptop"]')
    assert ecs("DescribeKeyPairs")["TotalCount"] == 0


def test_run_describe_and_lifecycle(feitian, net):
    ecs = net["ecs"]
    ecs("CreateKeyPair", KeyPairName="k1")
    user_data = base64.b64encode(b"#!/bin/sh\necho hello > /tmp/hello\n").decode()
    ids = run(net, Amount=2, KeyPairName="k1", UserData=user_data, InstanceName="web", HostName="web",
              InternetMaxBandwidthOut=10, **{"Tag.1.Key": "role", "Tag.1.Value": "web"})
    assert len(ids) == 2 and all(i.startswith("i-bp") for i in ids)
    assert status(net, ids[0]) in ("Pending", "Starting", "Running")
    for i in ids:
        wait_status(net, i, "Running")
    listed = ecs("DescribeInstances", VpcId=net["vpc_id"])
    assert listed["TotalCount"] == 2
    inst = [x for x in listed["Instances"]["Instance"] if x["InstanceId"] == ids[0]][0]
    assert (inst["InstanceName"], inst["HostName"], inst["KeyPairName"], inst["ImageId"]) == ("web", "web", "k1", IMAGE)
    assert (inst["Cpu"], inst["Memory"], inst["InstanceType"], inst["Status"]) == (1, 1024, "ecs.t5-lc1m1.small", "Running")
    ips = sorted(x["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0] for x in listed["Instances"]["Instance"])
    assert ips == ["192.168.1.1", "192.168.1.2"]
    pub = inst["PublicIpAddress"]["IpAddress"][0]
    assert ipaddress.ip_address(pub) in ipaddress.ip_network("198.18.0.0/16")
    assert inst["SecurityGroupIds"]["SecurityGroupId"] == [net["sg"]]
    nic = inst["NetworkInterfaces"]["NetworkInterface"][0]
    assert nic["NetworkInterfaceId"].startswith("eni-") and nic["MacAddress"].startswith("00:16:3e:")
    assert inst["Tags"]["Tag"] == [{"TagKey": "role", "TagValue": "web"}]
    assert ecs("DescribeInstances", PrivateIpAddresses='["192.168.1.2"]')["TotalCount"] == 1
    assert ecs("DescribeInstances", PublicIpAddresses=f'["{pub}"]')["Instances"]["Instance"][0]["InstanceId"] == ids[0]
    assert ecs("DescribeInstances", SecurityGroupId=net["sg"])["TotalCount"] == 2
    assert ecs("DescribeInstances", **{"Tag.1.Key": "role", "Tag.1.Value": "db"})["TotalCount"] == 0
    assert ecs("DescribeInstances", InstanceIds=json.dumps(ids[:1]))["TotalCount"] == 1
    assert ecs("DescribeInstances", MaxResults=1)["NextToken"] != ""
    attr = ecs("DescribeInstanceAttribute", InstanceId=ids[0])
    assert attr["VpcAttributes"]["VSwitchId"] == net["vsw"]
    disks = ecs("DescribeDisks", InstanceId=ids[0])["Disks"]["Disk"]
    assert [(d["Type"], d["Device"], d["Status"], d["Size"]) for d in disks] == [("system", "/dev/xvda", "In_use", 20)]

    iid = ids[0]
    assert ecs.error("StartInstance", InstanceId=iid).code == "IncorrectInstanceStatus"
    assert ecs.error("StartInstance", InstanceId=iid).status_code == 403
    ecs("StopInstance", InstanceId=iid)
    assert status(net, iid) in ("Stopping", "Stopped")
    wait_status(net, iid, "Stopped")
    assert ecs.error("RebootInstance", InstanceId=iid).code == "IncorrectInstanceStatus"
    ecs("StartInstance", InstanceId=iid)
    assert status(net, iid) in ("Starting", "Running")
    wait_status(net, iid, "Running")
    ecs("RebootInstance", InstanceId=iid)
    wait_status(net, iid, "Running")
    assert ecs.error("DeleteInstance", InstanceId=iid).code == "IncorrectInstanceStatus"
    ecs("ModifyInstanceAttribute", InstanceId=iid, DeletionProtection="true", InstanceName="renamed")
    assert ecs.error("DeleteInstance", InstanceId=iid, Force="true").code == "InvalidOperation.DeletionProtection"
    ecs("ModifyInstanceAttribute", InstanceId=iid, DeletionProtection="false")
    assert ecs("DescribeInstanceAttribute", InstanceId=iid)["InstanceName"] == "renamed"
    ecs("DeleteInstance", InstanceId=iid, Force="true")
    assert ecs.error("DescribeInstanceAttribute", InstanceId=iid).code == "InvalidInstanceId.NotFound"
    assert ecs("DescribeDisks", InstanceId=iid)["TotalCount"] == 0
    # The batch forms.
    out = ecs("StopInstances", **{"InstanceId.1": ids[1]})["InstanceResponses"]["InstanceResponse"][0]
    assert (out["InstanceId"], out["PreviousStatus"], out["CurrentStatus"], out["Code"]) == (ids[1], "Running", "Stopping", "200")
    wait_status(net, ids[1], "Stopped")
    e = ecs.error("StartInstances", **{"InstanceId.1": ids[1], "InstanceId.2": "i-bp000000000000000000"})
    assert e.code == "InvalidInstanceId.NotFound"
    assert status(net, ids[1]) == "Stopped", "AllTogether: nothing started"
    got = ecs("StartInstances", BatchOptimization="SuccessFirst", **{"InstanceId.1": ids[1], "InstanceId.2": "i-bp000000000000000000"})
    codes = [r["Code"] for r in got["InstanceResponses"]["InstanceResponse"]]
    assert codes == ["200", "InvalidInstanceId.NotFound"]
    wait_status(net, ids[1], "Running")
    ecs("RebootInstances", **{"InstanceId.1": ids[1]})
    wait_status(net, ids[1], "Running")
    ecs("DeleteInstances", Force="true", **{"InstanceId.1": ids[1]})
    assert ecs("DescribeInstances", VpcId=net["vpc_id"])["TotalCount"] == 0


def test_create_instance_starts_stopped_and_validation(feitian, net):
    ecs = net["ecs"]
    before = db_snapshot(feitian)
    base = dict(ImageId=IMAGE, InstanceType="ecs.g6.large", VSwitchId=net["vsw"], SecurityGroupId=net["sg"])
    bad = [
        (dict(base, ImageId="nope"), "InvalidImageId.NotFound"),
        (dict(base, InstanceType="ecs.huge"), "InvalidInstanceType.NotFound"),
        (dict(base, VSwitchId="vsw-bp000000000000000000"), "InvalidVSwitchId.NotFound"),
        (dict(base, SecurityGroupId="sg-bp000000000000000000"), "InvalidSecurityGroupId.NotFound"),
        (dict(base, KeyPairName="missing"), "InvalidKeyPairName.NotFound"),
        (dict(base, UserData="not base64!!"), "InvalidUserData.Base64FormatInvalid"),
        (dict(base, Password="weak"), "InvalidPassword.Malformed"),
        (dict(base, PrivateIpAddress="192.168.1.255"), "InvalidPrivateIpAddress.Malformed"),
        (dict(base, PrivateIpAddress="192.168.2.9"), "InvalidPrivateIpAddress.Malformed"),
        (dict(base, ZoneId="cn-hangzhou-i"), "InvalidVSwitchId.ZoneMismatch"),
        (dict(base, **{"SystemDisk.Category": "floppy"}), "InvalidSystemDiskCategory.ValueNotSupported"),
        ({k: v for k, v in base.items() if k != "SecurityGroupId"}, "MissingParameter"),
        (dict(base, DryRun="true"), "DryRunOperation"),
    ]
    for params, code in bad:
        assert ecs.error("CreateInstance", **params).code == code, params
    assert ecs.error("RunInstances", Amount=101, **base).code == "InvalidParameter"
    assert db_snapshot(feitian) == before
    iid = ecs("CreateInstance", PrivateIpAddress="192.168.1.100", **base)["InstanceId"]
    wait_status(net, iid, "Stopped")
    assert ecs.error("CreateInstance", PrivateIpAddress="192.168.1.100", **base).code == "InvalidPrivateIpAddress.Duplicated"
    got = ecs("DescribeInstances", InstanceIds=f'["{iid}"]')["Instances"]["Instance"][0]
    assert got["VpcAttributes"]["PrivateIpAddress"]["IpAddress"] == ["192.168.1.100"]
    assert got["PublicIpAddress"]["IpAddress"] == []
    ip = ecs("AllocatePublicIpAddress", InstanceId=iid)["IpAddress"]
    assert ecs.error("AllocatePublicIpAddress", InstanceId=iid).code == "AllocatedAlready"
    assert ecs("DescribeInstanceAttribute", InstanceId=iid)["PublicIpAddress"]["IpAddress"] == [ip]
    ecs("StartInstance", InstanceId=iid)
    wait_status(net, iid, "Running")


def test_membership_quota_last_group_and_dependencies(feitian, net):
    ecs, vpc = net["ecs"], net["vpc"]
    iid = run(net)[0]
    wait_status(net, iid, "Running")
    e = ecs.error("LeaveSecurityGroup", InstanceId=iid, SecurityGroupId=net["sg"])
    assert e.code == "InstanceLastSecurityGroup"
    extra = [ecs("CreateSecurityGroup", VpcId=net["vpc_id"])["SecurityGroupId"] for _ in range(5)]
    for g in extra[:4]:
        ecs("JoinSecurityGroup", InstanceId=iid, SecurityGroupId=g)
    assert ecs.error("JoinSecurityGroup", InstanceId=iid, SecurityGroupId=extra[4]).code == "JoinedGroupLimitExceed"
    assert ecs.error("JoinSecurityGroup", InstanceId=iid, SecurityGroupId=extra[0]).code == "InvalidInstanceId.AlreadyExists"
    groups = ecs("DescribeInstanceAttribute", InstanceId=iid)["SecurityGroupIds"]["SecurityGroupId"]
    assert groups == [net["sg"]] + extra[:4]
    ecs("LeaveSecurityGroup", InstanceId=iid, SecurityGroupId=net["sg"])
    other_vpc = vpc("CreateVpc", CidrBlock="10.0.0.0/16")["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=other_vpc)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    foreign = ecs("CreateSecurityGroup", VpcId=other_vpc)["SecurityGroupId"]
    ecs("LeaveSecurityGroup", InstanceId=iid, SecurityGroupId=extra[0])
    assert ecs.error("JoinSecurityGroup", InstanceId=iid, SecurityGroupId=foreign).code == "InvalidSecurityGroup.VpcMismatch"
    assert ecs.error("DeleteSecurityGroup", SecurityGroupId=extra[1]).code == "DependencyViolation"
    assert ecs("DescribeSecurityGroups", SecurityGroupId=extra[1])["SecurityGroups"]["SecurityGroup"][0]["EcsCount"] == 1
    assert vpc.error("DeleteVSwitch", VSwitchId=net["vsw"]).code == "DependencyViolation"
    assert vpc("DescribeVSwitchAttributes", VSwitchId=net["vsw"])["AvailableIpAddressCount"] == 251
    ecs("DeleteInstance", InstanceId=iid, Force="true")
    ecs("DeleteSecurityGroup", SecurityGroupId=extra[1])
    vpc("DeleteVSwitch", VSwitchId=net["vsw"])


def test_eip_and_routes_with_instances(feitian, net):
    ecs, vpc = net["ecs"], net["vpc"]
    iid = run(net)[0]
    wait_status(net, iid, "Running")
    eip = vpc("AllocateEipAddress")
    vpc("AssociateEipAddress", AllocationId=eip["AllocationId"], InstanceId=iid)
    got = vpc("DescribeEipAddresses", AllocationId=eip["AllocationId"])["EipAddresses"]["EipAddress"][0]
    assert (got["Status"], got["InstanceId"], got["InstanceType"]) == ("InUse", iid, "EcsInstance")
    assert ecs("DescribeInstances", EipAddresses=f'["{eip["EipAddress"]}"]')["Instances"]["Instance"][0]["EipAddress"]["IpAddress"] == eip["EipAddress"]
    assert vpc.error("ReleaseEipAddress", AllocationId=eip["AllocationId"]).code == "IncorrectEipStatus"
    rt = vpc("DescribeVpcs", VpcId=net["vpc_id"])["Vpcs"]["Vpc"][0]["RouterTableIds"]["RouterTableIds"][0]
    rte = vpc("CreateRouteEntry", RouteTableId=rt, DestinationCidrBlock="10.0.0.0/8", NextHopType="Instance", NextHopId=iid)
    assert rte["RouteEntryId"].startswith("rte-")
    assert vpc.error("CreateRouteEntry", RouteTableId=rt, DestinationCidrBlock="10.0.0.0/8", NextHopId=iid).code == "InvalidCIDRBlock.Duplicate"
    assert vpc.error("CreateRouteEntry", RouteTableId=rt, DestinationCidrBlock="192.168.1.0/25", NextHopId=iid).code == "InvalidDestinationCidrBlock.Conflict"
    entries = vpc("DescribeRouteEntryList", RouteTableId=rt, RouteEntryType="Custom")["RouteEntrys"]["RouteEntry"]
    assert [(e["DestinationCidrBlock"], e["NextHops"]["NextHop"][0]["NextHopId"]) for e in entries] == [("10.0.0.0/8", iid)]
    assert vpc.error("DeleteVpc", VpcId=net["vpc_id"]).code == "DependencyViolation"
    vpc("DeleteRouteEntry", RouteTableId=rt, DestinationCidrBlock="10.0.0.0/8", NextHopId=iid)
    ecs("DeleteInstance", InstanceId=iid, Force="true")
    got = vpc("DescribeEipAddresses", AllocationId=eip["AllocationId"])["EipAddresses"]["EipAddress"][0]
    assert (got["Status"], got["InstanceId"]) == ("Available", "")
    vpc("ReleaseEipAddress", AllocationId=eip["AllocationId"])


def test_attach_detach_key_pair_and_tags(feitian, net):
    ecs = net["ecs"]
    iid = run(net)[0]
    ecs("CreateKeyPair", KeyPairName="ops")
    out = ecs("AttachKeyPair", KeyPairName="ops", InstanceIds=f'["{iid}", "i-bp000000000000000000"]')
    assert (out["TotalCount"], out["FailCount"]) == ("2", "1")
    assert ecs("DescribeInstanceAttribute", InstanceId=iid) and ecs("DescribeInstances", KeyPairName="ops")["TotalCount"] == 1
    ecs("DetachKeyPair", KeyPairName="ops", InstanceIds=f'["{iid}"]')
    assert ecs("DescribeInstances", KeyPairName="ops")["TotalCount"] == 0
    ecs("TagResources", ResourceType="instance", **{"ResourceId.1": iid, "Tag.1.Key": "env", "Tag.1.Value": "prod", "Tag.2.Key": "team", "Tag.2.Value": "a"})
    ecs("TagResources", ResourceType="securitygroup", **{"ResourceId.1": net["sg"], "Tag.1.Key": "env", "Tag.1.Value": "prod"})
    ecs("TagResources", ResourceType="keypair", **{"ResourceId.1": "ops", "Tag.1.Key": "env", "Tag.1.Value": "prod"})
    listed = ecs("ListTagResources", ResourceType="instance", **{"ResourceId.1": iid})["TagResources"]["TagResource"]
    assert sorted((t["TagKey"], t["TagValue"]) for t in listed) == [("env", "prod"), ("team", "a")]
    by_tag = ecs("ListTagResources", ResourceType="keypair", **{"Tag.1.Key": "env"})["TagResources"]["TagResource"]
    assert [t["ResourceId"] for t in by_tag] == ["ops"]
    assert ecs("DescribeInstances", **{"Tag.1.Key": "team", "Tag.1.Value": "a"})["TotalCount"] == 1
    ecs("UntagResources", ResourceType="instance", **{"ResourceId.1": iid, "TagKey.1": "team"})
    assert ecs("DescribeInstances", **{"Tag.1.Key": "team"})["TotalCount"] == 0
    ecs("UntagResources", ResourceType="instance", All="true", **{"ResourceId.1": iid})
    assert ecs("ListTagResources", ResourceType="instance", **{"ResourceId.1": iid})["TagResources"]["TagResource"] == []
    assert ecs.error("TagResources", ResourceType="instance", **{"ResourceId.1": "i-bp000000000000000000", "Tag.1.Key": "a"}).code == "InvalidResourceId.NotFound"
    assert ecs.error("TagResources", ResourceType="spaceship", **{"ResourceId.1": iid, "Tag.1.Key": "a"}).code == "InvalidResourceType.NotFound"
    many = {f"Tag.{n}.Key": f"k{n}" for n in range(1, 21)}
    ecs("TagResources", ResourceType="instance", **{"ResourceId.1": iid}, **many)
    assert ecs.error("TagResources", ResourceType="instance", **{"ResourceId.1": iid, "Tag.1.Key": "one-more"}).code == "InvalidTagCount"


def test_client_token_and_v1_smoke(feitian, net):
    ecs = net["ecs"]
    one = run(net, ClientToken="run-1", Amount=2)
    two = run(net, ClientToken="run-1", Amount=2)
    assert one == two
    assert ecs("DescribeInstances", VpcId=net["vpc_id"])["TotalCount"] == 2
    from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest
    from aliyunsdkecs.request.v20140526.RunInstancesRequest import RunInstancesRequest
    client = v1_client(feitian, net["key"])
    req = RunInstancesRequest()
    req.set_endpoint(feitian.endpoint)
    req.set_ImageId(IMAGE)
    req.set_InstanceType("ecs.t5-lc1m1.small")
    req.set_VSwitchId(net["vsw"])
    req.set_SecurityGroupId(net["sg"])
    iid = json.loads(client.do_action_with_exception(req))["InstanceIdSets"]["InstanceIdSet"][0]
    req = DescribeInstancesRequest()
    req.set_endpoint(feitian.endpoint)
    req.set_InstanceIds(json.dumps([iid]))
    assert json.loads(client.do_action_with_exception(req))["Instances"]["Instance"][0]["InstanceId"] == iid


def test_typed_sdk_run_instances(feitian, net):
    from alibabacloud_ecs20140526 import models as m
    c = ecs_v3(feitian, net["key"])
    resp = c.run_instances(m.RunInstancesRequest(
        region_id="cn-hangzhou", image_id=IMAGE, instance_type="ecs.c6.large", v_switch_id=net["vsw"],
        security_group_ids=[net["sg"]], amount=1, system_disk=m.RunInstancesRequestSystemDisk(category="cloud_ssd", size=40),
        tag=[m.RunInstancesRequestTag(key="k", value="v")]))
    iid = resp.body.instance_id_sets.instance_id_set[0]
    got = c.describe_instances(m.DescribeInstancesRequest(region_id="cn-hangzhou", instance_ids=json.dumps([iid]))).body
    inst = got.instances.instance[0]
    assert (inst.instance_type, inst.cpu, inst.memory) == ("ecs.c6.large", 2, 4096)
    disk = c.describe_disks(m.DescribeDisksRequest(region_id="cn-hangzhou", instance_id=iid)).body.disks.disk[0]
    assert (disk.category, disk.size) == ("cloud_ssd", 40)


def test_ecs_api_routes_and_eips(feitian, net):
    """The ECS API's copies of the route and EIP actions (Packer calls these on ECS)."""
    ecs = net["ecs"]
    iid = run(net)[0]
    wait_status(net, iid, "Running")
    eip = ecs("AllocateEipAddress", Bandwidth=2)
    ecs("AssociateEipAddress", AllocationId=eip["AllocationId"], InstanceId=iid)
    got = ecs("DescribeEipAddresses", AllocationId=eip["AllocationId"])["EipAddresses"]["EipAddress"][0]
    assert (got["Status"], got["InstanceId"]) == ("InUse", iid)
    ecs("UnassociateEipAddress", AllocationId=eip["AllocationId"], InstanceId=iid)
    ecs("ReleaseEipAddress", AllocationId=eip["AllocationId"])
    vrouter = ecs("DescribeVpcs", VpcId=net["vpc_id"])["Vpcs"]["Vpc"][0]["VRouterId"]
    table = ecs("DescribeRouteTables", VRouterId=vrouter)["RouteTables"]["RouteTable"][0]["RouteTableId"]
    ecs("CreateRouteEntry", RouteTableId=table, DestinationCidrBlock="172.31.0.0/16", NextHopId=iid)
    entries = ecs("DescribeRouteTables", RouteTableId=table)["RouteTables"]["RouteTable"][0]["RouteEntrys"]["RouteEntry"]
    assert ("172.31.0.0/16", "Custom", iid) in [(e["DestinationCidrBlock"], e["Type"], e["InstanceId"]) for e in entries]
    ecs("DeleteRouteEntry", RouteTableId=table, DestinationCidrBlock="172.31.0.0/16", NextHopId=iid)
    entries = ecs("DescribeRouteTables", RouteTableId=table)["RouteTables"]["RouteTable"][0]["RouteEntrys"]["RouteEntry"]
    assert [e["Type"] for e in entries] == ["System"]
