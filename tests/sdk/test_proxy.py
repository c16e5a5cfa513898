"""Done-when 3: the edge as an HTTP proxy for the cloud's own host names. A client that
knows no endpoint setting, with HTTP_PROXY pointed at feitian, gets the same answers as a
direct call; CONNECT is refused at once; other hosts are never forwarded to."""
import json
import socket
import time

from conftest import v1_client, without_request_id


def test_v1_sdk_through_http_proxy_matches_direct(feitian, monkeypatch):
    from aliyunsdkecs.request.v20140526.DescribeRegionsRequest import DescribeRegionsRequest
    from aliyunsdkecs.request.v20140526.DescribeZonesRequest import DescribeZonesRequest

    client = v1_client(feitian)
    direct = {}
    for make in (DescribeRegionsRequest, DescribeZonesRequest):
        req = make()
        req.set_endpoint(feitian.endpoint)
        direct[make] = json.loads(client.do_action_with_exception(req))

    monkeypatch.setenv("HTTP_PROXY", f"http://{feitian.endpoint}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://{feitian.endpoint}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    for make in (DescribeRegionsRequest, DescribeZonesRequest):
        req = make()  # no endpoint: the SDK's own, ecs-cn-hangzhou.aliyuncs.com, over plain HTTP
        status, _h, body, exc = v1_client(feitian)._implementation_of_do_action(req)
        assert exc is None and status == 200, body
        assert without_request_id(body) == without_request_id(direct[make])


def raw(feitian, request: bytes, timeout=5):
    with socket.create_connection((feitian.host, feitian.port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and (b"Connection: close" in data or b"connection: close" in data or len(data) > 100):
                break
        return data


def test_connect_is_refused_at_once(feitian):
    t0 = time.monotonic()
    reply = raw(feitian, b"CONNECT location-readonly.aliyuncs.com:443 HTTP/1.1\r\nHost: location-readonly.aliyuncs.com:443\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 403"), reply
    assert b"plain HTTP" in reply
    assert time.monotonic() - t0 < 5  # generous: the point is that it does not hang


def test_other_hosts_are_never_forwarded(feitian):
    reply = raw(feitian, b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 403"), reply
    assert b"never forwards" in reply


def test_cloud_host_routes_by_product(feitian):
    """A VPC version sent to ECS's host name is not ECS's: the real InvalidVersion."""
    req = (b"POST http://ecs-cn-hangzhou.aliyuncs.com/?Action=DescribeRegions&Version=2016-04-28 HTTP/1.1\r\n"
           b"Host: ecs-cn-hangzhou.aliyuncs.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    reply = raw(feitian, req)
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b'"Code":"InvalidVersion"' in reply
