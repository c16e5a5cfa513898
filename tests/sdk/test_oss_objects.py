"""Issue 4: OSS objects through oss2 2.19.1, with its CRC-64 check on (the default), in
signature V1 (`oss2.Auth`) and V4 (`oss2.AuthV4`, region cn-hangzhou).

What each test holds the server to is the real service's behaviour, as oss2 sees it:
- PutObject / GetObject / HeadObject / GetObjectMeta / DeleteObject, byte-exact from 0 B to
  200 MiB; the ETag is the quoted upper-case hex MD5 of a simple object; `x-oss-hash-crc64ecma`
  is the CRC-64/ECMA that oss2 computes (`oss2.utils.Crc64`). oss2 only compares CRCs when the
  server sends the header, so every test also asserts the header is there and right;
- metadata (`x-oss-meta-*`, Content-Type default and explicit, Cache-Control,
  Content-Disposition, Content-Language, Expires);
- Range reads (OSS ignores a range that does not fit unless `x-oss-range-behavior: standard`),
  conditional reads (304 / 412);
- ListObjects V1 and V2: prefix, delimiter, paging, `encoding-type=url` with odd keys, oss2's
  iterators over 250 keys;
- DeleteMultipleObjects, CopyObject (metadata directive, across buckets, copy-source
  conditions), AppendObject, multipart upload (incl. UploadPartCopy and its errors),
  oss2.resumable_upload / resumable_download (interrupted, then resumed);
- presigned URLs fetched with plain `requests`; access by another account and anonymously to
  private and public-read buckets and objects; BucketNotEmpty;
- a kill -9 of the server keeps every acknowledged object and shows no half-written one.

Every error is an `oss2.exceptions.OssError` with the real code and status and a 24-character
request id (`oss_error`). Each test works in its own account and fresh `ft-<uuid12>` buckets,
which `new_bucket` empties and deletes afterwards (best effort)."""
import hashlib
import http.client
import json
import os
import random
import re
import socket
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import oss2
import pytest
import requests
from oss2.models import PartInfo

from raw_client import Reply

REGION = "cn-hangzhou"
KiB = 1024
MiB = 1024 * KiB
REQUEST_ID = re.compile(r"[0-9A-F]{24}")
HTTP_DATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                       r"\d\d:\d\d:\d\d GMT")
NO_SUCH_UPLOAD_ID = "0004B9894A22E5B1888A1E29F8236E2D"  # upload-id-shaped; never handed out
V1_V4 = pytest.mark.parametrize("v4", [False, True], ids=["v1", "v4"])


# --- clients and names ----------------------------------------------------------------------

def endpoint(f):
    return f"http://{f.endpoint}"


def auth(key, v4=False):
    return oss2.AuthV4(*key) if v4 else oss2.Auth(*key)


def bucket(f, key, bucket_name, v4=False):
    """An oss2 Bucket with the CRC check on (oss2's default)."""
    b = oss2.Bucket(auth(key, v4), endpoint(f), bucket_name, region=REGION)
    assert b.enable_crc
    return b


def anonymous(f, bucket_name):
    return oss2.Bucket(oss2.AnonymousAuth(), endpoint(f), bucket_name)


def name():
    return f"ft-{uuid.uuid4().hex[:12]}"


def refused_as(fn, code, status, label):
    """`oss_error`, with `label` on the failure."""
    try:
        return oss_error(fn, code, status)
    except (AssertionError, pytest.fail.Exception) as e:
        raise AssertionError(f"{label}: {e}") from None


def oss_error(fn, code=None, status=None):
    """Runs `fn`, which must fail with an answer from the server: an OssError carrying the
    given code and status and a 24-character request id."""
    with pytest.raises(oss2.exceptions.OssError) as e:
        fn()
    err = e.value
    hint = ""
    if "RemoteDisconnected" in str(err) or "Connection aborted" in str(err):
        hint = (" (oss2 reuses connections: a closed one often means the previous answer on it left its"
                " request body unread and the server dropped the connection without `Connection: close`)")
    assert err.status > 0, f"not an answer from the server: {err}{hint}"
    assert REQUEST_ID.fullmatch(err.request_id or ""), f"request id {err.request_id!r}: {err}"
    if code is not None:
        assert err.code == code, f"expected {code}, got {err.code!r} ({err.status}): {err.message}"
    if status is not None:
        assert err.status == status, f"expected {status}, got {err.status} ({err.code}): {err.message}"
    return err


# --- data ---------------------------------------------------------------------------------

def payload(n, seed=0):
    """n deterministic pseudo-random bytes."""
    return random.Random(seed * 1_000_003 + n).randbytes(n)


def md5_etag(data):
    return hashlib.md5(data).hexdigest().upper()


def crc64(data):
    c = oss2.utils.Crc64()
    c.update(data)
    return c.crc


def write_file(path, size, seed, chunk=8 * MiB):
    """Writes `size` deterministic bytes to `path` without holding them all; returns
    (sha256 hex, md5 hex upper, crc64)."""
    rng = random.Random(seed)
    sha, md5, crc = hashlib.sha256(), hashlib.md5(), oss2.utils.Crc64()
    with open(path, "wb") as out:
        left = size
        while left:
            block = rng.randbytes(min(chunk, left))
            out.write(block)
            sha.update(block)
            md5.update(block)
            crc.update(block)
            left -= len(block)
    return sha.hexdigest(), md5.hexdigest().upper(), crc.crc


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * MiB), b""):
            h.update(block)
    return h.hexdigest()


def keys_of(b, **kw):
    return [o.key for o in oss2.ObjectIterator(b, max_keys=1000, **kw)]


def read_all(b, key, **kw):
    """GetObject, read to the end, with the CRC compared (the whole object only)."""
    r = b.get_object(key, **kw)
    data = r.read()
    if r.status == 200:
        assert r.server_crc is not None, "GetObject without x-oss-hash-crc64ecma"
        assert r.client_crc == r.server_crc, f"CRC of what was read {r.client_crc} != server's {r.server_crc}"
    return r, data


def put_many(b, keys, data=None):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: b.put_object(k, k.encode() if data is None else data), keys))


def meta_of(headers):
    """The x-oss-meta-* headers, names lower-cased (HTTP header names carry no case)."""
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-oss-meta-")}


def complete_xml(parts):
    body = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>\"{e}\"</ETag></Part>" for n, e in parts)
    return f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>"


def complete_raw(b, key, upload_id, body, headers=None):
    """CompleteMultipartUpload with a body exactly as given (oss2's own method sorts the parts),
    signed and sent by oss2."""
    return b._do("POST", b.bucket_name, key, params={"uploadId": upload_id}, data=body, headers=headers)


# --- raw requests, signed by oss2 -------------------------------------------------------------

def signed(b, method, key, params=None, headers=None, bucket_name=None, path=None):
    """The path (with query) and headers of a request signed by `b`'s own oss2 signer, for
    sending raw. `bucket_name` and `path` override what the request names and the path sent."""
    bn = b.bucket_name if bucket_name is None else bucket_name
    req = oss2.http.Request(method, b._make_url(bn, key), params=dict(params or {}), headers=headers,
                            region=REGION, product="oss")
    b.auth._sign_request(req, bn, key)
    quote = lambda s: urllib.parse.quote(str(s), safe="")  # noqa: E731
    query = "&".join(quote(k) if v == "" else f"{quote(k)}={quote(v)}" for k, v in req.params.items())
    url_path = urllib.parse.urlsplit(req.url).path if path is None else path
    hdrs = {k: v for k, v in req.headers.items() if v is not None}
    return url_path + (f"?{query}" if query else ""), hdrs


