"""Done-when 2: both SDK generations call DescribeRegions and DescribeZones (ECS and VPC)
successfully, in JSON and XML, and every answer fits the official models."""
import json

from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_vpc20160428 import models as vpc_models

from conftest import ecs_v3, model_round_trip, v1_client, v1_common, v3_raw, vpc_v3, without_request_id, xml_to_obj

ECS, VPC = "2014-05-26", "2016-04-28"


def test_v3_ecs_describe_regions_json(feitian):
    body = v3_raw(ecs_v3(feitian), "DescribeRegions", ECS)
    out = model_round_trip(ecs_models.DescribeRegionsResponseBody, body)
    region = out["Regions"]["Region"][0]
    assert region == {"RegionId": "cn-hangzhou", "LocalName": "华东1（杭州）",
                      "RegionEndpoint": "ecs.cn-hangzhou.aliyuncs.com", "Status": "available"}
    assert len(out["RequestId"]) == 36
    # The typed call of the SDK works too.
    typed = ecs_v3(feitian).describe_regions(ecs_models.DescribeRegionsRequest(accept_language="en-US"))
    assert typed.status_code == 200
    assert typed.body.regions.region[0].local_name == "China (Hangzhou)"


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
    assert out["Regions"]["Region"][0]["RegionEndpoint"] == "vpc.cn-hangzhou.aliyuncs.com"
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
