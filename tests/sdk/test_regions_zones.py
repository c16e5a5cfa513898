"""Done-when 2: both SDK generations call DescribeRegions and DescribeZones (ECS and VPC)
successfully, in JSON and XML, and every answer fits the official models.

The embedded default has two regions (docs/regions.md): `cn-hangzhou`, the home region, and
`cn-shanghai`. The tests at the end use the second one through the official SDKs: its ids
carry `uf`, each region's Describe calls see only its own resources (the same CIDR in both),
its host names reach feitian through the proxy, and its OSS endpoint is refused."""
import json
import uuid

import oss2
import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_vpc20160428 import models as vpc_models

from conftest import (Api, ecs_v3, model_round_trip, v1_client, v1_common, v3_raw, vpc_v3, wait_for,
                      without_request_id, xml_to_obj)

ECS, VPC = "2014-05-26", "2016-04-28"


def test_v3_ecs_describe_regions_json(feitian):
    body = v3_raw(ecs_v3(feitian), "DescribeRegions", ECS)
    out = model_round_trip(ecs_models.DescribeRegionsResponseBody, body)
    assert out["Regions"]["Region"] == [
        {"RegionId": "cn-hangzhou", "LocalName": "华东1（杭州）",
         "RegionEndpoint": "ecs.cn-hangzhou.aliyuncs.com", "Status": "available"},
        {"RegionId": "cn-shanghai", "LocalName": "华东2（上海）",
         "RegionEndpoint": "ecs.cn-shanghai.aliyuncs.com", "Status": "available"},
    ]
    assert len(out["RequestId"]) == 36
    # The typed call of the SDK works too.
    typed = ecs_v3(feitian).describe_regions(ecs_models.DescribeRegionsRequest(accept_language="en-US"))
    assert typed.status_code == 200
    assert [r.local_name for r in typed.body.regions.region] == ["China (Hangzhou)", "China (Shanghai)"]


def test_v3_ecs_describe_zones_json(feitian):
    body = v3_raw(ecs_v3(feitian), "DescribeZones", ECS, {"RegionId": "cn-hangzhou"})
    out = model_round_trip(ecs_models.DescribeZonesResponseBody, body)
    zones = out["Zones"]["Zone"]
    assert [z["ZoneId"] for z in zones] == ["cn-hangzhou-h", "cn-hangzhou-i", "cn-hangzhou-j", "cn-hangzhou-k"]
    z = zones[0]
    for field in ("ZoneType", "LocalName", "AvailableResourceCreation", "AvailableDiskCategories",
                  "AvailableInstanceTypes", "AvailableResources"):
        assert field in z, field
    info = z["AvailableResources"]["ResourcesInfo"][0]
    assert "ecs.g6.large" in info["InstanceTypes"]["supportedInstanceType"]
    assert info["NetworkTypes"]["supportedNetworkCategory"] == ["vpc"]
    typed = ecs_v3(feitian).describe_zones(ecs_models.DescribeZonesRequest(region_id="cn-hangzhou", verbose=False))
    assert [z.zone_id for z in typed.body.zones.zone][0] == "cn-hangzhou-h"
    assert typed.body.zones.zone[0].available_resources is None


def test_v3_vpc_regions_and_zones_json(feitian):
    body = v3_raw(vpc_v3(feitian), "DescribeRegions", VPC)
    out = model_round_trip(vpc_models.DescribeRegionsResponseBody, body)
    assert [r["RegionEndpoint"] for r in out["Regions"]["Region"]] == [
        "vpc.cn-hangzhou.aliyuncs.com", "vpc.cn-shanghai.aliyuncs.com"]
    body = v3_raw(vpc_v3(feitian), "DescribeZones", VPC, {"RegionId": "cn-hangzhou"})
    out = model_round_trip(vpc_models.DescribeZonesResponseBody, body)
    assert {z["ZoneType"] for z in out["Zones"]["Zone"]} == {"AvailabilityZone"}
    typed = vpc_v3(feitian).describe_zones(vpc_models.DescribeZonesRequest(region_id="cn-hangzhou", accept_language="en-US"))
    assert typed.body.zones.zone[0].local_name == "Hangzhou Zone H"


