"""Issue 3, VPC part: VPCs, vSwitches, route tables and entries, EIPs, through the VPC API
(alibabacloud_vpc20160428) and the ECS API's copies (alibabacloud_ecs20140526), with every
answer checked against the official response models."""
import ipaddress

from conftest import Api, db_snapshot, wait_for


def make_vpc(vpc, cidr="192.168.0.0/16", **kw):
    vid = vpc("CreateVpc", CidrBlock=cidr, **kw)["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available", what="VPC Available")
    return vid


def make_vswitch(vpc, vid, cidr, zone="cn-hangzhou-h", **kw):
    sid = vpc("CreateVSwitch", VpcId=vid, CidrBlock=cidr, ZoneId=zone, **kw)["VSwitchId"]
    wait_for(lambda: vpc("DescribeVSwitchAttributes", VSwitchId=sid)["Status"] == "Available", what="vSwitch Available")
    return sid


def test_vpc_lifecycle(feitian, account):
    vpc = Api(feitian, account, "vpc")
    out = vpc("CreateVpc", CidrBlock="10.0.0.0/8", VpcName="main", Description="the main network",
              **{"Tag.1.Key": "env", "Tag.1.Value": "dev"})
    vid = out["VpcId"]
    assert vid.startswith("vpc-bp") and len(vid) == 24
    assert out["VRouterId"].startswith("vrt-") and out["RouteTableId"].startswith("vtb-")
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    attr = vpc("DescribeVpcAttribute", VpcId=vid)
    assert (attr["VpcName"], attr["Description"], attr["CidrBlock"]) == ("main", "the main network", "10.0.0.0/8")
    assert attr["Tags"]["Tag"] == [{"Key": "env", "Value": "dev"}]
    vpc("ModifyVpcAttribute", VpcId=vid, VpcName="renamed", Description="new words")
    listed = vpc("DescribeVpcs", VpcName="renamed")
    assert listed["TotalCount"] == 1 and listed["Vpcs"]["Vpc"][0]["Description"] == "new words"
    assert vpc("DescribeVpcs", **{"Tag.1.Key": "env", "Tag.1.Value": "dev"})["TotalCount"] == 1
    assert vpc("DescribeVpcs", **{"Tag.1.Key": "env", "Tag.1.Value": "prod"})["TotalCount"] == 0
    vpc("DeleteVpc", VpcId=vid)
    assert vpc("DescribeVpcs", VpcId=vid)["TotalCount"] == 0
    assert vpc.error("DescribeVpcAttribute", VpcId=vid).code == "InvalidVpcId.NotFound"


