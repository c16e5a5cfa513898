"""Issue 14, OSS: attacks on OSS's authorization, each refused with OSS's own error, and
nothing changed.

- **A write's permission holds at its commit, not only at its head.** A request is
  authorized when its head arrives; a streamed body (or a multipart upload) commits later.
  Meanwhile the bucket may be deleted and its name taken by another account, or made (or
  the key made) private. The commit asks again: the same bucket (by identity, not name:
  `NoSuchBucket`, 404) and, for anyone but the owner, the ACLs as they are now
  (`AccessDenied`, 403).
  To act "meanwhile" deterministically, a request is sent with `Expect: 100-continue`: the
  server answers `100 Continue` only once it authorized the request and starts reading its
  body (`Held`); the test then changes the world, and only then sends the body.
- **V4 signatures are scoped**: another region or product is `InvalidArgument` (400); the
  payload hash must be `UNSIGNED-PAYLOAD` (OSS answers any other value, a correct digest
  included, `InvalidArgument`); a presigned URL dated beyond the clock skew is
  `RequestNotReadyYet` (403).
- **No `response-*` overrides for anonymous GETs** (400 `InvalidRequest`), so a public text
  object cannot be served as HTML.

Loopback only; no wall-clock assertions. Signed raw requests are signed by oss2's own signer.
"""
import datetime
import hashlib
import http.client
import socket
import urllib.parse
import xml.etree.ElementTree as ET

import oss2
import pytest
import requests
from oss2.models import PartInfo

from test_oss_objects import (  # noqa: F401 - new_bucket and other_account are fixtures
    REGION,
    REQUEST_ID,
    anonymous,
    bucket,
    drop_bucket,
    keys_of,
    name,
    new_bucket,
    oss_error,
    other_account,
    raw_http,
    read_all,
    signed,
)

V1_V4 = pytest.mark.parametrize("v4", [False, True], ids=["v1", "v4"])


# --- a request held between its head and its body ------------------------------------------------

class Held:
    """A request whose head went out with `Expect: 100-continue` and whose body waits for
    `finish()`. The constructor returns once the server said `100 Continue`: it authenticated
    and authorized the request and began reading the body."""

    def __init__(self, f, method, path, headers, body):
        self.body = body
        self.sock = socket.create_connection((f.host, f.port), timeout=30)
        hdrs = {"Host": f.endpoint, **headers, "Content-Length": str(len(body)), "Expect": "100-continue"}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.sock.sendall(head.encode())
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            c = self.sock.recv(1)  # byte by byte: nothing of the final answer is read here
            assert c, f"connection closed before 100 Continue: {interim!r}"
            interim += c
        assert interim.startswith(b"HTTP/1.1 100"), f"the server answered before reading the body: {interim!r}"

    def finish(self):
        """Sends the body; returns (status, error code or None, parsed error fields)."""
        try:
            self.sock.sendall(self.body)
            resp = http.client.HTTPResponse(self.sock)
            resp.begin()
            data = resp.read()
            fields = {}
            if data:
                root = ET.fromstring(data)
                assert root.tag == "Error", data[:300]
                fields = {c.tag: c.text or "" for c in root}
                assert {"Code", "Message", "RequestId", "HostId"} <= set(fields), fields
                assert REQUEST_ID.fullmatch(fields["RequestId"]), fields
                assert resp.getheader("x-oss-request-id") == fields["RequestId"]
            return resp.status, fields.get("Code"), fields
        finally:
            self.sock.close()


def held_signed(f, b, method, key, body, params=None, headers=None):
    path, hdrs = signed(b, method, key, params=params, headers=headers)
    return Held(f, method, path, hdrs, body)


def held_anonymous(f, bucket_name, method, key, body, params=None):
    query = urllib.parse.urlencode(params or {})
    path = f"/{bucket_name}/{urllib.parse.quote(key)}" + (f"?{query}" if query else "")
    return Held(f, method, path, {}, body)