def test_v3_xml_matches_json(feitian):
    cases = [
        (ecs_v3, "DescribeRegions", ECS, {}),
        (ecs_v3, "DescribeZones", ECS, {"RegionId": "cn-hangzhou", "Verbose": "false"}),
        (vpc_v3, "DescribeRegions", VPC, {}),
        (vpc_v3, "DescribeZones", VPC, {"RegionId": "cn-hangzhou"}),
    ]
    for make, action, version, query in cases:
        as_json = v3_raw(make(feitian), action, version, query)
        as_xml = v3_raw(make(feitian), action, version, dict(query, Format="XML"), body_type="string")
        assert as_xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
        root, obj = xml_to_obj(as_xml, list_tags=("Region", "Zone"))
        assert root == f"{action}Response"
        assert without_request_id(obj) == without_request_id(as_json), action
        assert len(obj["RequestId"]) == 36


def test_v3_verbose_zones_in_xml(feitian):
    text = v3_raw(ecs_v3(feitian), "DescribeZones", ECS, {"RegionId": "cn-hangzhou", "Format": "XML"}, body_type="string")
    _, obj = xml_to_obj(text, list_tags=("Zone", "supportedInstanceType"))
    z = obj["Zones"]["Zone"][0]
    assert "ecs.g6.large" in z["AvailableResources"]["ResourcesInfo"]["InstanceTypes"]["supportedInstanceType"]


def test_v1_ecs_sdk_json_and_xml(feitian):
    from aliyunsdkecs.request.v20140526.DescribeRegionsRequest import DescribeRegionsRequest
    from aliyunsdkecs.request.v20140526.DescribeZonesRequest import DescribeZonesRequest

    client = v1_client(feitian)
    for make in (DescribeRegionsRequest, DescribeZonesRequest):
        req = make()
        req.set_endpoint(feitian.endpoint)
        as_json = json.loads(client.do_action_with_exception(req))
        model = ecs_models.DescribeRegionsResponseBody if make is DescribeRegionsRequest else ecs_models.DescribeZonesResponseBody
        model_round_trip(model, as_json)
        req = make()
        req.set_endpoint(feitian.endpoint)
        if make is DescribeZonesRequest:
            req.set_Verbose(False)
        req.set_accept_format("XML")
        status, _h, body, exc = client._implementation_of_do_action(req)
        assert status == 200 and exc is None
        root, obj = xml_to_obj(body, list_tags=("Region", "Zone"))
        assert root == f"{make.__name__.replace('Request', '')}Response"
        if make is DescribeRegionsRequest:
            assert without_request_id(obj) == without_request_id(as_json)
        else:
            assert [z["ZoneId"] for z in obj["Zones"]["Zone"]] == [z["ZoneId"] for z in as_json["Zones"]["Zone"]]


def test_v1_vpc_json_and_xml(feitian):
    for action, params in (("DescribeRegions", {}), ("DescribeZones", {"RegionId": "cn-hangzhou"})):
        status, body = v1_common(feitian, action, VPC, params, product="Vpc")
        assert status == 200, body
        as_json = json.loads(body)
        model = getattr(vpc_models, f"{action}ResponseBody")
        model_round_trip(model, as_json)
        status, body = v1_common(feitian, action, VPC, params, fmt="XML", product="Vpc")
        assert status == 200
        _, obj = xml_to_obj(body, list_tags=("Region", "Zone"))
        assert without_request_id(obj) == without_request_id(as_json)


