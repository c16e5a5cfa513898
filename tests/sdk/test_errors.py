"""Done-when 4: bad requests through the SDKs get the real error codes and statuses, change
nothing, and are never a 5xx."""
import datetime

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_tea_openapi.exceptions import ClientException

from conftest import db_snapshot, ecs_v3, v1_client, v1_common, v3_raw

ECS = "2014-05-26"


def v3_error(fn):
    with pytest.raises(ClientException) as e:
        fn()
    assert 400 <= e.value.status_code < 500
    return e.value


def v1_error(f, action="DescribeRegions", params=None, key=None, fmt="JSON"):
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkcore.request import CommonRequest
    r = CommonRequest(domain=f.endpoint, version=ECS, action_name=action, product="Ecs")
    r.set_method("POST")
    r.set_accept_format(fmt)
    for k, v in (params or {}).items():
        r.add_query_param(k, v)
    with pytest.raises(ServerException) as e:
        v1_client(f, key).do_action_with_exception(r)
    assert 400 <= e.value.get_http_status() < 500
    return e.value


@pytest.fixture
def unchanged(feitian):
    before = db_snapshot(feitian)
    yield
    assert db_snapshot(feitian) == before, "a refused request changed state"


def test_wrong_secret(feitian, unchanged):
    ak, _ = feitian.credentials()
    e = v3_error(lambda: v3_raw(ecs_v3(feitian, (ak, "not-the-secret")), "DescribeRegions", ECS))
    assert (e.code, e.status_code) == ("SignatureDoesNotMatch", 400)
    assert e.request_id and e.request_id != "None"
    # aliyun-python-sdk-core turns the server's SignatureDoesNotMatch into InvalidAccessKeySecret
    # when the server's string to sign equals its own: exactly what it does against the real
    # service, and proof that feitian signs the same string.
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkecs.request.v20140526.DescribeRegionsRequest import DescribeRegionsRequest
    req = DescribeRegionsRequest()
    req.set_endpoint(feitian.endpoint)
    with pytest.raises(ServerException) as e:
        v1_client(feitian, (ak, "not-the-secret")).do_action_with_exception(req)
    assert (e.value.get_error_code(), e.value.get_http_status()) == ("InvalidAccessKeySecret", 400)
    # A CommonRequest keeps no string to sign, so the SDK passes the server's code through.
    e = v1_error(feitian, key=(ak, "not-the-secret"))
    assert (e.get_error_code(), e.get_http_status()) == ("SignatureDoesNotMatch", 400)


def test_unknown_access_key(feitian, unchanged):
    key = ("LTAI" + "x" * 20, "whatever")
    e = v3_error(lambda: v3_raw(ecs_v3(feitian, key), "DescribeRegions", ECS))
    assert (e.code, e.status_code) == ("InvalidAccessKeyId.NotFound", 404)
    e = v1_error(feitian, key=key)
    assert (e.get_error_code(), e.get_http_status()) == ("InvalidAccessKeyId.NotFound", 404)


def test_replayed_nonce(feitian, unchanged, monkeypatch):
    from alibabacloud_tea_openapi.utils import Utils
    from aliyunsdkcore.utils import parameter_helper

    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: "feitian-test-fixed-nonce-v3"))
    v3_raw(ecs_v3(feitian), "DescribeRegions", ECS)
    e = v3_error(lambda: v3_raw(ecs_v3(feitian), "DescribeRegions", ECS))
    assert (e.code, e.status_code) == ("SignatureNonceUsed", 400)

    monkeypatch.setattr(parameter_helper, "get_uuid", lambda: "feitian-test-fixed-nonce-v1")
    status, _ = v1_common(feitian, "DescribeRegions", ECS)
    assert status == 200
    e = v1_error(feitian)
    assert (e.get_error_code(), e.get_http_status()) == ("SignatureNonceUsed", 400)


def test_expired_timestamp(feitian, unchanged, monkeypatch):
    from alibabacloud_tea_openapi.utils import Utils
    from aliyunsdkcore.utils import parameter_helper

    old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setattr(Utils, "get_timestamp", staticmethod(lambda: old))
    e = v3_error(lambda: v3_raw(ecs_v3(feitian), "DescribeRegions", ECS))
    assert (e.code, e.status_code) == ("InvalidTimeStamp.Expired", 400)
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: old)
    e = v1_error(feitian)
    assert (e.get_error_code(), e.get_http_status()) == ("InvalidTimeStamp.Expired", 400)


def test_unknown_action_and_version(feitian, unchanged):
    e = v3_error(lambda: v3_raw(ecs_v3(feitian), "DescribeUnicorns", ECS))
    assert (e.code, e.status_code) == ("InvalidAction.NotFound", 404)
    e = v1_error(feitian, action="DescribeUnicorns")
    assert (e.get_error_code(), e.get_http_status()) == ("InvalidAction.NotFound", 404)
    e = v3_error(lambda: v3_raw(ecs_v3(feitian), "DescribeRegions", "1999-01-01"))
    assert (e.code, e.status_code) == ("InvalidVersion", 400)


def test_missing_required_parameter(feitian, unchanged):
    e = v3_error(lambda: ecs_v3(feitian).describe_zones(ecs_models.DescribeZonesRequest()))
    assert (e.code, e.status_code) == ("MissingParameter", 400)
    assert "RegionId" in e.message
    e = v3_error(lambda: v3_raw(ecs_v3(feitian), "DescribeZones", ECS, {"RegionId": "mars-north-1"}))
    assert (e.code, e.status_code) == ("InvalidRegionId.NotFound", 404)
    e = v3_error(lambda: v3_raw(ecs_v3(feitian), "DescribeZones", ECS, {"RegionId": "cn-hangzhou", "Verbose": "maybe"}))
    assert (e.code, e.status_code) == ("InvalidParameter", 400)


def test_v1_missing_region_id(feitian, unchanged):
    # The core SDK fills RegionId from the client's region; a client with an empty region sends
    # it empty, which the real API treats as missing.
    status, body = v1_common(feitian, "DescribeZones", ECS, region="")
    assert status == 400, body
    assert b'"Code":"MissingParameter"' in body


def test_errors_in_xml(feitian, unchanged):
    """The V3 SDK parses an XML error by its content type; the V1 SDK's caller gets <Error>."""
    ak, _ = feitian.credentials()
    e = v3_error(lambda: v3_raw(ecs_v3(feitian, (ak, "bad")), "DescribeRegions", ECS, {"Format": "XML"}))
    assert e.code == "SignatureDoesNotMatch"
    status, body = v1_common(feitian, "DescribeUnicorns", ECS, fmt="XML")
    assert status == 404
    assert b"<Error><RequestId>" in body and b"<Code>InvalidAction.NotFound</Code>" in body