def test_vpc_defaults_paging_and_quota(feitian, account):
    vpc = Api(feitian, account, "vpc")
    first = vpc("CreateVpc")["VpcId"]
    assert vpc("DescribeVpcs", VpcId=first)["Vpcs"]["Vpc"][0]["CidrBlock"] == "172.16.0.0/12"
    ids = [first] + [vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"] for _ in range(9)]
    e = vpc.error("CreateVpc", CidrBlock="10.0.0.0/8")
    assert e.code == "QuotaExceeded.Vpc"
    pages = [vpc("DescribeVpcs", PageSize=4, PageNumber=n) for n in (1, 2, 3)]
    assert [p["TotalCount"] for p in pages] == [10, 10, 10]
    seen = [v["VpcId"] for p in pages for v in p["Vpcs"]["Vpc"]]
    assert sorted(seen) == sorted(ids) and len(seen) == 10
    assert vpc("DescribeVpcs", VpcId=",".join(ids[:3]))["TotalCount"] == 3
    assert vpc.error("DescribeVpcs", PageSize=51).code == "InvalidParameter"


def test_vpc_cidr_validation(feitian, account):
    vpc = Api(feitian, account, "vpc")
    before = db_snapshot(feitian)
    for bad in ("8.8.0.0/16", "10.0.0.1/8", "10.0.0.0/25", "192.168.0.0", "not-a-cidr", "172.32.0.0/16"):
        assert vpc.error("CreateVpc", CidrBlock=bad).code == "InvalidCidrBlock.Malformed", bad
    assert vpc.error("CreateVpc", VpcName="9starts-with-digit").code == "InvalidVpcName.Malformed"
    assert vpc.error("CreateVpc", Description="http://spam").code == "InvalidDescription.Malformed"
    assert vpc.error("CreateVpc", DryRun="true").code == "DryRunOperation"
    assert db_snapshot(feitian) == before


def test_vswitches_and_dependencies(feitian, account):
    vpc = Api(feitian, account, "vpc")
    vid = make_vpc(vpc)
    sid = make_vswitch(vpc, vid, "192.168.1.0/24", VSwitchName="web", Description="web tier",
                       **{"Tag.1.Key": "tier", "Tag.1.Value": "web"})
    attr = vpc("DescribeVSwitchAttributes", VSwitchId=sid)
    assert attr["AvailableIpAddressCount"] == 252  # first and last three reserved
    assert (attr["VpcId"], attr["ZoneId"], attr["VSwitchName"]) == (vid, "cn-hangzhou-h", "web")
    assert attr["RouteTable"]["RouteTableType"] == "System"
    assert vpc.error("CreateVSwitch", VpcId=vid, CidrBlock="192.168.1.128/25", ZoneId="cn-hangzhou-h").code == "InvalidCidrBlock.Overlapped"
    assert vpc.error("CreateVSwitch", VpcId=vid, CidrBlock="10.1.0.0/24", ZoneId="cn-hangzhou-h").code == "InvalidParameter"
    assert vpc.error("CreateVSwitch", VpcId=vid, CidrBlock="192.168.2.0/30", ZoneId="cn-hangzhou-h").code == "InvalidCidrBlock.Malformed"
    assert vpc.error("CreateVSwitch", VpcId=vid, CidrBlock="192.168.2.0/24", ZoneId="cn-hangzhou-z").code == "InvalidZoneId.NotFound"
    assert vpc.error("CreateVSwitch", VpcId="vpc-bp000000000000000000", CidrBlock="192.168.2.0/24", ZoneId="cn-hangzhou-h").code == "InvalidVpcId.NotFound"
    sid2 = make_vswitch(vpc, vid, "192.168.2.0/24", zone="cn-hangzhou-i")
    assert vpc("DescribeVSwitches", VpcId=vid)["TotalCount"] == 2
    assert [s["VSwitchId"] for s in vpc("DescribeVSwitches", ZoneId="cn-hangzhou-i")["VSwitches"]["VSwitch"]] == [sid2]
    assert vpc("DescribeVSwitches", **{"Tag.1.Key": "tier"})["VSwitches"]["VSwitch"][0]["VSwitchId"] == sid
    assert sorted(vpc("DescribeVpcAttribute", VpcId=vid)["VSwitchIds"]["VSwitchId"]) == sorted([sid, sid2])
    vpc("ModifyVSwitchAttribute", VSwitchId=sid, VSwitchName="frontend")
    assert vpc("DescribeVSwitchAttributes", VSwitchId=sid)["VSwitchName"] == "frontend"
    e = vpc.error("DeleteVpc", VpcId=vid)
    assert (e.code, e.status_code) == ("DependencyViolation", 400)
    vpc("DeleteVSwitch", VSwitchId=sid)
    vpc("DeleteVSwitch", VSwitchId=sid2)
    assert vpc.error("DeleteVSwitch", VSwitchId=sid).code == "InvalidVSwitchId.NotFound"
    vpc("DeleteVpc", VpcId=vid)


def test_overlapping_vpcs_are_separate_networks(feitian, account):
    vpc = Api(feitian, account, "vpc")
    a, b = make_vpc(vpc, "10.0.0.0/16"), make_vpc(vpc, "10.0.0.0/16")
    make_vswitch(vpc, a, "10.0.1.0/24")
    make_vswitch(vpc, b, "10.0.1.0/24")


def test_route_tables_and_entries(feitian, account):
    vpc = Api(feitian, account, "vpc")
    vid = make_vpc(vpc, "172.16.0.0/16")
    rt = vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["RouterTableIds"]["RouterTableIds"][0]
    sid = make_vswitch(vpc, vid, "172.16.3.0/24")
    tables = vpc("DescribeRouteTables", RouteTableId=rt)["RouteTables"]["RouteTable"]
    entries = tables[0]["RouteEntrys"]["RouteEntry"]
    assert [(e["DestinationCidrBlock"], e["Type"], e["NextHopType"]) for e in entries] == [("172.16.3.0/24", "System", "local")]
    assert tables[0]["VSwitchIds"]["VSwitchId"] == [sid]
    listed = vpc("DescribeRouteTableList", VpcId=vid)["RouterTableList"]["RouterTableListType"]
    assert [t["RouteTableId"] for t in listed] == [rt]
    lst = vpc("DescribeRouteEntryList", RouteTableId=rt)
    assert lst["RouteEntrys"]["RouteEntry"][0]["DestinationCidrBlock"] == "172.16.3.0/24"
    e = vpc.error("CreateRouteEntry", RouteTableId=rt, DestinationCidrBlock="10.9.0.0/16", NextHopType="Instance", NextHopId="i-bp000000000000000000")
    assert e.code == "InvalidNextHopId.NotFound"
    assert vpc.error("CreateRouteEntry", RouteTableId=rt, DestinationCidrBlock="10.9.0.1/16", NextHopId="i-x").code == "InvalidDestinationCidrBlock.Malformed"
    assert vpc.error("CreateRouteEntry", RouteTableId=rt, DestinationCidrBlock="10.9.0.0/16", NextHopType="Teleport", NextHopId="x").code == "InvalidParameter"
    system_id = lst["RouteEntrys"]["RouteEntry"][0]["RouteEntryId"]
    assert vpc.error("DeleteRouteEntry", RouteEntryId=system_id).code == "OperationDenied.SystemRouteEntry"
    assert vpc.error("DescribeRouteTables", RouteTableId="vtb-bp000000000000000000")["RouteTables"] if False else True
    assert vpc("DescribeRouteTables", RouteTableId="vtb-bp000000000000000000")["TotalCount"] == 0
    vpc("DeleteVSwitch", VSwitchId=sid)
    assert vpc("DescribeRouteEntryList", RouteTableId=rt)["RouteEntrys"]["RouteEntry"] == []


def test_eips(feitian, account):
    vpc = Api(feitian, account, "vpc")
    out = vpc("AllocateEipAddress", Bandwidth=10, Name="front", **{"Tag.1.Key": "k", "Tag.1.Value": "v"})
    eid, ip = out["AllocationId"], out["EipAddress"]
    assert eid.startswith("eip-") and ipaddress.ip_address(ip) in ipaddress.ip_network("198.18.0.0/16")
    got = vpc("DescribeEipAddresses", AllocationId=eid)["EipAddresses"]["EipAddress"][0]
    assert (got["IpAddress"], got["Status"], got["Bandwidth"], got["Name"]) == (ip, "Available", "10", "front")
    assert vpc("DescribeEipAddresses", EipAddress=ip)["TotalCount"] == 1
    assert vpc("DescribeEipAddresses", Status="InUse")["TotalCount"] == 0
    assert vpc.error("AssociateEipAddress", AllocationId=eid, InstanceId="i-bp000000000000000000").code == "InvalidInstanceId.NotFound"
    assert vpc.error("UnassociateEipAddress", AllocationId=eid, InstanceId="i-bp000000000000000000").code == "IncorrectEipStatus"
    second = vpc("AllocateEipAddress")["EipAddress"]
    assert second != ip
    assert vpc.error("AllocateEipAddress", Bandwidth=0).code == "InvalidParameter"
    assert vpc.error("AllocateEipAddress", IpAddress="8.8.8.8").code == "InvalidIpAddress.NotAvailable"
    vpc("ReleaseEipAddress", AllocationId=eid)
    assert vpc.error("ReleaseEipAddress", AllocationId=eid).code == "InvalidAllocationId.NotFound"


def test_ecs_api_copies(feitian, account):
    """The VPC actions of the ECS API (2014-05-26), as Packer's alicloud-ecs builder calls them."""
    ecs = Api(feitian, account, "ecs")
    vid = ecs("CreateVpc", CidrBlock="172.16.0.0/16", VpcName="packer")["VpcId"]
    wait_for(lambda: ecs("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    sid = ecs("CreateVSwitch", VpcId=vid, CidrBlock="172.16.0.0/24", ZoneId="cn-hangzhou-h", VSwitchName="packer")["VSwitchId"]
    wait_for(lambda: ecs("DescribeVSwitches", VSwitchId=sid)["VSwitches"]["VSwitch"][0]["Status"] == "Available")
    assert ecs("DescribeVSwitches", VpcId=vid)["TotalCount"] == 1
    tables = ecs("DescribeRouteTables", VRouterId=ecs("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["VRouterId"])
    assert tables["RouteTables"]["RouteTable"][0]["RouteEntrys"]["RouteEntry"][0]["DestinationCidrBlock"] == "172.16.0.0/24"
    ecs("ModifyVpcAttribute", VpcId=vid, Description="d")
    ecs("ModifyVSwitchAttribute", VSwitchId=sid, Description="d")
    eip = ecs("AllocateEipAddress")
    listed = ecs("DescribeEipAddresses", AllocationId=eip["AllocationId"])["EipAddresses"]["EipAddress"][0]
    assert listed["IpAddress"] == eip["EipAddress"] and listed["Bandwidth"] == "5"  # a string, as the ECS model declares it
    ecs("ReleaseEipAddress", AllocationId=eip["AllocationId"])
    ecs("DeleteVSwitch", VSwitchId=sid)
    ecs("DeleteVpc", VpcId=vid)


def test_v1_sdk_smoke(feitian, account):
    import json
    from aliyunsdkecs.request.v20140526.CreateVpcRequest import CreateVpcRequest
    from aliyunsdkecs.request.v20140526.DescribeVpcsRequest import DescribeVpcsRequest
    from conftest import v1_client
    client = v1_client(feitian, account)
    req = CreateVpcRequest()
    req.set_endpoint(feitian.endpoint)
    req.set_CidrBlock("192.168.0.0/16")
    vid = json.loads(client.do_action_with_exception(req))["VpcId"]
    req = DescribeVpcsRequest()
    req.set_endpoint(feitian.endpoint)
    req.set_VpcId(vid)
    assert json.loads(client.do_action_with_exception(req))["Vpcs"]["Vpc"][0]["VpcId"] == vid


def test_accounts_are_isolated(feitian, account):
    a = Api(feitian, account, "vpc")
    b = Api(feitian, feitian.new_account(f"iso-{account[0][-6:]}"), "vpc")
    vid = make_vpc(a)
    eid = a("AllocateEipAddress")["AllocationId"]
    assert b("DescribeVpcs")["TotalCount"] == 0
    assert b("DescribeVpcs", VpcId=vid)["TotalCount"] == 0
    assert b("DescribeEipAddresses")["TotalCount"] == 0
    assert b.error("DescribeVpcAttribute", VpcId=vid).code == "InvalidVpcId.NotFound"
    assert b.error("DeleteVpc", VpcId=vid).code == "InvalidVpcId.NotFound"
    assert b.error("CreateVSwitch", VpcId=vid, CidrBlock="192.168.1.0/24", ZoneId="cn-hangzhou-h").code == "InvalidVpcId.NotFound"
    assert b.error("ReleaseEipAddress", AllocationId=eid).code == "InvalidAllocationId.NotFound"
    assert a("DescribeVpcs", VpcId=vid)["TotalCount"] == 1


def test_client_token_idempotency(feitian, account):
    vpc = Api(feitian, account, "vpc")
    one = vpc("CreateVpc", CidrBlock="10.0.0.0/8", ClientToken="tok-1")
    two = vpc("CreateVpc", CidrBlock="10.0.0.0/8", ClientToken="tok-1")
    assert one["VpcId"] == two["VpcId"]
    assert vpc("DescribeVpcs")["TotalCount"] == 1
    assert vpc.error("CreateVpc", CidrBlock="192.168.0.0/16", ClientToken="tok-1").code == "IdempotentParameterMismatch"
    assert vpc.error("CreateVpc", ClientToken="x" * 65).code == "InvalidParameter"