def raw_http(f, method, path, headers=None, body=b"", content_length=None, half_close=False, timeout=30):
    """One request on a fresh connection, sent exactly as given: no path normalisation, any
    Content-Length. `half_close` shuts the sending side after the body (a client that sent less
    than it announced). Returns a raw_client.Reply (status 0 and `error` when no answer came)."""
    conn = http.client.HTTPConnection(f.host, f.port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        hdrs = {"Host": f.endpoint, **(headers or {})}
        if body or content_length is not None or method in ("PUT", "POST"):
            hdrs.setdefault("Content-Length", str(len(body) if content_length is None else content_length))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            if body:
                conn.send(body)
            if half_close:
                conn.sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer before reading everything: read that answer
        r = conn.getresponse()
        data = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data, time.monotonic() - t0)
    except Exception as e:  # noqa: BLE001 - no answer is a finding, reported by the caller
        return Reply(0, {}, b"", time.monotonic() - t0, error=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


# --- fixtures -------------------------------------------------------------------------------

def drop_bucket(b):
    """Best effort: aborts a bucket's uploads, deletes its objects, then the bucket."""
    try:
        for u in list(oss2.MultipartUploadIterator(b)):
            b.abort_multipart_upload(u.key, u.upload_id)
    except oss2.exceptions.OssError:
        pass
    try:
        keys = keys_of(b)
        for i in range(0, len(keys), 1000):
            b.batch_delete_objects(keys[i:i + 1000])
    except oss2.exceptions.OssError:
        pass
    try:
        b.delete_bucket()
    except oss2.exceptions.OssError:
        pass


@pytest.fixture
def new_bucket(feitian, account):
    """Makes fresh buckets (of `account` unless told otherwise) and drops them afterwards."""
    made = []

    def make(key=None, acl=oss2.BUCKET_ACL_PRIVATE, v4=False):
        b = bucket(feitian, key or account, name(), v4)
        b.create_bucket(acl)
        made.append(b)
        return b

    yield make
    for b in made:
        drop_bucket(b)


@pytest.fixture
def other_account(feitian):
    """A second account, made the way `account` is."""
    return feitian.new_account(f"other-{uuid.uuid4().hex[:8]}")


# --- Put / Get / Head / GetObjectMeta / Delete ---------------------------------------------------

SIZES = [0, 1, 4 * KiB, 64 * KiB + 1, MiB, 17 * MiB]


@V1_V4
@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_put_get_head_delete_round_trip(new_bucket, size, v4):
    b = new_bucket(v4=v4)
    data = payload(size, seed=1)
    key = f"round/trip-{size}"
    put = b.put_object(key, data)
    assert put.status == 200 and REQUEST_ID.fullmatch(put.request_id)
    assert put.etag == md5_etag(data) and put.headers["ETag"] == f'"{md5_etag(data)}"'
    assert put.crc == crc64(data), "x-oss-hash-crc64ecma of PutObject missing or wrong"

    got, body = read_all(b, key)
    assert body == data
    assert (got.status, got.content_length, got.etag, got.server_crc) == (200, size, md5_etag(data), crc64(data))
    assert got.object_type == "Normal"
    assert got.content_type == "application/octet-stream"  # oss2 sends no Content-Type for a key without extension
    assert HTTP_DATE.fullmatch(got.headers["Last-Modified"])

    head = b.head_object(key)
    assert (head.status, head.content_length, head.etag, head.server_crc, head.object_type) == (
        200, size, md5_etag(data), crc64(data), "Normal")
    assert head.headers["ETag"] == f'"{md5_etag(data)}"'
    assert head.content_type == "application/octet-stream"
    assert head.last_modified == got.last_modified and abs(head.last_modified - time.time()) < 3600

    meta = b.get_object_meta(key)
    assert (meta.status, meta.content_length, meta.etag, meta.last_modified) == (
        200, size, md5_etag(data), head.last_modified)
    assert b.object_exists(key)
    [listed] = b.list_objects(prefix="round/").object_list
    assert (listed.key, listed.size, listed.etag, listed.type, listed.storage_class) == (
        key, size, md5_etag(data), "Normal", "Standard")
    assert listed.last_modified == head.last_modified

    assert b.delete_object(key).status == 204
    assert not b.object_exists(key)
    oss_error(lambda: b.get_object(key), "NoSuchKey", 404)
    oss_error(lambda: b.head_object(key), "NoSuchKey", 404)  # HEAD: the error comes in x-oss-err
    oss_error(lambda: b.get_object_meta(key), "NoSuchKey", 404)
    assert b.delete_object(key).status == 204  # deleting what is not there is not an error
    assert keys_of(b) == []


def test_put_get_200_mib_file(new_bucket, tmp_path):
    b = new_bucket(v4=True)
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    size = 200 * MiB
    sha, md5, crc = write_file(src, size, seed=200)
    put = b.put_object_from_file("big/200mib", str(src))  # oss2 compares its CRC with the server's
    assert (put.etag, put.crc) == (md5, crc)
    head = b.head_object("big/200mib")
    assert (head.content_length, head.etag, head.server_crc) == (size, md5, crc)
    got = b.get_object_to_file("big/200mib", str(dst))  # ... and here too, over the whole object
    assert got.server_crc == crc and got.client_crc == crc
    assert os.path.getsize(dst) == size and sha256_file(dst) == sha
    b.delete_object("big/200mib")
    oss_error(lambda: b.get_object("big/200mib"), "NoSuchKey", 404)


@V1_V4
def test_metadata_and_standard_headers(new_bucket, v4):
    b = new_bucket(v4=v4)
    data = payload(3000, seed=2)
    headers = {
        "Content-Type": "text/x-feitian; charset=utf-8",
        "Cache-Control": "no-cache, max-age=60",
        "Content-Disposition": 'attachment; filename="report.txt"',
        "Content-Language": "zh-CN",
        "Expires": "Wed, 21 Oct 2037 07:28:00 GMT",
        "Content-MD5": oss2.utils.content_md5(data),  # a right Content-MD5 is accepted
        "x-oss-meta-author": "Zhang San",
        "x-oss-meta-Project-Name": "FeiTian",  # names are stored lower-case
        "x-oss-meta-n": "1",
    }
    put = b.put_object("docs/report", data, headers=headers)
    assert put.crc == crc64(data)
    want_meta = {"x-oss-meta-author": "Zhang San", "x-oss-meta-project-name": "FeiTian", "x-oss-meta-n": "1"}
    got, body = read_all(b, "docs/report")
    head = b.head_object("docs/report")
    assert body == data
    for r in (got, head):
        assert r.content_type == "text/x-feitian; charset=utf-8"
        assert r.headers["Cache-Control"] == "no-cache, max-age=60"
        assert r.headers["Content-Disposition"] == 'attachment; filename="report.txt"'
        assert r.headers["Content-Language"] == "zh-CN"
        assert r.headers["Expires"] == "Wed, 21 Oct 2037 07:28:00 GMT"
        assert meta_of(r.headers) == want_meta
    # oss2 guesses a Content-Type from the key's extension; the server keeps what it is sent.
    b.put_object("page.html", b"<p>hi</p>")
    assert b.head_object("page.html").content_type == "text/html"
    # Overwriting replaces the metadata as a whole.
    b.put_object("docs/report", b"v2")
    head = b.head_object("docs/report")
    assert meta_of(head.headers) == {} and head.content_type == "application/octet-stream"
    assert "Cache-Control" not in head.headers and "Content-Disposition" not in head.headers
    assert read_all(b, "docs/report")[1] == b"v2"
    # x-oss-forbid-overwrite: true refuses to replace an existing object.
    oss_error(lambda: b.put_object("docs/report", b"v3", headers={"x-oss-forbid-overwrite": "true"}),
              "FileAlreadyExists", 409)
    assert read_all(b, "docs/report")[1] == b"v2"
    b.put_object("docs/new", b"n", headers={"x-oss-forbid-overwrite": "true"})
    assert read_all(b, "docs/new")[1] == b"n"


def test_missing_bucket_and_key_errors(feitian, account, new_bucket):
    b = new_bucket()
    oss_error(lambda: b.get_object("nope"), "NoSuchKey", 404)
    ghost = bucket(feitian, account, name())
    oss_error(lambda: ghost.get_object("k"), "NoSuchBucket", 404)
    oss_error(lambda: ghost.put_object("k", b"x"), "NoSuchBucket", 404)
    oss_error(lambda: ghost.list_objects(), "NoSuchBucket", 404)
    oss_error(lambda: ghost.list_objects_v2(), "NoSuchBucket", 404)
    oss_error(lambda: ghost.init_multipart_upload("k"), "NoSuchBucket", 404)
    oss_error(lambda: ghost.append_object("k", 0, b"x"), "NoSuchBucket", 404)
    oss_error(lambda: ghost.delete_object("k"), "NoSuchBucket", 404)
    oss_error(lambda: ghost.batch_delete_objects(["k"]), "NoSuchBucket", 404)
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        ghost.object_exists("k")


# --- Range and conditional reads -----------------------------------------------------------------

def test_range_reads(new_bucket):
    b = new_bucket()
    data = payload(1000, seed=3)
    b.put_object("r", data)

    def get(rng, headers=None):
        r = b.get_object("r", byte_range=rng, headers=headers)
        body = r.read()
        assert int(r.headers["Content-Length"]) == len(body)
        return r.status, r.headers.get("Content-Range"), body

    assert get((0, 9)) == (206, "bytes 0-9/1000", data[:10])  # first bytes
    assert get((500, 599)) == (206, "bytes 500-599/1000", data[500:600])  # middle
    assert get((None, 10)) == (206, "bytes 990-999/1000", data[-10:])  # suffix: bytes=-10
    assert get((990, None)) == (206, "bytes 990-999/1000", data[990:])  # open end: bytes=990-
    assert get((999, 999)) == (206, "bytes 999-999/1000", data[999:])
    assert get((0, 999)) == (206, "bytes 0-999/1000", data)
    # By default OSS ignores a range that does not fit: the whole object, 200, no Content-Range.
    for rng in [(1000, 2000), (500, 2000)]:
        r, body = read_all(b, "r", byte_range=rng)
        assert (r.status, r.headers.get("Content-Range"), body) == (200, None, data), rng
    # With x-oss-range-behavior: standard, a range past the end is unsatisfiable...
    std = {"x-oss-range-behavior": "standard"}
    e = oss_error(lambda: b.get_object("r", byte_range=(1000, 2000), headers=std), "InvalidRange", 416)
    assert e.headers.get("Content-Range") in (None, "bytes */1000")
    # ... and an end past the end is clamped.
    assert get((500, 2000), std) == (206, "bytes 500-999/1000", data[500:])
    assert get((0, 9), std) == (206, "bytes 0-9/1000", data[:10])


def test_conditional_reads(new_bucket):
    b = new_bucket()
    data = payload(2048, seed=4)
    b.put_object("c", data)
    head = b.head_object("c")
    etag = head.headers["ETag"]  # quoted
    last_modified = oss2.utils.http_date(head.last_modified)
    day_before = oss2.utils.http_date(head.last_modified - 86400)
    other_etag = '"0123456789ABCDEF0123456789ABCDEF"'

    def ok(headers):
        r, body = read_all(b, "c", headers=headers)
        return r.status == 200 and body == data

    assert ok({"If-Match": etag})
    assert ok({"If-Match": etag.strip('"')})  # unquoted, as oss2.resumable_download sends it
    assert ok({"If-None-Match": other_etag})
    assert ok({"If-Modified-Since": day_before})
    assert ok({"If-Unmodified-Since": last_modified})
    e = oss_error(lambda: b.get_object("c", headers={"If-None-Match": etag}), status=304)
    assert isinstance(e, oss2.exceptions.NotModified)
    e = oss_error(lambda: b.get_object("c", headers={"If-Modified-Since": last_modified}), status=304)
    assert isinstance(e, oss2.exceptions.NotModified)
    oss_error(lambda: b.get_object("c", headers={"If-Match": other_etag}), "PreconditionFailed", 412)
    oss_error(lambda: b.get_object("c", headers={"If-Unmodified-Since": day_before}), "PreconditionFailed", 412)
    # HEAD answers the same conditions.
    assert b.head_object("c", headers={"If-Match": etag}).content_length == 2048
    oss_error(lambda: b.head_object("c", headers={"If-None-Match": etag}), status=304)
    oss_error(lambda: b.head_object("c", headers={"If-Match": other_etag}), "PreconditionFailed", 412)
    # A condition on a range read.
    r = b.get_object("c", byte_range=(0, 99), headers={"If-Match": etag})
    assert (r.status, r.read()) == (206, data[:100])


# --- listing -------------------------------------------------------------------------------------

LIST_KEYS = ["a/1", "a/2", "a/b/3", "a/b/4", "b/5", "c", "d/", "e"]


@V1_V4
def test_list_objects_prefix_delimiter_paging(new_bucket, v4):
    b = new_bucket(v4=v4)
    put_many(b, LIST_KEYS)
    # V1
    page = b.list_objects()
    assert [o.key for o in page.object_list] == LIST_KEYS and page.prefix_list == [] and not page.is_truncated
    for o in page.object_list:
        assert (o.size, o.etag, o.type, o.storage_class) == (len(o.key), md5_etag(o.key.encode()), "Normal", "Standard")
    assert [o.key for o in b.list_objects(prefix="a/").object_list] == ["a/1", "a/2", "a/b/3", "a/b/4"]
    page = b.list_objects(prefix="a/", delimiter="/")
    assert [o.key for o in page.object_list] == ["a/1", "a/2"] and page.prefix_list == ["a/b/"]
    page = b.list_objects(delimiter="/")
    assert [o.key for o in page.object_list] == ["c", "e"] and page.prefix_list == ["a/", "b/", "d/"]
    assert b.list_objects(prefix="zzz").object_list == []
    # paging by marker (exclusive); NextMarker is the last key of the page
    marker = ""
    for start in (0, 3, 6):
        page = b.list_objects(marker=marker, max_keys=3)
        want = LIST_KEYS[start:start + 3]
        assert [o.key for o in page.object_list] == want, marker
        if start < 6:
            assert page.is_truncated and page.next_marker == want[-1]
            marker = page.next_marker
        else:
            assert not page.is_truncated
    assert [o.key for o in b.list_objects(marker="a/b/3").object_list] == LIST_KEYS[3:]
    # max-keys counts common prefixes too
    assert [o.key for o in oss2.ObjectIterator(b, delimiter="/", max_keys=2)] == ["a/", "b/", "c", "d/", "e"]
    assert [o.key for o in oss2.ObjectIterator(b, delimiter="/", max_keys=1)] == ["a/", "b/", "c", "d/", "e"]

    # V2
    page = b.list_objects_v2()
    assert [o.key for o in page.object_list] == LIST_KEYS and not page.is_truncated
    page = b.list_objects_v2(prefix="a/", delimiter="/")
    assert [o.key for o in page.object_list] == ["a/1", "a/2"] and page.prefix_list == ["a/b/"]
    page = b.list_objects_v2(delimiter="/")
    assert [o.key for o in page.object_list] == ["c", "e"] and page.prefix_list == ["a/", "b/", "d/"]
    seen, token = [], ""
    while True:
        page = b.list_objects_v2(continuation_token=token, max_keys=3)
        seen += [o.key for o in page.object_list]
        assert len(page.object_list) <= 3
        if not page.is_truncated:
            break
        assert page.next_continuation_token
        token = page.next_continuation_token
    assert seen == LIST_KEYS
    assert [o.key for o in b.list_objects_v2(start_after="b/5").object_list] == ["c", "d/", "e"]
    assert all(o.owner is None for o in b.list_objects_v2().object_list)
    owned = b.list_objects_v2(fetch_owner=True).object_list
    assert owned and all(o.owner is not None and o.owner.id for o in owned)
    assert [o.key for o in oss2.ObjectIteratorV2(b, delimiter="/", max_keys=2)] == ["a/", "b/", "c", "d/", "e"]


ODD_KEYS = [
    "with space", "two  spaces ", "plus+sign", "per%cent", "per%25encoded", "中文/文件.txt", "é-accent",
    "amp&<lt>\"quote'", "tilde~star*(paren)!", "a//double", "trailing/", "hash#frag", "question?mark",
    "emoji-\U0001F600", "semi;colon=eq,comma", "back\\slash",
]


@V1_V4
def test_list_objects_odd_keys_and_url_encoding(new_bucket, v4):
    b = new_bucket(v4=v4)
    put_many(b, ODD_KEYS)
    want = sorted(ODD_KEYS, key=lambda k: k.encode())  # OSS lists in UTF-8 byte order
    for k in ODD_KEYS:
        assert read_all(b, k)[1] == k.encode(), k
        assert b.head_object(k).content_length == len(k.encode()), k
    assert [o.key for o in b.list_objects().object_list] == want  # V1: oss2 asks for encoding-type=url
    assert [o.key for o in b.list_objects_v2(encoding_type="url").object_list] == want
    assert [o.key for o in b.list_objects_v2(encoding_type="").object_list] == want  # raw keys, XML-escaped
    assert [o.key for o in b.list_objects(prefix="中文/").object_list] == ["中文/文件.txt"]
    assert "中文/" in b.list_objects(delimiter="/").prefix_list
    assert [o.key for o in b.list_objects(prefix="per%").object_list] == ["per%25encoded", "per%cent"]
    # The encoded answer itself: EncodingType=url, every key percent-encoded ASCII.
    resp = b._do("GET", b.bucket_name, "", params={"encoding-type": "url", "max-keys": "1000"})
    root = ET.fromstring(resp.read())
    assert root.findtext("EncodingType") == "url"
    raw_keys = [c.findtext("Key") for c in root.findall("Contents")]
    for raw in raw_keys:
        assert raw.isascii() and " " not in raw, raw
    assert [urllib.parse.unquote(k) for k in raw_keys] == want
    # and keys survive a delete by name
    result = b.batch_delete_objects(ODD_KEYS[:8])
    assert sorted(result.deleted_keys) == sorted(ODD_KEYS[:8])
    assert keys_of(b) == sorted(ODD_KEYS[8:], key=lambda k: k.encode())


def test_iterators_over_250_keys(new_bucket):
    b = new_bucket()
    keys = [f"d{i % 5}/k{i:04d}" for i in range(250)]
    put_many(b, keys, data=b"x")
    want = sorted(keys)
    assert [o.key for o in oss2.ObjectIterator(b, max_keys=100)] == want
    assert [o.key for o in oss2.ObjectIteratorV2(b, max_keys=100)] == want
    d3 = [k for k in want if k.startswith("d3/")]
    assert [o.key for o in oss2.ObjectIterator(b, max_keys=7, prefix="d3/")] == d3
    assert [o.key for o in oss2.ObjectIteratorV2(b, max_keys=7, prefix="d3/")] == d3
    top = list(oss2.ObjectIterator(b, delimiter="/", max_keys=2))
    assert [o.key for o in top] == [f"d{i}/" for i in range(5)] and all(o.is_prefix() for o in top)
    assert [o.key for o in oss2.ObjectIteratorV2(b, delimiter="/", max_keys=2)] == [f"d{i}/" for i in range(5)]
    page = b.list_objects(max_keys=1000)
    assert len(page.object_list) == 250 and not page.is_truncated
    page = b.list_objects(max_keys=100)
    assert len(page.object_list) == 100 and page.is_truncated and page.next_marker == want[99]


# --- DeleteMultipleObjects -------------------------------------------------------------------------

def test_delete_multiple_objects(new_bucket):
    b = new_bucket()
    put_many(b, ["del/1", "del/2", "del/ü space", "keep"])
    r = b.batch_delete_objects(["del/1", "del/2", "del/ü space", "del/missing"])
    # Keys that do not exist are reported deleted too.
    assert sorted(r.deleted_keys) == sorted(["del/1", "del/2", "del/ü space", "del/missing"])
    assert keys_of(b) == ["keep"]
    # Quiet mode: nothing reported, everything deleted. (oss2 always sends Quiet=false.)
    put_many(b, ["q/1", "q/2"])
    body = oss2.xml_utils.to_batch_delete_objects_request(["q/1", "q/2", "q/missing"], True)
    resp = b._do("POST", b.bucket_name, "", data=body, params={"delete": "", "encoding-type": "url"},
                 headers={"Content-MD5": oss2.utils.content_md5(body)})
    quiet = b._parse_result(resp, oss2.xml_utils.parse_batch_delete_objects, oss2.models.BatchDeleteObjectsResult)
    assert quiet.status == 200 and quiet.deleted_keys == []
    assert keys_of(b) == ["keep"]
    # Up to 1000 keys in one request.
    many = [f"m/{i:04d}" for i in range(1000)]
    put_many(b, many[:30], data=b"")
    assert len(b.batch_delete_objects(many).deleted_keys) == 1000
    assert keys_of(b) == ["keep"]


# --- CopyObject -------------------------------------------------------------------------------

@V1_V4
def test_copy_object(new_bucket, v4):
    src, dst = new_bucket(v4=v4), new_bucket(v4=v4)
    data = payload(300 * KiB, seed=5)
    src.put_object("s", data, headers={"Content-Type": "text/x-src", "Cache-Control": "no-store",
                                       "x-oss-meta-origin": "src"})
    source = src.head_object("s")

    def check(b, key, content_type, meta, cache_control):
        h = b.head_object(key)
        assert (h.content_length, h.etag, h.server_crc) == (len(data), md5_etag(data), crc64(data)), key
        assert h.content_type == content_type and meta_of(h.headers) == meta, key
        assert h.headers.get("Cache-Control") == cache_control, key
        assert read_all(b, key)[1] == data, key

    # Same bucket, default directive (COPY): the source's metadata, new x-oss-meta-* ignored.
    r = src.copy_object(src.bucket_name, "s", "s-copy", headers={"x-oss-meta-new": "ignored"})
    assert r.status == 200 and REQUEST_ID.fullmatch(r.request_id)
    check(src, "s-copy", "text/x-src", {"x-oss-meta-origin": "src"}, "no-store")
    # Across buckets of the same account, REPLACE: only what this request says.
    dst.copy_object(src.bucket_name, "s", "d-replace", headers={
        "x-oss-metadata-directive": "REPLACE", "Content-Type": "text/x-dst", "x-oss-meta-new": "yes"})
    check(dst, "d-replace", "text/x-dst", {"x-oss-meta-new": "yes"}, None)
    # Across buckets, explicit COPY.
    dst.copy_object(src.bucket_name, "s", "d-copy", headers={"x-oss-metadata-directive": "COPY",
                                                             "x-oss-meta-new": "ignored"})
    check(dst, "d-copy", "text/x-src", {"x-oss-meta-origin": "src"}, "no-store")
    # Overwriting an existing target.
    dst.put_object("d-over", b"old")
    dst.copy_object(src.bucket_name, "s", "d-over")
    check(dst, "d-over", "text/x-src", {"x-oss-meta-origin": "src"}, "no-store")
    # An odd source key (oss2 percent-encodes it in x-oss-copy-source).
    src.put_object("dir/a b+c%é?", b"odd")
    dst.copy_object(src.bucket_name, "dir/a b+c%é?", "odd copy")
    assert read_all(dst, "odd copy")[1] == b"odd"
    # Metadata update in place (copy onto itself with REPLACE): content and ETag unchanged.
    src.update_object_meta("s", {"Content-Type": "text/x-updated", "x-oss-meta-v": "2"})
    h = src.head_object("s")
    assert (h.content_type, meta_of(h.headers), h.etag) == ("text/x-updated", {"x-oss-meta-v": "2"}, source.etag)
    assert read_all(src, "s")[1] == data
    # The source is untouched by the copies.
    assert keys_of(src) == ["dir/a b+c%é?", "s", "s-copy"]
    # Errors: no such source key, no such source bucket, a bad directive.
    oss_error(lambda: dst.copy_object(src.bucket_name, "nope", "x"), "NoSuchKey", 404)
    oss_error(lambda: dst.copy_object(name(), "s", "x"), "NoSuchBucket", 404)
    oss_error(lambda: dst.copy_object(src.bucket_name, "s", "x", headers={"x-oss-metadata-directive": "BOGUS"}),
              "InvalidArgument", 400)
    assert keys_of(dst) == ["d-copy", "d-over", "d-replace", "odd copy"]


def test_copy_source_conditions(new_bucket):
    b = new_bucket()
    b.put_object("s", b"source")
    h = b.head_object("s")
    etag = h.headers["ETag"]
    last_modified = oss2.utils.http_date(h.last_modified)
    day_before = oss2.utils.http_date(h.last_modified - 86400)
    other = '"0123456789ABCDEF0123456789ABCDEF"'
    passing = {
        "if-match": {"x-oss-copy-source-if-match": etag},
        "if-none-match": {"x-oss-copy-source-if-none-match": other},
        "if-modified-since": {"x-oss-copy-source-if-modified-since": day_before},
        "if-unmodified-since": {"x-oss-copy-source-if-unmodified-since": last_modified},
    }
    for label, headers in passing.items():
        b.copy_object(b.bucket_name, "s", f"ok-{label}", headers=headers)
        assert read_all(b, f"ok-{label}")[1] == b"source"
    # The OSS documentation: if-match / if-unmodified-since failing → 412; if-none-match /
    # if-modified-since failing → 304.
    oss_error(lambda: b.copy_object(b.bucket_name, "s", "no-1", headers={"x-oss-copy-source-if-match": other}),
              "PreconditionFailed", 412)
    oss_error(lambda: b.copy_object(b.bucket_name, "s", "no-2",
                                    headers={"x-oss-copy-source-if-unmodified-since": day_before}),
              "PreconditionFailed", 412)
    oss_error(lambda: b.copy_object(b.bucket_name, "s", "no-3", headers={"x-oss-copy-source-if-none-match": etag}),
              status=304)
    oss_error(lambda: b.copy_object(b.bucket_name, "s", "no-4",
                                    headers={"x-oss-copy-source-if-modified-since": last_modified}),
              status=304)
    assert keys_of(b) == sorted(["s"] + [f"ok-{label}" for label in passing])


# --- AppendObject -------------------------------------------------------------------------------

@V1_V4
def test_append_object(new_bucket, v4):
    b = new_bucket(v4=v4)
    first, second = b"hello ", payload(100 * KiB + 3, seed=6)
    r1 = b.append_object("ap", 0, first, init_crc=0)  # with init_crc oss2 checks each append's CRC
    assert (r1.status, r1.next_position, r1.crc) == (200, len(first), crc64(first))
    r2 = b.append_object("ap", r1.next_position, second, init_crc=r1.crc)
    whole = first + second
    assert (r2.next_position, r2.crc) == (len(whole), crc64(whole))
    h = b.head_object("ap")
    assert (h.object_type, h.content_length, h.server_crc) == ("Appendable", len(whole), crc64(whole))
    assert h.headers["x-oss-next-append-position"] == str(len(whole))
    assert h.etag and h.etag != md5_etag(whole)  # an appendable object's ETag is not its MD5
    assert read_all(b, "ap")[1] == whole
    assert b.list_objects().object_list[0].type == "Appendable"
    # A wrong position: 409, and the right one in x-oss-next-append-position.
    for pos in (3, 0, len(whole) + 1):
        e = oss_error(lambda: b.append_object("ap", pos, b"x"), "PositionNotEqualToLength", 409)
        assert isinstance(e, oss2.exceptions.PositionNotEqualToLength) and e.next_position == len(whole)
    e = oss_error(lambda: b.append_object("fresh", 5, b"x"), "PositionNotEqualToLength", 409)
    assert e.next_position == 0
    assert read_all(b, "ap")[1] == whole and keys_of(b) == ["ap"]
    # A normal object is not appendable.
    b.put_object("normal", b"n")
    e = oss_error(lambda: b.append_object("normal", 1, b"x"), "ObjectNotAppendable", 409)
    assert isinstance(e, oss2.exceptions.ObjectNotAppendable)
    assert read_all(b, "normal")[1] == b"n"
    # PutObject over an appendable object makes it a normal one.
    b.put_object("ap", b"plain")
    h = b.head_object("ap")
    assert (h.object_type, h.etag, h.content_length) == ("Normal", md5_etag(b"plain"), 5)


# --- multipart upload ---------------------------------------------------------------------------

@V1_V4
def test_multipart_upload(new_bucket, v4):
    b = new_bucket(v4=v4)
    src = payload(MiB, seed=7)
    b.put_object("src", src)
    key = "mp/object"
    init = b.init_multipart_upload(key, headers={"Content-Type": "application/x-mp", "x-oss-meta-kind": "multipart"})
    uid = init.upload_id
    assert uid and REQUEST_ID.fullmatch(init.request_id)
    p1, p2, p4 = payload(256 * KiB, seed=11), payload(200 * KiB, seed=12), payload(777, seed=14)
    part3 = src[100:100 + 150 * KiB]
    infos = {}
    # out of order; part 4 twice (the last upload of a part number wins)
    for n, d in [(4, b"first try of part four"), (2, p2), (4, p4), (1, p1)]:
        r = b.upload_part(key, uid, n, d)
        assert (r.etag, r.crc) == (md5_etag(d), crc64(d)), n
        infos[n] = PartInfo(n, r.etag, size=len(d), part_crc=r.crc)
    r = b.upload_part_copy(b.bucket_name, "src", (100, 100 + 150 * KiB - 1), key, uid, 3)
    assert r.status == 200 and REQUEST_ID.fullmatch(r.request_id)

    uploads = b.list_multipart_uploads()
    assert [(u.key, u.upload_id) for u in uploads.upload_list] == [(key, uid)]
    assert b.list_multipart_uploads(prefix="other/").upload_list == []
    parts = b.list_parts(key, uid).parts
    # An uploaded part's ETag is its MD5; OSS does not say what a copied part's is.
    assert [(p.part_number, p.size) for p in parts] == [(1, len(p1)), (2, len(p2)), (3, len(part3)), (4, len(p4))]
    assert [parts[i].etag for i in (0, 1, 3)] == [md5_etag(p1), md5_etag(p2), md5_etag(p4)]
    assert re.fullmatch(r"[0-9A-F]{32}", parts[2].etag), parts[2].etag
    infos[3] = PartInfo(3, parts[2].etag, size=len(part3), part_crc=crc64(part3))
    page = b.list_parts(key, uid, max_parts=2)
    assert [p.part_number for p in page.parts] == [1, 2] and page.is_truncated and page.next_marker == "2"
    assert [p.part_number for p in b.list_parts(key, uid, marker=page.next_marker).parts] == [3, 4]
    assert [p.part_number for p in oss2.PartIterator(b, key, uid, max_parts=1)] == [1, 2, 3, 4]
    # Nothing is visible before the upload completes.
    assert not b.object_exists(key) and keys_of(b) == ["src"]

    # oss2 combines the parts' CRCs and compares with the server's x-oss-hash-crc64ecma.
    done = b.complete_multipart_upload(key, uid, [infos[n] for n in (1, 2, 3, 4)])
    whole = p1 + p2 + part3 + p4
    assert re.fullmatch(r"[0-9A-F]{32}-4", done.etag), done.etag
    assert done.etag.split("-")[0] != md5_etag(whole)
    assert done.crc == crc64(whole)
    h = b.head_object(key)
    assert (h.etag, h.object_type, h.content_length, h.server_crc) == (done.etag, "Multipart", len(whole), crc64(whole))
    assert h.content_type == "application/x-mp" and meta_of(h.headers) == {"x-oss-meta-kind": "multipart"}
    assert read_all(b, key)[1] == whole
    r = b.get_object(key, byte_range=(len(p1) - 10, len(p1) + 9))  # across a part boundary
    assert r.read() == whole[len(p1) - 10:len(p1) + 10]
    listed = {o.key: o for o in b.list_objects().object_list}
    assert (listed[key].etag, listed[key].type, listed[key].size) == (done.etag, "Multipart", len(whole))
    # The upload is gone.
    assert b.list_multipart_uploads().upload_list == []
    oss_error(lambda: b.list_parts(key, uid), "NoSuchUpload", 404)
    oss_error(lambda: b.upload_part(key, uid, 5, b"late"), "NoSuchUpload", 404)


def test_multipart_errors_and_abort(new_bucket):
    b = new_bucket()
    key = "mp/errors"
    uid = b.init_multipart_upload(key).upload_id
    p1, p2 = payload(120 * KiB, seed=21), payload(120 * KiB, seed=22)
    e1, e2 = b.upload_part(key, uid, 1, p1).etag, b.upload_part(key, uid, 2, p2).etag
    # Parts listed out of order (oss2 would sort them, so the body is sent as written).
    oss_error(lambda: complete_raw(b, key, uid, complete_xml([(2, e2), (1, e1)])), "InvalidPartOrder", 400)
    # A wrong ETag, a part that was never uploaded.
    oss_error(lambda: b.complete_multipart_upload(key, uid, [PartInfo(1, e1), PartInfo(2, md5_etag(b"other"))]),
              "InvalidPart", 400)
    oss_error(lambda: b.complete_multipart_upload(key, uid, [PartInfo(1, e1), PartInfo(3, e2)]), "InvalidPart", 400)
    # An upload id belongs to its key.
    oss_error(lambda: b.upload_part("mp/other-key", uid, 1, b"x"), "NoSuchUpload", 404)
    oss_error(lambda: b.list_parts("mp/other-key", uid), "NoSuchUpload", 404)
    # None of that touched the upload, and nothing became visible.
    assert [(p.part_number, p.etag) for p in b.list_parts(key, uid).parts] == [(1, e1), (2, e2)]
    assert not b.object_exists(key) and keys_of(b) == []

    # EntityTooSmall: a part other than the last under 100 KiB.
    small = "mp/small"
    sid = b.init_multipart_upload(small).upload_id
    s1, s2 = b.upload_part(small, sid, 1, b"a" * 1024).etag, b.upload_part(small, sid, 2, b"b" * 1024).etag
    oss_error(lambda: b.complete_multipart_upload(small, sid, [PartInfo(1, s1), PartInfo(2, s2)]),
              "EntityTooSmall", 400)
    assert not b.object_exists(small)
    # The last part may be small, and parts left out of the list are dropped.
    done = b.complete_multipart_upload(small, sid, [PartInfo(1, s1)])
    assert re.fullmatch(r"[0-9A-F]{32}-1", done.etag)
    assert read_all(b, small)[1] == b"a" * 1024

    # Abort; then the upload is gone for every action.
    assert b.abort_multipart_upload(key, uid).status == 204
    oss_error(lambda: b.list_parts(key, uid), "NoSuchUpload", 404)
    oss_error(lambda: b.upload_part(key, uid, 3, b"x"), "NoSuchUpload", 404)
    oss_error(lambda: b.complete_multipart_upload(key, uid, [PartInfo(1, e1), PartInfo(2, e2)]), "NoSuchUpload", 404)
    oss_error(lambda: b.abort_multipart_upload(key, uid), "NoSuchUpload", 404)
    oss_error(lambda: b.list_parts(key, NO_SUCH_UPLOAD_ID), "NoSuchUpload", 404)
    assert b.list_multipart_uploads().upload_list == []
    assert keys_of(b) == [small]


def test_list_multipart_uploads(new_bucket):
    b = new_bucket()
    ups = {}
    for key in ["u/a", "u/b", "u/b", "v/c"]:
        ups.setdefault(key, []).append(b.init_multipart_upload(key).upload_id)
    listed = [(u.key, u.upload_id) for u in b.list_multipart_uploads().upload_list]
    assert [k for k, _ in listed] == ["u/a", "u/b", "u/b", "v/c"]
    assert sorted(listed) == sorted((k, i) for k, ids in ups.items() for i in ids)
    assert [u.key for u in b.list_multipart_uploads(prefix="u/").upload_list] == ["u/a", "u/b", "u/b"]
    page = b.list_multipart_uploads(delimiter="/")
    assert page.upload_list == [] and page.prefix_list == ["u/", "v/"]
    assert sorted((u.key, u.upload_id) for u in oss2.MultipartUploadIterator(b, max_uploads=1)) == sorted(listed)
    assert keys_of(b) == []


# --- resumable transfers -------------------------------------------------------------------------

def test_resumable_upload_and_download(new_bucket, tmp_path):
    b = new_bucket()
    size = 30 * MiB + 123
    src = tmp_path / "src.bin"
    sha, _md5, crc = write_file(src, size, seed=30)
    up_store = oss2.ResumableStore(root=str(tmp_path), dir="upload-checkpoints")

    # First attempt: one part fails (the progress callback raises once); the other threads carry on.
    failed = threading.Event()

    def fail_once(consumed, total):
        if consumed >= 8 * MiB and not failed.is_set():
            failed.set()
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        oss2.resumable_upload(b, "res/object", str(src), store=up_store, multipart_threshold=MiB, part_size=MiB,
                              num_threads=4, progress_callback=fail_once)
    [record_file] = os.listdir(up_store.dir)
    record = json.loads((tmp_path / "upload-checkpoints" / record_file).read_text())
    [upload] = b.list_multipart_uploads().upload_list
    assert (upload.key, upload.upload_id) == ("res/object", record["upload_id"])
    uploaded = [p.part_number for p in oss2.PartIterator(b, "res/object", upload.upload_id)]
    assert 0 < len(uploaded) < 31 and not b.object_exists("res/object")

    # Second attempt: resumes the same upload, sends only what is missing, completes.
    r = oss2.resumable_upload(b, "res/object", str(src), store=up_store, multipart_threshold=MiB, part_size=MiB,
                              num_threads=4)
    assert re.fullmatch(r"[0-9A-F]{32}-31", r.etag), r.etag
    assert r.crc == crc
    assert os.listdir(up_store.dir) == [] and b.list_multipart_uploads().upload_list == []
    h = b.head_object("res/object")
    assert (h.content_length, h.object_type, h.server_crc) == (size, "Multipart", crc)

    # Download: interrupted once, then resumed; byte-exact, the CRC of the parts combined checked by oss2.
    dst = tmp_path / "dst.bin"
    down_store = oss2.ResumableDownloadStore(root=str(tmp_path), dir="download-checkpoints")
    failed.clear()
    with pytest.raises(RuntimeError, match="interrupted"):
        oss2.resumable_download(b, "res/object", str(dst), store=down_store, multiget_threshold=MiB, part_size=MiB,
                                num_threads=4, progress_callback=fail_once)
    assert not dst.exists() and len(os.listdir(down_store.dir)) == 1
    oss2.resumable_download(b, "res/object", str(dst), store=down_store, multiget_threshold=MiB, part_size=MiB,
                            num_threads=4)
    assert sha256_file(dst) == sha
    assert os.listdir(down_store.dir) == []
    assert sorted(os.listdir(tmp_path)) == ["download-checkpoints", "dst.bin", "src.bin", "upload-checkpoints"]
    # Below the thresholds the same calls are a plain put and get.
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny")
    r = oss2.resumable_upload(b, "res/small", str(small), store=up_store, multipart_threshold=MiB)
    assert r.etag == md5_etag(b"tiny")
    oss2.resumable_download(b, "res/small", str(tmp_path / "small.out"), store=down_store, multiget_threshold=MiB)
    assert (tmp_path / "small.out").read_bytes() == b"tiny"


# --- presigned URLs ---------------------------------------------------------------------------

def with_query(url, **changes):
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    q = [(k, changes.get(k, v)) for k, v in q]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q, quote_via=urllib.parse.quote)))