def test_get_query_form_also_works(feitian):
    """A V1 GET with every parameter in the query string (how the aliyun CLI and curl-style
    scripts call) is answered like the SDKs' POST."""
    import base64, datetime, hashlib, hmac, urllib.parse, urllib.request, uuid
    ak, secret = feitian.credentials()
    params = {
        "Action": "DescribeRegions", "Version": ECS, "AccessKeyId": ak, "Format": "JSON",
        "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": str(uuid.uuid4()),
        "Timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    enc = lambda s: urllib.parse.quote(s, safe="~")
    canon = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
    sts = "GET&%2F&" + enc(canon)
    params["Signature"] = base64.b64encode(hmac.new((secret + "&").encode(), sts.encode(), hashlib.sha1).digest()).decode()
    url = f"http://{feitian.endpoint}/?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/json;charset=utf-8"
        assert json.loads(r.read())["Regions"]["Region"][0]["RegionId"] == "cn-hangzhou"


# --- the second region ----------------------------------------------------------------------

HZ, SH = "cn-hangzhou", "cn-shanghai"
ZONE = {HZ: "cn-hangzhou-h", SH: "cn-shanghai-e"}
CODE = {HZ: "bp", SH: "uf"}
IMAGE = "feitian_linux_x64_1G_alibase_20261122.vhd"


def test_shanghai_zones_in_both_products_and_languages(feitian):
    for make, version in ((ecs_v3, ECS), (vpc_v3, VPC)):
        body = v3_raw(make(feitian), "DescribeZones", version, {"RegionId": SH, "Verbose": "false"})
        zones = body["Zones"]["Zone"]
        assert [z["ZoneId"] for z in zones] == ["cn-shanghai-e", "cn-shanghai-f", "cn-shanghai-g", "cn-shanghai-l"]
        assert zones[0]["LocalName"] == "华东 2 可用区 E"
        body = v3_raw(make(feitian), "DescribeZones", version, {"RegionId": SH, "AcceptLanguage": "en-US"})
        assert body["Zones"]["Zone"][3]["LocalName"] == "Shanghai Zone L"
    typed = ecs_v3(feitian).describe_zones(ecs_models.DescribeZonesRequest(region_id=SH))
    info = typed.body.zones.zone[0].available_resources.resources_info[0]
    assert "ecs.g6.large" in info.instance_types.supported_instance_type


class Region:
    """One account's VPC and ECS clients, every call in one region."""

    def __init__(self, f, key, region):
        self.region, self.vpc_api, self.ecs_api = region, Api(f, key, "vpc"), Api(f, key, "ecs")

    def vpc(self, action, **kw):
        return self.vpc_api(action, RegionId=self.region, **kw)

    def ecs(self, action, **kw):
        return self.ecs_api(action, RegionId=self.region, **kw)

    def vpc_error(self, action, **kw):
        return self.vpc_api.error(action, RegionId=self.region, **kw)

    def ecs_error(self, action, **kw):
        return self.ecs_api.error(action, RegionId=self.region, **kw)


def build(r):
    """A VPC, a vSwitch, a security group and a running instance in `r`'s region, all with
    the same addresses whatever the region."""
    vid = r.vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    wait_for(lambda: r.vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    sid = r.vpc("CreateVSwitch", VpcId=vid, CidrBlock="192.168.1.0/24", ZoneId=ZONE[r.region])["VSwitchId"]
    wait_for(lambda: r.vpc("DescribeVSwitchAttributes", VSwitchId=sid)["Status"] == "Available")
    gid = r.ecs("CreateSecurityGroup", VpcId=vid)["SecurityGroupId"]
    iid = r.ecs("RunInstances", ImageId=IMAGE, InstanceType="ecs.t5-lc1m1.small", VSwitchId=sid,
                SecurityGroupId=gid)["InstanceIdSets"]["InstanceIdSet"][0]

    def running():
        st = r.ecs("DescribeInstanceStatus", **{"InstanceId.1": iid})["InstanceStatuses"]["InstanceStatus"]
        return st and st[0]["Status"] == "Running"

    wait_for(running, timeout=30, what=f"{iid} Running")
    return dict(vpc=vid, vsw=sid, sg=gid, instance=iid)


def listed(r):
    """Every id of this account that the region's Describe calls show."""
    disks = r.ecs("DescribeDisks", PageSize=100)["Disks"]["Disk"]
    return dict(
        vpc=[v["VpcId"] for v in r.vpc("DescribeVpcs", PageSize=50)["Vpcs"]["Vpc"]],
        vsw=[v["VSwitchId"] for v in r.vpc("DescribeVSwitches", PageSize=50)["VSwitches"]["VSwitch"]],
        sg=[g["SecurityGroupId"] for g in r.ecs("DescribeSecurityGroups", PageSize=50)["SecurityGroups"]["SecurityGroup"]],
        instance=[i["InstanceId"] for i in r.ecs("DescribeInstances", PageSize=100)["Instances"]["Instance"]],
        disk=[d["DiskId"] for d in disks],
    )


def test_two_regions_hold_their_own_resources_with_the_same_cidr(feitian, account):
    hz, sh = Region(feitian, account, HZ), Region(feitian, account, SH)
    made = {HZ: build(hz), SH: build(sh)}
    try:
        for region, ids in made.items():
            for kind, prefix in (("vpc", "vpc-"), ("vsw", "vsw-"), ("sg", "sg-"), ("instance", "i-")):
                assert ids[kind].startswith(prefix + CODE[region]), (region, kind, ids[kind])

        for r in (hz, sh):
            mine, other = made[r.region], made[HZ if r is sh else SH]
            seen = listed(r)
            for kind in ("vpc", "vsw", "sg", "instance"):
                assert seen[kind] == [mine[kind]], (r.region, kind, seen)
            assert len(seen["disk"]) == 1 and seen["disk"][0].startswith("d-" + CODE[r.region])
            inst = r.ecs("DescribeInstances", InstanceIds=json.dumps([mine["instance"]]))["Instances"]["Instance"][0]
            assert (inst["RegionId"], inst["ZoneId"]) == (r.region, ZONE[r.region])
            # Same CIDR, same first address: the regions' networks never meet.
            assert inst["VpcAttributes"]["PrivateIpAddress"]["IpAddress"] == ["192.168.1.1"]
            vpc = r.vpc("DescribeVpcAttribute", VpcId=mine["vpc"])
            assert (vpc["RegionId"], vpc["CidrBlock"]) == (r.region, "192.168.0.0/16")
            # The other region's resources are not found from here, by id or by filter.
            assert r.vpc_error("DescribeVpcAttribute", VpcId=other["vpc"]).code == "InvalidVpcId.NotFound"
            assert r.vpc_error("DescribeVSwitchAttributes", VSwitchId=other["vsw"]).code == "InvalidVSwitchId.NotFound"
            assert r.ecs("DescribeInstances", InstanceIds=json.dumps([other["instance"]]))["TotalCount"] == 0
            assert r.ecs("DescribeVpcs", VpcId=other["vpc"])["TotalCount"] == 0
            assert r.ecs_error("DescribeSecurityGroupAttribute", SecurityGroupId=other["sg"]).code == \
                "InvalidSecurityGroupId.NotFound"
            assert r.ecs("DescribeSecurityGroups", SecurityGroupIds=json.dumps([other["sg"]]))["TotalCount"] == 0
            assert r.vpc("DescribeVSwitches", VSwitchId=other["vsw"])["TotalCount"] == 0
            # Nor can one region's parts be combined with the other's.
            e = r.vpc_error("CreateVSwitch", VpcId=other["vpc"], CidrBlock="192.168.2.0/24", ZoneId=ZONE[r.region])
            assert e.code == "InvalidVpcId.NotFound"
            other_zone = ZONE[HZ if r is sh else SH]
            e = r.vpc_error("CreateVSwitch", VpcId=mine["vpc"], CidrBlock="192.168.2.0/24", ZoneId=other_zone)
            assert e.code == "InvalidZoneId.NotFound"
            e = r.ecs_error("RunInstances", ImageId=IMAGE, InstanceType="ecs.t5-lc1m1.small",
                            VSwitchId=other["vsw"], SecurityGroupId=mine["sg"])
            assert e.code == "InvalidVSwitchId.NotFound", e
    finally:
        for r in (hz, sh):
            ids = made[r.region]
            r.ecs("DeleteInstance", InstanceId=ids["instance"], Force="true")
            r.ecs("DeleteSecurityGroup", SecurityGroupId=ids["sg"])
            r.vpc("DeleteVSwitch", VSwitchId=ids["vsw"])
            r.vpc("DeleteVpc", VpcId=ids["vpc"])
    for r in (hz, sh):
        assert listed(r) == dict(vpc=[], vsw=[], sg=[], instance=[], disk=[]), r.region


def test_quotas_count_per_region(feitian):
    name = f"regions-quota-{uuid.uuid4().hex[:8]}"
    key = feitian.new_account(name)
    feitian.cli("account", "quota", name, "vpcs=1")
    hz, sh = Region(feitian, key, HZ), Region(feitian, key, SH)
    made = [hz.vpc("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]]
    # Hangzhou's VPC does not count in Shanghai.
    made.append(sh.vpc("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"])
    try:
        for r in (hz, sh):
            assert r.vpc_error("CreateVpc", CidrBlock="172.16.0.0/12").code == "QuotaExceeded.Vpc"
    finally:
        for r, vid in zip((hz, sh), made):
            wait_for(lambda: r.vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
            r.vpc("DeleteVpc", VpcId=vid)


def test_shanghai_host_names_reach_feitian_through_the_proxy(feitian, account, monkeypatch):
    sh = Region(feitian, account, SH)
    vid = sh.vpc("CreateVpc", CidrBlock="172.16.0.0/12")["VpcId"]
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://{feitian.endpoint}")
        monkeypatch.setenv("HTTPS_PROXY", f"http://{feitian.endpoint}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        for host, product, version, action, key in (
            ("vpc.cn-shanghai.aliyuncs.com", "Vpc", VPC, "DescribeVpcs", "Vpcs"),
            ("ecs.cn-shanghai.aliyuncs.com", "Ecs", ECS, "DescribeVpcs", "Vpcs"),
        ):
            status, body = v1_common(feitian, action, version, {"RegionId": SH}, product=product, endpoint=host,
                                     key=account, region=SH)
            assert status == 200, body
            assert [v["VpcId"] for v in json.loads(body)[key]["Vpc"]] == [vid]
        # The ECS SDK's own endpoint for the region, over the proxy, with no endpoint set.
        from aliyunsdkecs.request.v20140526.DescribeZonesRequest import DescribeZonesRequest
        status, _h, body, exc = v1_client(feitian, account, SH)._implementation_of_do_action(DescribeZonesRequest())
        assert exc is None and status == 200, body
        assert json.loads(body)["Zones"]["Zone"][0]["ZoneId"] == "cn-shanghai-e"
    finally:
        monkeypatch.delenv("HTTP_PROXY", raising=False)
        monkeypatch.delenv("HTTPS_PROXY", raising=False)
        wait_for(lambda: sh.vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
        sh.vpc("DeleteVpc", VpcId=vid)


def test_oss_answers_in_the_home_region_only(feitian, account):
    """OSS stays one region, the home one: a request to Shanghai's OSS endpoint is a clear
    403 AccessDenied naming the home endpoint, never a 5xx and never Hangzhou's answer."""
    proxies = {"http": f"http://{feitian.endpoint}"}
    auth = oss2.Auth(*account)
    home = oss2.Service(auth, "http://oss-cn-hangzhou.aliyuncs.com", proxies=proxies)
    home.list_buckets()
    for endpoint in ("http://oss-cn-shanghai.aliyuncs.com", "http://oss-cn-shanghai-internal.aliyuncs.com"):
        for call in (lambda: oss2.Service(auth, endpoint, proxies=proxies).list_buckets(),
                     lambda: oss2.Bucket(auth, endpoint, "regions-probe", proxies=proxies).create_bucket(),
                     lambda: oss2.Bucket(auth, endpoint, "regions-probe", proxies=proxies).get_object("k")):
            with pytest.raises(oss2.exceptions.AccessDenied) as e:
                call()
            assert e.value.status == 403
            assert e.value.details.get("Endpoint") == "oss-cn-hangzhou.aliyuncs.com", e.value.details
            assert "home region cn-hangzhou" in e.value.message
    # Nothing was made by the refused create.
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        oss2.Bucket(auth, "http://oss-cn-hangzhou.aliyuncs.com", "regions-probe", proxies=proxies).get_bucket_info()


def test_a_disk_without_region_id_goes_to_its_zones_region(feitian, account):
    """CreateDisk without RegionId (docs/decisions.md) takes the region its ZoneId names."""
    ecs = Api(feitian, account, "ecs")
    did = ecs("CreateDisk", RegionId=None, ZoneId="cn-shanghai-f", Size=20)["DiskId"]
    try:
        assert did.startswith("d-uf"), did
        disk = ecs("DescribeDisks", RegionId=SH, DiskIds=json.dumps([did]))["Disks"]["Disk"][0]
        assert (disk["RegionId"], disk["ZoneId"]) == (SH, "cn-shanghai-f")
        assert ecs("DescribeDisks", RegionId=HZ, DiskIds=json.dumps([did]))["TotalCount"] == 0
    finally:
        wait_for(lambda: ecs("DescribeDisks", RegionId=SH, DiskIds=json.dumps([did]))["Disks"]["Disk"][0]["Status"]
                 == "Available", what=f"{did} Available")
        ecs("DeleteDisk", RegionId=None, DiskId=did)


def test_real_guests_in_two_regions_share_a_cidr_and_never_meet():
    """With QEMU: a guest in each region, in VPCs with the same CIDR and the same private
    address, each in its own namespace (named after its VPC's id), each told its own region
    by the metadata service; the namespaces go with the instances."""
    from pathlib import Path
    import tempfile

    from qemu_helpers import WHY, qemu_feitian, ssh_ok

    if WHY:
        pytest.skip(f"real instances need root and QEMU: {WHY}")
    f, finish = qemu_feitian("198.18.97.0/24")  # no other module uses this pool
    try:
        key = f.new_account(f"regions-vm-{uuid.uuid4().hex[:8]}")
        guests = {}
        for region in (HZ, SH):
            r = Region(f, key, region)
            vid = r.vpc("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
            wait_for(lambda: r.vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
            sid = r.vpc("CreateVSwitch", VpcId=vid, CidrBlock="192.168.1.0/24", ZoneId=ZONE[region])["VSwitchId"]
            wait_for(lambda: r.vpc("DescribeVSwitchAttributes", VSwitchId=sid)["Status"] == "Available")
            gid = r.ecs("CreateSecurityGroup", VpcId=vid)["SecurityGroupId"]
            r.ecs("AuthorizeSecurityGroup", SecurityGroupId=gid, IpProtocol="tcp", PortRange="22/22",
                  SourceCidrIp="0.0.0.0/0")
            # Key pairs are per region too: each region's own "login".
            login = type("Login", (), {})()
            login.keyfile = Path(tempfile.mkdtemp(prefix="feitian-key-")) / "login.pem"
            login.keyfile.write_text(r.ecs("CreateKeyPair", KeyPairName="login")["PrivateKeyBody"])
            login.keyfile.chmod(0o600)
            iid = r.ecs("RunInstances", ImageId=IMAGE, InstanceType="ecs.t5-lc1m1.small", VSwitchId=sid,
                        SecurityGroupId=gid, KeyPairName="login")["InstanceIdSets"]["InstanceIdSet"][0]
            guests[region] = dict(r=r, vpc=vid, instance=iid, login=login)
        for region, g in guests.items():
            r, iid = g["r"], g["instance"]
            wait_for(lambda: r.ecs("DescribeInstanceStatus", **{"InstanceId.1": iid})["InstanceStatuses"]
                     ["InstanceStatus"][0]["Status"] == "Running", timeout=600, what=f"{iid} Running")
            e = r.vpc("AllocateEipAddress")
            r.vpc("AssociateEipAddress", AllocationId=e["AllocationId"], InstanceId=iid)
            g["eip"], g["eip_id"] = e["EipAddress"], e["AllocationId"]
        assert guests[HZ]["eip"] != guests[SH]["eip"]

        namespaces = {n.name for n in Path("/var/run/netns").iterdir()}
        for region, g in guests.items():
            assert g["vpc"].startswith("vpc-" + CODE[region])
            assert [n for n in namespaces if n.endswith("-" + g["vpc"])], (g["vpc"], namespaces)
            md = "http://100.100.100.200/latest/meta-data"
            said = ssh_ok(g["login"], g["eip"], f"wget -qO- {md}/region-id; echo; wget -qO- {md}/zone-id; echo; "
                                                 f"wget -qO- {md}/instance-id; echo; ip -4 -o addr show eth0")
            lines = said.splitlines()
            assert lines[:3] == [region, ZONE[region], g["instance"]], said
            assert " 192.168.1.1/24 " in lines[3], said

        for region, g in guests.items():
            r = g["r"]
            r.ecs("DeleteInstance", InstanceId=g["instance"], Force="true")
            wait_for(lambda: not [n for n in Path("/var/run/netns").iterdir() if n.name.endswith("-" + g["vpc"])],
                     timeout=60, what=f"{g['vpc']}'s namespace removed")
            r.vpc("ReleaseEipAddress", AllocationId=g["eip_id"])
    finally:
        left = finish()
    assert left == [], left