def create_taken_over(f, key, bucket_name, acl):
    """The name, created again by another account."""
    b = bucket(f, key, bucket_name)
    b.create_bucket(acl)
    return b


def assert_empty(b):
    assert keys_of(b) == [], keys_of(b)
    assert b.list_multipart_uploads().upload_list == []


# --- the bucket's identity --------------------------------------------------------------------------

@pytest.mark.parametrize("writer", ["owner-v1", "owner-v4", "anonymous"])
def test_put_streaming_into_a_bucket_deleted_and_taken_by_another_account(feitian, account, other_account,
                                                                          writer):
    n = name()
    v4 = writer == "owner-v4"
    # The anonymous writer writes because the bucket is public-read-write; the new owner's
    # bucket is public-read-write too, so only the bucket's identity can tell them apart.
    acl = oss2.BUCKET_ACL_PUBLIC_READ_WRITE if writer == "anonymous" else oss2.BUCKET_ACL_PRIVATE
    mine = bucket(feitian, account, n, v4)
    mine.create_bucket(acl)
    body = b"planted by the old bucket's writer " * 4096  # 140 KB
    if writer == "anonymous":
        h = held_anonymous(feitian, n, "PUT", "planted", body)
    else:
        h = held_signed(feitian, mine, "PUT", "planted", body)
    mine.delete_bucket()  # empty: the held PUT has not committed
    theirs = create_taken_over(feitian, other_account, n, acl)
    try:
        status, code, fields = h.finish()
        assert (status, code) == (404, "NoSuchBucket"), fields
        assert fields.get("BucketName") in (None, n)
        assert_empty(theirs)
        oss_error(lambda: theirs.get_object("planted"), "NoSuchKey", 404)
    finally:
        drop_bucket(theirs)