def flip(s):
    return ("B" if s[0] != "B" else "C") + s[1:]


def error_code(resp):
    assert resp.headers.get("Content-Type", "").startswith("application/xml"), resp.headers
    root = ET.fromstring(resp.content)
    assert root.tag == "Error"
    assert REQUEST_ID.fullmatch(resp.headers.get("x-oss-request-id", ""))
    return root.findtext("Code")


@V1_V4
def test_presigned_urls(new_bucket, v4):
    b = new_bucket(v4=v4)
    data = payload(10 * KiB + 5, seed=8)
    b.put_object("p/get me", data)
    url = b.sign_url("GET", "p/get me", 60)
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == data, r.text[:300]
    assert r.headers["ETag"] == f'"{md5_etag(data)}"' and r.headers["x-oss-hash-crc64ecma"] == str(crc64(data))
    r = requests.get(url, headers={"Range": "bytes=0-9"}, timeout=30)
    assert (r.status_code, r.content) == (206, data[:10])

    # PUT through a signed URL: the object appears; with no Content-Type the server's default.
    body = payload(3000, seed=9)
    r = requests.put(b.sign_url("PUT", "p/put-me", 60), data=body, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["ETag"] == f'"{md5_etag(body)}"'
    assert read_all(b, "p/put-me")[1] == body
    assert b.head_object("p/put-me").content_type == "application/octet-stream"
    # A signed Content-Type must be sent as signed.
    typed = b.sign_url("PUT", "p/typed", 60, headers={"Content-Type": "text/plain"})
    assert requests.put(typed, data=b"t", headers={"Content-Type": "text/plain"}, timeout=30).status_code == 200
    assert b.head_object("p/typed").content_type == "text/plain"
    r = requests.put(typed, data=b"u", headers={"Content-Type": "image/png"}, timeout=30)
    assert (r.status_code, error_code(r)) == (403, "SignatureDoesNotMatch")
    assert read_all(b, "p/typed")[1] == b"t"

    # Tampered: the signature, the key, the method.
    sig = "x-oss-signature" if v4 else "Signature"
    bad = with_query(url, **{sig: flip(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))[sig])})
    r = requests.get(bad, timeout=30)
    assert (r.status_code, error_code(r)) == (403, "SignatureDoesNotMatch")
    r = requests.get(url.replace("get%20me", "get%20mf"), timeout=30)
    assert (r.status_code, error_code(r)) == (403, "SignatureDoesNotMatch")
    r = requests.put(url, data=b"overwrite", timeout=30)
    assert (r.status_code, error_code(r)) == (403, "SignatureDoesNotMatch")
    if not v4:  # V1 signs the expiry time itself
        r = requests.get(with_query(url, Expires=str(int(time.time()) + 7200)), timeout=30)
        assert (r.status_code, error_code(r)) == (403, "SignatureDoesNotMatch")
    assert read_all(b, "p/get me")[1] == data

    # Expired.
    if v4:
        expired = b.sign_url("GET", "p/get me", 1)
        time.sleep(2.5)
    else:
        expired = b.sign_url("GET", "p/get me", -30)
    r = requests.get(expired, timeout=30)
    assert (r.status_code, error_code(r)) == (403, "AccessDenied")
    assert keys_of(b) == ["p/get me", "p/put-me", "p/typed"]


