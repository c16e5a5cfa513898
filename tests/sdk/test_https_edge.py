"""Issue 17, HTTPS on the edge: one port serves HTTP and HTTPS, with certificates from a CA
of feitian's own (`feitian ca`) for the cloud's host names, `localhost` and the listen
address. The official clients reach it over HTTPS with that CA trusted: directly at the
edge's address, and by the cloud's own host names through the edge as HTTPS_PROXY (the edge
answers the CONNECT and serves the tunnel itself, forwarding nothing). Other CONNECTs and
other server names are refused at once; the CA survives a restart. Loopback only."""
import json
import socket
import ssl
import time
import uuid

import pytest

from conftest import v1_client


@pytest.fixture(scope="module")
def ca_file(feitian, tmp_path_factory):
    """The session feitian's CA certificate, exported the way docs/https.md says."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    feitian.cli("ca", "--export", str(path))
    assert path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    return str(path)


def test_ca_prints_the_same_certificate_it_exports(feitian, ca_file):
    assert feitian.cli("ca").stdout == open(ca_file).read()


def test_v3_sdk_over_https_at_the_edge(feitian, ca_file):
    from alibabacloud_ecs20140526 import models as ecs_models
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_tea_openapi import models as om

    ak, secret = feitian.credentials()
    config = om.Config(access_key_id=ak, access_key_secret=secret, endpoint=feitian.endpoint,
                       protocol="https", region_id="cn-hangzhou", ca=ca_file)
    regions = Client(config).describe_regions(ecs_models.DescribeRegionsRequest()).body.regions.region
    assert "cn-hangzhou" in [r.region_id for r in regions]


def test_v3_sdk_over_https_refuses_an_untrusted_edge(feitian):
    """Without the CA the same call fails (the certificate is not trusted): HTTPS is real.
    (At `localhost`: the SDK keeps its verified connection to the address above alive.)"""
    from alibabacloud_ecs20140526 import models as ecs_models
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_tea_openapi import models as om

    ak, secret = feitian.credentials()
    config = om.Config(access_key_id=ak, access_key_secret=secret, endpoint=f"localhost:{feitian.port}",
                       protocol="https", region_id="cn-hangzhou")
    with pytest.raises(Exception) as e:
        Client(config).describe_regions(ecs_models.DescribeRegionsRequest())
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value) or "certificate" in str(e.value).lower(), e.value


def test_oss2_puts_and_gets_over_https(feitian, ca_file, monkeypatch):
    import oss2

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    name = "https-" + uuid.uuid4().hex[:12]
    b = oss2.Bucket(oss2.Auth(*feitian.credentials()), f"https://{feitian.endpoint}", name)
    b.create_bucket()
    try:
        data = b"over TLS " * 1000
        b.put_object("k", data)
        assert b.get_object("k").read() == data
        b.delete_object("k")
    finally:
        b.delete_bucket()


def test_v1_sdk_reaches_ecs_by_its_host_name_through_the_https_proxy(feitian, ca_file, monkeypatch):
    from aliyunsdkecs.request.v20140526.DescribeRegionsRequest import DescribeRegionsRequest

    monkeypatch.setenv("HTTPS_PROXY", f"http://{feitian.endpoint}")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    for k in ("NO_PROXY", "no_proxy", "http_proxy", "https_proxy"):
        monkeypatch.delenv(k, raising=False)
    client = v1_client(feitian)
    client.set_verify(ca_file)
    req = DescribeRegionsRequest()  # no endpoint: the SDK's own, ecs-cn-hangzhou.aliyuncs.com
    req.set_protocol_type("https")
    status, _h, body, exc = client._implementation_of_do_action(req)
    assert exc is None and status == 200, (status, body, exc)
    assert "cn-hangzhou" in [r["RegionId"] for r in json.loads(body)["Regions"]["Region"]]


def connect_reply(feitian, target):
    with socket.create_connection((feitian.host, feitian.port), timeout=5) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.parametrize("target", ["example.com:443", "127.0.0.1:22", "ecs.aliyuncs.com:80",
                                    "location-readonly.aliyuncs.com:443"])
def test_other_connects_are_refused_at_once(feitian, target):
    t0 = time.monotonic()
    reply = connect_reply(feitian, target)
    assert reply.startswith(b"HTTP/1.1 403"), reply
    assert time.monotonic() - t0 < 5  # generous: the point is that it does not hang


def test_a_connect_to_a_cloud_host_is_answered_by_feitian(feitian):
    reply = connect_reply(feitian, "vpc.aliyuncs.com:443")
    assert reply.startswith(b"HTTP/1.1 200 Connection established\r\n"), reply


def tls_handshake(feitian, ca_file, server_name):
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((feitian.host, feitian.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            return s.version()


def test_cloud_names_and_localhost_get_certificates(feitian, ca_file):
    for name in ("ecs.cn-hangzhou.aliyuncs.com", "bucket-1.oss-cn-hangzhou.aliyuncs.com", "localhost"):
        assert tls_handshake(feitian, ca_file, name).startswith("TLS"), name


def test_a_foreign_server_name_is_refused(feitian, ca_file):
    t0 = time.monotonic()
    with pytest.raises(ssl.SSLError):
        tls_handshake(feitian, ca_file, "www.example.com")
    assert time.monotonic() - t0 < 5


def test_the_ca_survives_a_restart(own_feitian, tmp_path):
    f = own_feitian().start()
    first = (f.data_dir / "ca" / "ca.pem").read_text()
    assert (f.data_dir / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert "https://" in f.stdout() and "feitian ca --export" in f.stdout()
    f.stop()
    f.start()
    assert (f.data_dir / "ca" / "ca.pem").read_text() == first
    exported = tmp_path / "ca.pem"
    f.cli("ca", "--export", str(exported))
    assert exported.read_text() == first
    # The restarted edge's certificates chain to the same CA.
    assert tls_handshake(f, str(exported), "ecs-cn-hangzhou.aliyuncs.com").startswith("TLS")