def test_multipart_requests_into_a_bucket_deleted_and_taken_by_another_account(feitian, account, other_account):
    """UploadPart and CompleteMultipartUpload held while the owner aborts the upload, deletes
    the bucket (a bucket with uploads in progress cannot be deleted) and another account
    creates the name: both answer NoSuchBucket, and the new bucket has neither a part nor an
    object."""
    n = name()
    mine = bucket(feitian, account, n)
    mine.create_bucket()
    upload = mine.init_multipart_upload("big").upload_id
    done = mine.upload_part("big", upload, 1, b"first part")
    part = held_signed(feitian, mine, "PUT", "big", b"x" * 100_000,
                       params={"uploadId": upload, "partNumber": "2"})
    xml = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{done.etag}</ETag></Part>"
           "</CompleteMultipartUpload>").encode()
    complete = held_signed(feitian, mine, "POST", "big", xml, params={"uploadId": upload})
    mine.abort_multipart_upload("big", upload)
    mine.delete_bucket()
    theirs = create_taken_over(feitian, other_account, n, oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    try:
        for label, h in [("UploadPart", part), ("CompleteMultipartUpload", complete)]:
            status, code, fields = h.finish()
            assert (status, code) == (404, "NoSuchBucket"), (label, fields)
        assert_empty(theirs)
    finally:
        drop_bucket(theirs)


# --- the ACLs at commit time --------------------------------------------------------------------------

def test_anonymous_multipart_cannot_overwrite_a_key_made_private(feitian, new_bucket):
    b = new_bucket(acl=oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    b.put_object("report", b"the owner's report")
    anon = anonymous(feitian, b.bucket_name)
    upload = anon.init_multipart_upload("report").upload_id
    part = anon.upload_part("report", upload, 1, b"an anonymous overwrite")
    b.put_object_acl("report", oss2.OBJECT_ACL_PRIVATE)
    e = oss_error(lambda: anon.complete_multipart_upload("report", upload, [PartInfo(1, part.etag)]),
                  "AccessDenied", 403)
    assert e.request_id
    assert read_all(b, "report")[1] == b"the owner's report"
    assert b.get_object_acl("report").acl == "private"
    # The upload is still there for the owner to abort; another key stays writable.
    assert [u.upload_id for u in b.list_multipart_uploads().upload_list] == [upload]
    anon.put_object("other", b"fine")
    assert sorted(keys_of(b)) == ["other", "report"]


def test_anonymous_writes_in_flight_when_the_bucket_is_made_private(feitian, new_bucket):
    b = new_bucket(acl=oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    anon = anonymous(feitian, b.bucket_name)
    upload = anon.init_multipart_upload("mp").upload_id
    part = anon.upload_part("mp", upload, 1, b"part one")
    put = held_anonymous(feitian, b.bucket_name, "PUT", "streamed", b"s" * 200_000)
    xml = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{part.etag}</ETag></Part>"
           "</CompleteMultipartUpload>").encode()
    complete = held_anonymous(feitian, b.bucket_name, "POST", "mp", xml, params={"uploadId": upload})
    append = held_anonymous(feitian, b.bucket_name, "POST", "log", b"a" * 1000, params={"append": "", "position": "0"})
    b.put_bucket_acl(oss2.BUCKET_ACL_PRIVATE)
    for label, h in [("PutObject", put), ("CompleteMultipartUpload", complete), ("AppendObject", append)]:
        status, code, fields = h.finish()
        assert (status, code) == (403, "AccessDenied"), (label, fields)
    assert keys_of(b) == []
    # Made public-read-write again, the same upload completes: nothing was lost, only refused.
    b.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    anon.complete_multipart_upload("mp", upload, [PartInfo(1, part.etag)])
    assert read_all(b, "mp")[1] == b"part one"


# --- V4 scope, payload hash and dates -------------------------------------------------------------------

def v4_raw(b, method, key, headers=None, product="oss", region=REGION, payload="UNSIGNED-PAYLOAD"):
    """A V4 request signed by oss2's own V4 signer, with the scope and payload hash given
    (oss2's `_sign_request` always writes UNSIGNED-PAYLOAD, so its signature computation is
    called directly)."""
    auth = b.auth
    req = oss2.http.Request(method, b._make_url(b.bucket_name, key), headers=headers, region=region, product=product)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    req.headers["x-oss-date"] = when
    req.headers["x-oss-content-sha256"] = payload
    creds = auth.credentials_provider.get_credentials()
    extra = auth._ProviderAuthV4__get_additional_signed_headers(None)
    sig = auth._ProviderAuthV4__make_signature(req, b.bucket_name, key, extra, creds, when)
    scope = f"{creds.get_access_key_id()}/{when[:8]}/{region}/{product}/aliyun_v4_request"
    req.headers["authorization"] = f"OSS4-HMAC-SHA256 Credential={scope}, Signature={sig}"
    path = urllib.parse.urlsplit(req.url).path
    return path, {k: v for k, v in req.headers.items() if v is not None}


def error_fields(reply):
    root = ET.fromstring(reply.body)
    fields = {c.tag: c.text or "" for c in root}
    assert root.tag == "Error" and {"Code", "Message", "RequestId", "HostId"} <= set(fields), reply.text()
    return fields


def test_v4_payload_hash_other_than_unsigned_payload_is_refused(feitian, new_bucket):
    b = new_bucket(v4=True)
    body = b"a body whose digest the client signed"
    # The control: oss2's own request (UNSIGNED-PAYLOAD) through the same path works.
    path, hdrs = v4_raw(b, "PUT", "control")
    r = raw_http(feitian, "PUT", path, hdrs, body)
    assert r.status == 200, r.text()
    for label, payload in [("the body's digest", hashlib.sha256(body).hexdigest()),
                           ("another body's digest", hashlib.sha256(b"something else").hexdigest()),
                           ("not a digest", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")]:
        path, hdrs = v4_raw(b, "PUT", "hashed", payload=payload)
        r = raw_http(feitian, "PUT", path, hdrs, body)
        assert r.status == 400 and error_fields(r)["Code"] == "InvalidArgument", (label, r.text())
    assert keys_of(b) == ["control"]


def test_v4_scope_of_another_region_or_product_is_refused(feitian, account, new_bucket):
    b = new_bucket(v4=True)
    elsewhere = oss2.Bucket(oss2.AuthV4(*account), f"http://{feitian.endpoint}", b.bucket_name, region="cn-beijing")
    e = oss_error(lambda: elsewhere.put_object("k", b"signed for cn-beijing"), "InvalidArgument", 400)
    assert "region" in e.message
    oss_error(lambda: elsewhere.get_bucket_info(), "InvalidArgument", 400)
    path, hdrs = v4_raw(b, "PUT", "k", product="ecs")
    r = raw_http(feitian, "PUT", path, hdrs, b"signed for ecs")
    assert r.status == 400 and error_fields(r)["Code"] == "InvalidArgument", r.text()
    assert keys_of(b) == []
    b.put_object("k", b"signed for here")  # the control
    assert read_all(b, "k")[1] == b"signed for here"


def test_v4_presigned_url_dated_in_the_future_is_not_ready_yet(feitian, new_bucket, monkeypatch):
    b = new_bucket(v4=True)
    b.put_object("k", b"v")
    now_url = b.sign_url("GET", "k", 3600)

    real = datetime.datetime

    class Ahead(real):
        """oss2's clock, an hour ahead (it dates V4 URLs with datetime.utcnow())."""

        @classmethod
        def utcnow(cls):
            return real.utcnow() + datetime.timedelta(hours=1)

    monkeypatch.setattr(oss2.auth, "datetime", Ahead)
    future_url = b.sign_url("GET", "k", 3600 * 24)
    monkeypatch.undo()
    assert "x-oss-date=" in future_url
    r = requests.get(future_url, timeout=30)
    assert r.status_code == 403, r.text[:300]
    root = ET.fromstring(r.content)
    assert root.findtext("Code") == "RequestNotReadyYet" and root.findtext("RequestId"), r.text[:300]
    # And as a PUT: nothing written.
    monkeypatch.setattr(oss2.auth, "datetime", Ahead)
    future_put = b.sign_url("PUT", "k", 3600)
    monkeypatch.undo()
    assert requests.put(future_put, data=b"overwrite", timeout=30).status_code == 403
    r = requests.get(now_url, timeout=30)
    assert (r.status_code, r.content) == (200, b"v")


# --- response-* overrides ------------------------------------------------------------------------------------

OVERRIDES = ["response-content-type", "response-content-disposition", "response-content-language",
             "response-cache-control", "response-content-encoding", "response-expires"]


def test_anonymous_get_may_not_override_response_headers(feitian, new_bucket):
    b = new_bucket(acl=oss2.BUCKET_ACL_PUBLIC_READ)
    page = b"<script>alert(document.domain)</script>"
    b.put_object("note.txt", page, headers={"Content-Type": "text/plain"})
    anon = anonymous(feitian, b.bucket_name)
    r, data = read_all(anon, "note.txt")
    assert data == page and r.headers["Content-Type"] == "text/plain"
    for param in OVERRIDES:
        value = "text/html" if param == "response-content-type" else "inline"
        e = oss_error(lambda: anon.get_object("note.txt", params={param: value}), "InvalidRequest", 400)
        assert "anonymous" in e.message, e.message
        # Through a plain browser-like GET as well.
        url = f"http://{feitian.endpoint}/{b.bucket_name}/note.txt?{param}={urllib.parse.quote(value)}"
        got = requests.get(url, timeout=30)
        assert got.status_code == 400 and b"<script>" not in got.content, (param, got.headers)
        assert ET.fromstring(got.content).findtext("Code") == "InvalidRequest"
    # Signed requests (the SDK, a presigned URL) may override, as on OSS.
    r = b.get_object("note.txt", params={"response-content-type": "text/html"})
    assert r.read() == page and r.headers["Content-Type"] == "text/html"
    url = b.sign_url("GET", "note.txt", 60, params={"response-content-disposition": "attachment"})
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.headers["Content-Disposition"] == "attachment"