# --- access -----------------------------------------------------------------------------------

def test_access_by_other_account_and_anonymous(feitian, other_account, new_bucket):
    priv = new_bucket()
    priv.put_object("secret", b"s")
    priv.put_object("shared", b"pub")
    priv.put_object_acl("shared", oss2.OBJECT_ACL_PUBLIC_READ)
    assert priv.get_object_acl("shared").acl == "public-read"
    assert priv.get_object_acl("secret").acl == "default"
    pub = new_bucket(acl=oss2.BUCKET_ACL_PUBLIC_READ)
    pub.put_object("open", b"o")

    for who, make in [("other account", lambda n: bucket(feitian, other_account, n)),
                      ("other account, V4", lambda n: bucket(feitian, other_account, n, v4=True)),
                      ("anonymous", lambda n: anonymous(feitian, n))]:
        p = make(priv.bucket_name)
        for label, call in [
            ("GET", lambda: p.get_object("secret")),
            ("GET missing", lambda: p.get_object("no-such-key")),  # no existence oracle
            ("HEAD", lambda: p.head_object("secret")),
            ("PUT", lambda: p.put_object("new", b"x")),
            ("PUT over public-read object", lambda: p.put_object("shared", b"x")),
            ("LIST", lambda: p.list_objects()),
            ("LIST v2", lambda: p.list_objects_v2()),
            ("DELETE", lambda: p.delete_object("secret")),
            ("batch DELETE", lambda: p.batch_delete_objects(["secret"])),
            ("PUT ACL", lambda: p.put_object_acl("secret", oss2.OBJECT_ACL_PUBLIC_READ)),
            ("GET ACL", lambda: p.get_object_acl("secret")),
            ("APPEND", lambda: p.append_object("new-ap", 0, b"x")),
            ("multipart", lambda: p.init_multipart_upload("mp")),
            ("list uploads", lambda: p.list_multipart_uploads()),
        ]:
            refused_as(call, "AccessDenied", 403, f"{who}, private bucket, {label}")
        assert read_all(p, "shared")[1] == b"pub", who  # a public-read object in a private bucket
        assert p.head_object("shared").content_length == 3, who

        q = make(pub.bucket_name)
        assert read_all(q, "open")[1] == b"o", who
        assert q.head_object("open").content_length == 1, who
        assert [o.key for o in q.list_objects().object_list] == ["open"], who
        oss_error(lambda: q.get_object("missing"), "NoSuchKey", 404)  # readable bucket: existence shows
        for label, call in [("PUT", lambda: q.put_object("intruder", b"x")),
                            ("PUT over", lambda: q.put_object("open", b"x")),
                            ("DELETE", lambda: q.delete_object("open")),
                            ("APPEND", lambda: q.append_object("intruder", 0, b"x")),
                            ("multipart", lambda: q.init_multipart_upload("intruder"))]:
            refused_as(call, "AccessDenied", 403, f"{who}, public-read bucket, {label}")

    # Copying needs read access to the source...
    theirs = bucket(feitian, other_account, name())
    theirs.create_bucket()
    try:
        oss_error(lambda: theirs.copy_object(priv.bucket_name, "secret", "stolen"), "AccessDenied", 403)
        oss_error(lambda: priv.copy_object(theirs.bucket_name, "nothing-yet", "x"), "AccessDenied", 403)
        theirs.copy_object(pub.bucket_name, "open", "copied")  # public-read source
        assert read_all(theirs, "copied")[1] == b"o"
        # ... and write access to the target.
        oss_error(lambda: bucket(feitian, other_account, priv.bucket_name).copy_object(
            theirs.bucket_name, "copied", "planted"), "AccessDenied", 403)
        oss_error(lambda: bucket(feitian, other_account, pub.bucket_name).copy_object(
            theirs.bucket_name, "copied", "planted"), "AccessDenied", 403)
    finally:
        drop_bucket(theirs)

    # Nothing changed.
    assert keys_of(priv) == ["secret", "shared"] and keys_of(pub) == ["open"]
    assert read_all(priv, "secret")[1] == b"s" and read_all(pub, "open")[1] == b"o"
    assert priv.list_multipart_uploads().upload_list == []


def test_delete_bucket_not_empty(new_bucket):
    b = new_bucket()
    b.put_object("k", b"v")
    oss_error(b.delete_bucket, "BucketNotEmpty", 409)
    b.delete_object("k")
    # only an unfinished multipart upload
    uid = b.init_multipart_upload("mp").upload_id
    b.upload_part("mp", uid, 1, b"part")
    assert keys_of(b) == []
    oss_error(b.delete_bucket, "BucketNotEmpty", 409)
    b.abort_multipart_upload("mp", uid)
    # only an appendable object
    b.append_object("ap", 0, b"x")
    oss_error(b.delete_bucket, "BucketNotEmpty", 409)
    b.delete_object("ap")
    assert b.delete_bucket().status == 204
    oss_error(b.get_bucket_info, "NoSuchBucket", 404)
    oss_error(lambda: b.put_object("k", b"v"), "NoSuchBucket", 404)


# --- kill -9 -----------------------------------------------------------------------------------

def test_kill9_keeps_acknowledged_objects(own_feitian):
    """DESIGN.md: "no request that returned success is lost". Objects written every way, then a
    kill -9 while a PutObject is half-way through its body; after a restart on the same data
    directory every acknowledged object reads back byte-exact and the half-sent one is absent."""
    f = own_feitian().start()
    key = f.new_account(f"crash-{uuid.uuid4().hex[:8]}")
    bn = name()
    b = bucket(f, key, bn)
    b.create_bucket()
    simple = payload(MiB + 7, seed=40)
    b.put_object("simple", simple, headers={"x-oss-meta-k": "v", "Content-Type": "text/x-simple"})
    b.put_object("empty", b"")
    b.put_object("overwritten", b"one")
    b.put_object("overwritten", b"two")
    b.put_object("deleted", b"gone")
    b.delete_object("deleted")
    r = b.append_object("appendable", 0, b"first,", init_crc=0)
    b.append_object("appendable", r.next_position, b"second", init_crc=r.crc)
    m1, m2 = payload(150 * KiB, seed=41), payload(10, seed=42)
    uid = b.init_multipart_upload("multipart").upload_id
    parts = [PartInfo(n, b.upload_part("multipart", uid, n, d).etag) for n, d in ((1, m1), (2, m2))]
    mp_etag = b.complete_multipart_upload("multipart", uid, parts).etag
    b.copy_object(bn, "simple", "copy")
    pending = b.init_multipart_upload("pending").upload_id
    pending_etag = b.upload_part("pending", pending, 1, m1).etag

    # A PutObject announcing 48 MiB, 24 MiB of it sent, when the server dies.
    path, headers = signed(b, "PUT", "partial")
    conn = http.client.HTTPConnection(f.host, f.port, timeout=30)
    conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
    for k, v in {"Host": f.endpoint, "Content-Length": str(48 * MiB), **headers}.items():
        conn.putheader(k, v)
    conn.endheaders()
    try:
        conn.send(payload(24 * MiB, seed=43))
    except OSError:
        pass  # however the server took it, the kill comes now
    f.kill9()
    conn.close()

    f.start()
    b = bucket(f, key, bn)
    assert keys_of(b) == ["appendable", "copy", "empty", "multipart", "overwritten", "simple"]
    r, body = read_all(b, "simple")
    assert body == simple and r.etag == md5_etag(simple) and r.server_crc == crc64(simple)
    assert meta_of(r.headers) == {"x-oss-meta-k": "v"} and r.content_type == "text/x-simple"
    assert read_all(b, "copy")[1] == simple
    assert read_all(b, "empty")[1] == b""
    assert read_all(b, "overwritten")[1] == b"two"
    oss_error(lambda: b.get_object("deleted"), "NoSuchKey", 404)
    oss_error(lambda: b.get_object("partial"), "NoSuchKey", 404)
    r, body = read_all(b, "appendable")
    assert body == b"first,second" and r.object_type == "Appendable"
    assert b.append_object("appendable", 12, b"!").next_position == 13
    r, body = read_all(b, "multipart")
    assert body == m1 + m2 and r.etag == mp_etag
    # The unfinished upload survived too, and completes.
    assert [(u.key, u.upload_id) for u in b.list_multipart_uploads().upload_list] == [("pending", pending)]
    assert [(p.part_number, p.etag) for p in b.list_parts("pending", pending).parts] == [(1, pending_etag)]
    b.complete_multipart_upload("pending", pending, [PartInfo(1, pending_etag)])
    assert read_all(b, "pending")[1] == m1
