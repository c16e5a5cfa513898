"""Issue 4, done-when 3: malformed OSS object requests are refused, never crash the server, and
never leave a partial object behind.

Requests go out raw (http.client, exactly as written: any body, any Content-Length, paths with
dot segments) but signed by oss2's own signer (`test_oss_objects.signed`), or through oss2 itself
with bad inputs. Every answer must be a 4xx, never a 5xx, with the real OSS code in the
`<Error>` body and a 24-character `x-oss-request-id` (the same as the body's `RequestId`); the
bucket is listed before and after (objects with their ETags and sizes, unfinished uploads and
their parts) and must be unchanged; the server must still answer /healthz after each test.

Where the OSS documentation names one code for a case, only that code passes. Where it is
silent on which of two plausible codes the real service sends (a PartNumber that is not a
number: MalformedXML or InvalidArgument?), the case lists the codes it accepts, each a real OSS
code for that kind of fault; what never passes is a 2xx, a 5xx, a missing code or a changed
bucket."""
import base64
import hashlib
import os
import re
import urllib.parse
import urllib.request
import uuid

import oss2
import pytest
from oss2.models import PartInfo

from test_oss_objects import (  # noqa: F401 - new_bucket is a fixture
    KiB, REQUEST_ID, V1_V4, bucket, complete_xml, crc64, keys_of, md5_etag, name, new_bucket, oss_error, payload,
    raw_http, read_all, signed)

MALFORMED = {"MalformedXML"}
META_TOO_LARGE = {"InvalidArgument", "MetadataTooLarge"}  # OSS documents the 8 KB limit, not the code's name
BAD_PART_NUMBER = {"MalformedXML", "InvalidArgument", "InvalidPart"}

LOL = ("<!DOCTYPE lolz [<!ENTITY lol \"lol\">"
       + "".join(f"<!ENTITY lol{i} \"{('&lol' + (str(i - 1) if i > 1 else '') + ';') * 10}\">" for i in range(1, 10))
       + "]>")
XXE = '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
PROLOG = '<?xml version="1.0" encoding="UTF-8"?>'


@pytest.fixture(autouse=True)
def server_stays_up(feitian):
    yield
    with urllib.request.urlopen(f"http://{feitian.endpoint}/healthz", timeout=10) as r:
        assert r.status == 200, "feitian stopped answering after the malformed requests"


# --- checks -----------------------------------------------------------------------------------

def refusal_problem(r, codes, label):
    """None if `r` is a 4xx `<Error>` with one of `codes`, else what is wrong with it."""
    if r.error:
        return f"{label}: no answer ({r.error})"
    if not 400 <= r.status < 500:
        return f"{label}: HTTP {r.status} {r.text(300)}"
    rid = r.headers.get("x-oss-request-id", "")
    if not REQUEST_ID.fullmatch(rid):
        return f"{label}: x-oss-request-id {rid!r}"
    try:
        doc = r.parsed()
    except Exception:  # noqa: BLE001
        return f"{label}: {r.status} without an XML <Error> body ({r.headers.get('content-type')}): {r.text(300)}"
    if doc.get("_root") != "Error":
        return f"{label}: root element {doc.get('_root')}"
    if doc.get("Code") not in codes:
        return f"{label}: {r.status} {doc.get('Code')!r}, expected one of {sorted(codes)}: {doc.get('Message')}"
    if doc.get("RequestId") != rid:
        return f"{label}: body RequestId {doc.get('RequestId')!r} != header {rid!r}"
    return None


def closed_without_answer(r):
    """The server closed the connection without answering (not a time-out): what a front end
    may do with a client that half-closed before sending the body it announced."""
    return r.status == 0 and any(s in r.error for s in ("RemoteDisconnected", "ConnectionReset", "BadStatusLine",
                                                        "IncompleteRead", "BrokenPipe"))


def assert_refused(r, codes, label=""):
    p = refusal_problem(r, codes, label)
    assert p is None, p


def state(b):
    """Everything visible in the bucket: objects (key, size, ETag), unfinished uploads and their
    parts."""
    objects = [(o.key, o.size, o.etag) for o in oss2.ObjectIterator(b, max_keys=1000)]
    uploads = []
    for u in oss2.MultipartUploadIterator(b):
        parts = [(p.part_number, p.size, p.etag) for p in oss2.PartIterator(b, u.key, u.upload_id)]
        uploads.append((u.key, u.upload_id, parts))
    return objects, sorted(uploads)


def send(feitian, b, method, key, params=None, headers=None, body=b"", **kw):
    path, hdrs = signed(b, method, key, params, headers)
    return raw_http(feitian, method, path, hdrs, body, **kw)


def b64(raw):
    return base64.b64encode(raw).decode()


# --- CompleteMultipartUpload ------------------------------------------------------------------

def test_complete_multipart_upload_malformed_bodies(feitian, new_bucket):
    b = new_bucket()
    key = "mp/target"
    uid = b.init_multipart_upload(key).upload_id
    p1, p2 = payload(120 * KiB, seed=1), payload(50, seed=2)
    e1, e2 = b.upload_part(key, uid, 1, p1).etag, b.upload_part(key, uid, 2, p2).etag
    good = complete_xml([(1, e1), (2, e2)])
    before = state(b)

    def part(number, etag):
        return f"<Part><PartNumber>{number}</PartNumber><ETag>\"{etag}\"</ETag></Part>"

    def doc(inner, root="CompleteMultipartUpload", dtd=""):
        return f"{PROLOG}{dtd}<{root}>{inner}</{root}>".encode()

    cases = [
        ("empty body", b"", MALFORMED),
        ("not XML", b'{"Part": [{"PartNumber": 1}]}', MALFORMED),
        ("plain text", b"complete it please", MALFORMED),
        ("truncated near the end", good.encode()[:-25], MALFORMED),
        ("truncated in a tag", good.encode()[:45], MALFORMED),
        ("unclosed root", good.encode().replace(b"</CompleteMultipartUpload>", b""), MALFORMED),
        ("wrong root", doc(part(1, e1) + part(2, e2), root="CompleteUpload"), MALFORMED),
        ("two roots", (good + good).encode(), MALFORMED),
        ("mismatched tags", doc("<Part><PartNumber>1</ETag></Part>"), MALFORMED),
        ("no parts", doc(""), MALFORMED | {"InvalidPart"}),
        ("part without PartNumber", doc(f"<Part><ETag>\"{e1}\"</ETag></Part>" + part(2, e2)),
         MALFORMED | {"InvalidPart"}),
        ("part without ETag", doc("<Part><PartNumber>1</PartNumber></Part>" + part(2, e2)),
         MALFORMED | {"InvalidPart"}),
        ("non-numeric PartNumber", doc(part("one", e1) + part(2, e2)), BAD_PART_NUMBER),
        ("hex PartNumber", doc(part("0x1", e1) + part(2, e2)), BAD_PART_NUMBER),
        ("negative PartNumber", doc(part(-1, e1) + part(2, e2)), BAD_PART_NUMBER),
        ("PartNumber 0", doc(part(0, e1) + part(2, e2)), BAD_PART_NUMBER),
        ("PartNumber 10001", doc(part(1, e1) + part(2, e2) + part(10001, e2)), BAD_PART_NUMBER),
        ("PartNumber 2^31", doc(part(1, e1) + part(2, e2) + part(2**31, e2)), BAD_PART_NUMBER),
        ("PartNumber 2^64", doc(part(1, e1) + part(2, e2) + part(2**64, e2)), BAD_PART_NUMBER),
        ("PartNumber 10^40", doc(part(1, e1) + part(2, e2) + part(10**40, e2)), BAD_PART_NUMBER),
        ("parts in the wrong order", complete_xml([(2, e2), (1, e1)]).encode(), {"InvalidPartOrder"}),
        ("parts descending, more of them", doc(part(2, e2) + part(1, e1) + part(2, e2)), {"InvalidPartOrder"}),
        ("a part twice", complete_xml([(1, e1), (1, e1), (2, e2)]).encode(), {"InvalidPartOrder", "InvalidPart"}),
        ("a part never uploaded", complete_xml([(1, e1), (3, e2)]).encode(), {"InvalidPart"}),
        ("a wrong ETag", complete_xml([(1, e1), (2, md5_etag(b"x"))]).encode(), {"InvalidPart"}),
        ("an ETag that is not hex", complete_xml([(1, "zz" * 16), (2, e2)]).encode(), {"InvalidPart"}),
        ("a huge ETag", complete_xml([(1, "A" * 100_000), (2, e2)]).encode(), {"InvalidPart"} | MALFORMED),
        ("invalid UTF-8", doc(part(1, e1)).replace(e1.encode(), b"\xff\xfe\xfd"), MALFORMED),
        ("entity expansion (billion laughs)", doc(part(1, "&lol9;") + part(2, e2), dtd=LOL), MALFORMED),
        ("external entity", doc(part(1, "&xxe;") + part(2, e2), dtd=XXE), MALFORMED),
        ("external entity in PartNumber", doc(part("&xxe;", e1) + part(2, e2), dtd=XXE), MALFORMED),
        ("deep nesting", doc("<Part>" * 50_000 + "</Part>" * 50_000), MALFORMED | {"InvalidPart"}),
    ]
    problems = []
    for label, body, codes in cases:
        r = send(feitian, b, "POST", key, {"uploadId": uid}, body=body)
        problems.append(refusal_problem(r, codes, label))
        if b"root:" in r.body:
            problems.append(f"{label}: the answer contains /etc/passwd")
    problems = [p for p in problems if p]
    assert not problems, f"{len(problems)} of {len(cases)} bodies answered wrongly:\n" + "\n".join(problems)
    assert state(b) == before, "a refused CompleteMultipartUpload changed the bucket"

    # The upload is intact: the right body completes it, byte-exact.
    b.complete_multipart_upload(key, uid, [PartInfo(1, e1, size=len(p1), part_crc=crc64(p1)),
                                           PartInfo(2, e2, size=len(p2), part_crc=crc64(p2))])
    assert read_all(b, key)[1] == p1 + p2
    # Completing again: the upload is gone.
    r = send(feitian, b, "POST", key, {"uploadId": uid}, body=good.encode())
    assert_refused(r, {"NoSuchUpload"}, "second complete")


@V1_V4
def test_parts_completed_in_the_wrong_order_through_oss2(new_bucket, v4):
    """The same refusals through oss2's own request path (it signs the body as given)."""
    b = new_bucket(v4=v4)
    key = "mp/order"
    uid = b.init_multipart_upload(key).upload_id
    etags = [b.upload_part(key, uid, n, payload(100 * KiB, seed=n)).etag for n in (1, 2, 3)]
    before = state(b)
    for order in ([3, 2, 1], [1, 3, 2], [2, 1, 3]):
        body = complete_xml([(n, etags[n - 1]) for n in order])
        oss_error(lambda: b._do("POST", b.bucket_name, key, params={"uploadId": uid}, data=body),
                  "InvalidPartOrder", 400)
    assert state(b) == before
    b.complete_multipart_upload(key, uid, [PartInfo(n, etags[n - 1]) for n in (3, 1, 2)])  # oss2 sorts them
    assert read_all(b, key)[1] == b"".join(payload(100 * KiB, seed=n) for n in (1, 2, 3))


# --- DeleteMultipleObjects ------------------------------------------------------------------------

def test_delete_multiple_objects_malformed_bodies(feitian, new_bucket):
    b = new_bucket()
    victims = ["v/1", "v/2", "v/3 space"]
    for k in victims:
        b.put_object(k, k.encode())
    before = state(b)
    objects = "".join(f"<Object><Key>{k}</Key></Object>" for k in victims)

    def doc(inner, root="Delete", dtd=""):
        return f"{PROLOG}{dtd}<{root}>{inner}</{root}>".encode()

    good = doc(f"<Quiet>false</Quiet>{objects}")
    many = doc("<Quiet>false</Quiet>" + objects + "".join(f"<Object><Key>x/{i}</Key></Object>" for i in range(998)))
    cases = [
        ("empty body", b"", None, MALFORMED),
        ("not XML", b"delete v/1 please", None, MALFORMED),
        ("truncated", good[:-20], None, MALFORMED),
        ("truncated in a tag", good[:60], None, MALFORMED),
        ("wrong root", doc(f"<Quiet>false</Quiet>{objects}", root="Remove"), None, MALFORMED),
        ("two roots", good + good, None, MALFORMED),
        ("mismatched tags", doc(f"<Object><Key>v/1</Object></Key>{objects}"), None, MALFORMED),
        ("no Object", doc("<Quiet>false</Quiet>"), None, MALFORMED),
        ("1001 keys", many, None, MALFORMED | {"InvalidArgument"}),
        ("invalid UTF-8 in a key", doc(f"<Object><Key>\xff</Key></Object>{objects}").replace(b"\xc3\xbf", b"\xff"),
         None, MALFORMED),
        ("entity expansion (billion laughs)", doc(f"<Object><Key>&lol9;</Key></Object>{objects}", dtd=LOL), None,
         MALFORMED),
        ("external entity", doc(f"<Object><Key>&xxe;</Key></Object>{objects}", dtd=XXE), None, MALFORMED),
        ("deep nesting", doc("<Object>" * 50_000 + "</Object>" * 50_000), None, MALFORMED),
        ("Content-MD5 of another body", good, b64(hashlib.md5(b"other").digest()), {"InvalidDigest"}),
        ("Content-MD5 not base64", good, "not*base64!", {"InvalidDigest"}),
        ("Content-MD5 of 8 bytes", good, b64(b"12345678"), {"InvalidDigest"}),
        ("Content-MD5 hex, not base64", good, hashlib.md5(good).hexdigest(), {"InvalidDigest"}),
    ]
    problems = []
    for label, body, md5, codes in cases:
        headers = {"Content-MD5": md5 or b64(hashlib.md5(body).digest())}
        r = send(feitian, b, "POST", "", {"delete": ""}, headers, body)
        problems.append(refusal_problem(r, codes, label))
        if b"root:" in r.body:
            problems.append(f"{label}: the answer contains /etc/passwd")
    problems = [p for p in problems if p]
    assert not problems, f"{len(problems)} of {len(cases)} bodies answered wrongly:\n" + "\n".join(problems)
    assert state(b) == before, "a refused DeleteMultipleObjects changed the bucket"
    assert sorted(b.batch_delete_objects(victims).deleted_keys) == sorted(victims)
    assert keys_of(b) == []


# --- Content-MD5, metadata size, Content-Length ---------------------------------------------------

@V1_V4
def test_bad_content_md5(new_bucket, v4):
    b = new_bucket(v4=v4)
    data = payload(5000, seed=3)
    uid = b.init_multipart_upload("mp").upload_id
    b.put_object("existing", b"keep")
    before = state(b)
    for label, md5 in [("MD5 of other data", b64(hashlib.md5(b"other").digest())),
                       ("not base64", "not*base64!"),
                       ("8 bytes", b64(b"12345678")),
                       ("hex", hashlib.md5(data).hexdigest())]:
        for what, call in [
            ("PutObject", lambda: b.put_object("k", data, headers={"Content-MD5": md5})),
            ("PutObject over an existing object", lambda: b.put_object("existing", data, headers={"Content-MD5": md5})),
            ("UploadPart", lambda: b.upload_part("mp", uid, 1, data, headers={"Content-MD5": md5})),
            ("AppendObject", lambda: b.append_object("ap", 0, data, headers={"Content-MD5": md5})),
        ]:
            try:
                e = oss_error(call, "InvalidDigest", 400)
            except (AssertionError, pytest.fail.Exception) as err:
                raise AssertionError(f"{what} with a Content-MD5 that is {label}: {err}") from None
            assert isinstance(e, oss2.exceptions.InvalidDigest)
    assert state(b) == before
    assert read_all(b, "existing")[1] == b"keep"


def test_user_metadata_size(feitian, new_bucket):
    b = new_bucket()
    fits = {"x-oss-meta-a": "a" * 3000, "x-oss-meta-b": "b" * 3000}
    b.put_object("fits", b"x", headers=fits)
    h = b.head_object("fits")
    assert (h.headers["x-oss-meta-a"], h.headers["x-oss-meta-b"]) == (fits["x-oss-meta-a"], fits["x-oss-meta-b"])
    uid = b.init_multipart_upload("mp").upload_id
    before = state(b)
    too_big = {
        "three values of 3000 bytes": {f"x-oss-meta-{c}": c * 3000 for c in "abc"},
        "one value of 8.5 KiB": {"x-oss-meta-big": "v" * (8 * KiB + 512)},
        "one value of 12 KiB": {"x-oss-meta-big": "v" * (12 * KiB)},
        "80 headers of 110 bytes": {f"x-oss-meta-k{i:02d}": "v" * 110 for i in range(80)},
    }
    problems = []
    for label, meta in too_big.items():
        for what, method, key, params, headers, body in [
            ("PutObject", "PUT", "new", None, meta, b"data"),
            ("PutObject over an object", "PUT", "fits", None, meta, b"data"),
            ("InitiateMultipartUpload", "POST", "mp2", {"uploads": ""}, meta, b""),
            ("CopyObject REPLACE", "PUT", "copy", None,
             {**meta, "x-oss-copy-source": f"/{b.bucket_name}/fits", "x-oss-metadata-directive": "REPLACE"}, b""),
            ("AppendObject", "POST", "ap", {"append": "", "position": "0"}, meta, b"data"),
        ]:
            r = send(feitian, b, method, key, params, headers, body)
            problems.append(refusal_problem(r, META_TOO_LARGE, f"{what}, {label}"))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
    assert state(b) == before
    assert b.list_parts("mp", uid).parts == []


def test_content_length_larger_than_body(feitian, new_bucket):
    """The client announces more than it sends, then closes its sending side. The answer is 400
    IncompleteBody (or RequestTimeout), or the connection is closed without one (as a front end
    may do with a client that went away); never a time-out, a 5xx, or the part that did arrive
    stored as an object, a part or an append."""
    b = new_bucket()
    uid = b.init_multipart_upload("mp").upload_id
    b.upload_part("mp", uid, 1, payload(100 * KiB, seed=4))
    b.put_object("existing", b"keep")
    b.append_object("ap", 0, b"12345")
    before = state(b)
    incomplete = {"IncompleteBody", "RequestTimeout"}
    problems = []
    for label, method, key, params in [
        ("PutObject", "PUT", "partial", None),
        ("PutObject over an existing object", "PUT", "existing", None),
        ("UploadPart", "PUT", "mp", {"uploadId": uid, "partNumber": "2"}),
        ("UploadPart over an uploaded part", "PUT", "mp", {"uploadId": uid, "partNumber": "1"}),
        ("AppendObject", "POST", "ap", {"append": "", "position": "5"}),
        ("AppendObject, new", "POST", "ap-new", {"append": "", "position": "0"}),
    ]:
        for announced, sent in [(1000, 10), (5 * 1024 * KiB, 300 * KiB)]:
            r = send(feitian, b, method, key, params, body=payload(sent, seed=5), content_length=announced,
                     half_close=True)
            if not closed_without_answer(r):
                problems.append(refusal_problem(r, incomplete, f"{label}: {sent} of {announced} bytes"))
    # More than the largest PutObject (5 GiB), announced, nothing sent.
    r = send(feitian, b, "PUT", "huge", content_length=6 * 1024 * 1024 * KiB, half_close=True)
    problems.append(refusal_problem(r, {"EntityTooLarge"}, "PutObject announcing 6 GiB"))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
    assert state(b) == before, "a body cut short left something behind"
    assert read_all(b, "existing")[1] == b"keep" and read_all(b, "ap")[1] == b"12345"


# --- Range ------------------------------------------------------------------------------------------

BAD_RANGES = [
    # (header value, whether a 206 of the first valid-looking range is acceptable by default)
    ("bytes=abc", False), ("bytes=5-3", False), ("bytes=--1", False), ("byte=0-1", False), ("items=0-9", False),
    ("bytes=", False), ("bytes=-", False), ("bytes=0x10-0x20", False), ("bytes=1-2-3", False), ("bytes", False),
    ("bytes=\t", False), ("=0-1", False), ("bytes=0-1;2-3", False), ("bytes=+1-+2", False),
    ("bytes=0-99999999999999999999999999", False), ("bytes=99999999999999999999999999-", False),
    ("bytes=18446744073709551615-18446744073709551616", False), ("bytes=1000-", False), ("bytes=5000-6000", False),
    ("bytes=-99999999999999999999999999", True), ("bytes=0-1,2-3", True), ("bytes=0-1,,", True),
    ("bytes=,0-1", True), ("bytes= 0-1", True), ("bytes=0-1 ", True), ("bytes=-0", False),
    ("bytes=" + ",".join(f"{i}-{i}" for i in range(2000)), True),
]


def range_problem(r, data, label, standard, partial_ok):
    if r.error or not (200 <= r.status < 500):
        return f"{label}: {r.status or r.error} {r.text(200)}"
    if r.status == 200:
        return None if r.body == data and "content-range" not in r.headers else f"{label}: 200 but not the object"
    if r.status == 206 and (standard or partial_ok):
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", r.headers.get("content-range", ""))
        if not m or int(m[3]) != len(data) or r.body != data[int(m[1]):int(m[2]) + 1]:
            return f"{label}: 206 with Content-Range {r.headers.get('content-range')!r} and {len(r.body)} bytes"
        return None
    if r.status == 416 and standard:
        return refusal_problem(r, {"InvalidRange"}, label)
    return f"{label}: {r.status} {r.text(200)}"


def test_bad_range_headers(feitian, new_bucket):
    b = new_bucket()
    data = payload(1000, seed=6)
    b.put_object("r", data)
    problems = []
    for value, partial_ok in BAD_RANGES:
        r = send(feitian, b, "GET", "r", headers={"Range": value})
        problems.append(range_problem(r, data, f"{value[:40]!r}", False, partial_ok))
        r = send(feitian, b, "GET", "r", headers={"Range": value, "x-oss-range-behavior": "standard"})
        problems.append(range_problem(r, data, f"{value[:40]!r} (standard)", True, partial_ok))
    # Beside a range: a bad x-oss-range-behavior means the default.
    r = send(feitian, b, "GET", "r", headers={"Range": "bytes=5000-6000", "x-oss-range-behavior": "bogus"})
    problems.append(range_problem(r, data, "bogus x-oss-range-behavior", False, False))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
    assert read_all(b, "r")[1] == data


# --- names: traversal-shaped keys, invalid keys, invalid buckets ---------------------------------

# Not "." or "..": oss2 cannot send those (requests/urllib3 resolve the path /bucket/.. to / before
# it leaves the client); test_dot_segments_on_the_wire sends them raw.
TRAVERSAL_KEYS = [
    "../x", "a/../../b", "..%2F..%2Fetc%2Fpasswd", "../../../../../../../../etc/passwd", "./a", "a/./b",
    "a/..", "a/.", "...", "..\\..\\windows\\win.ini", "%2e%2e/%2e%2e/x", "a/b/../../../../../../tmp/x", "a/../a",
    "..;/x", "....//....//x", "../", "./",
]


@V1_V4
def test_traversal_shaped_keys_are_opaque(feitian, new_bucket, v4):
    b = new_bucket(v4=v4)
    marker = f"ft-escape-{uuid.uuid4().hex[:12]}"
    keys = TRAVERSAL_KEYS + [f"../../../../../../../../tmp/{marker}", f"../{marker}", f"../../{marker}"]
    for k in keys:
        b.put_object(k, f"content of {k}".encode())
    want = sorted(keys, key=lambda k: k.encode())
    assert keys_of(b) == want
    assert [o.key for o in b.list_objects_v2(encoding_type="").object_list] == want
    for k in keys:
        r, body = read_all(b, k)
        assert body == f"content of {k}".encode(), k
        assert b.head_object(k).content_length == len(body), k
    # "a/.." and "a" are different objects; "a/../a" is not "a".
    oss_error(lambda: b.get_object("a"), "NoSuchKey", 404)
    oss_error(lambda: b.get_object("x"), "NoSuchKey", 404)
    oss_error(lambda: b.get_object("etc/passwd"), "NoSuchKey", 404)
    # Nothing was written outside the object store: no file carries the marker's name.
    assert not os.path.exists(f"/tmp/{marker}")
    for root in {feitian.data_dir, feitian.data_dir.parent}:
        for _dirpath, dirnames, filenames in os.walk(root):
            assert marker not in filenames and marker not in dirnames, f"a key became a file under {root}"
    assert [o.key for o in b.list_objects(prefix="../").object_list] == sorted(
        [k for k in keys if k.startswith("../")], key=lambda k: k.encode())
    r = b.batch_delete_objects(keys[:10])
    assert sorted(r.deleted_keys) == sorted(keys[:10])
    for k in keys[10:]:
        b.delete_object(k)
    assert keys_of(b) == []


def test_dot_segments_on_the_wire(feitian, new_bucket):
    """Paths with dot segments, literal or percent-encoded, as http.client sends them (oss2
    cannot: requests resolves /bucket/.. to / before sending). A server may store the key the
    path spells or refuse, but never resolve the path: no object under another name, nothing
    outside the bucket read."""
    b = new_bucket()
    b.put_object("b", b"innocent")
    bn = b.bucket_name
    stored, problems = {}, []
    for path, key in [(f"/{bn}/%2E%2E", ".."), (f"/{bn}/%2E", "."), (f"/{bn}/%2e%2e%2F%2e%2e%2Fw", "../../w"),
                      (f"/{bn}/../x", "../x"), (f"/{bn}/a/../../b", "a/../../b"), (f"/{bn}/./y", "./y"),
                      (f"/{bn}/a/./../z", "a/./../z"), (f"/{bn}/%2e%2e/%2e%2e/v", "../../v"), (f"/{bn}/..", ".."),
                      (f"/{bn}/a/..", "a/..")]:
        p, headers = signed(b, "PUT", key, path=path)
        r = raw_http(feitian, "PUT", p, headers, f"{path} as {key}".encode())
        if r.status == 200:
            stored[key] = f"{path} as {key}".encode()
        else:
            problems.append(refusal_problem(r, {"InvalidURI", "InvalidObjectName", "SignatureDoesNotMatch",
                                                "InvalidArgument", "AccessDenied", "MethodNotAllowed"}, path))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
    assert keys_of(b) == sorted(["b", *stored], key=lambda k: k.encode())
    for k, v in stored.items():  # read back raw: oss2 cannot name "." or ".."
        path = f"/{bn}/" + "".join("%2E" if c == "." else urllib.parse.quote(c, safe="") for c in k)
        p, headers = signed(b, "GET", k, path=path)
        r = raw_http(feitian, "GET", p, headers)
        assert (r.status, r.body) == (200, v), (k, r.status, r.text(200))
    assert read_all(b, "b")[1] == b"innocent"
    # Reads that would leave the bucket, or the data directory, if a path were resolved.
    for path, signed_as_key in [
            ("/../../../../../../etc/passwd", False), (f"/{bn}/../../../../../../etc/passwd", True),
            ("/%2e%2e/%2e%2e/%2e%2e/etc/passwd", False), (f"/{bn}/%2e%2e%2f%2e%2e%2fetc%2fpasswd", True),
            (f"/{bn}/..%5c..%5c..%5cetc%5cpasswd", True), ("/./etc/passwd", False)]:
        headers = {}
        if signed_as_key:
            key = urllib.parse.unquote(path[len(bn) + 2:])
            _, headers = signed(b, "GET", key, path=path)
        r = raw_http(feitian, "GET", path, headers)
        assert r.error == "" and 400 <= r.status < 500, (path, r.status, r.error, r.text(200))
        assert b"root:" not in r.body, path
        assert refusal_problem(r, {"NoSuchKey", "InvalidBucketName", "NoSuchBucket", "InvalidObjectName",
                                   "InvalidURI", "AccessDenied", "SignatureDoesNotMatch"}, path) is None, path


@V1_V4
def test_invalid_object_names(feitian, new_bucket, v4):
    b = new_bucket(v4=v4)
    ok = ["k" * 1023, "é" * 511 + "k", "a" * 1020 + "中"]  # 1023 bytes each
    for k in ok:
        assert len(k.encode()) == 1023
        b.put_object(k, b"fits")
        assert read_all(b, k)[1] == b"fits"
    uid = b.init_multipart_upload("mp").upload_id
    before = state(b)
    bad = ["k" * 1024, "é" * 512, "k" * 2048, "\\leading-backslash", "/leading-slash", "//double"]
    for k in bad:
        for what, call in [("PutObject", lambda: b.put_object(k, b"x")),
                           ("AppendObject", lambda: b.append_object(k, 0, b"x")),
                           ("InitiateMultipartUpload", lambda: b.init_multipart_upload(k)),
                           ("CopyObject", lambda: b.copy_object(b.bucket_name, ok[0], k))]:
            try:
                oss_error(call, "InvalidObjectName", 400)
            except (AssertionError, pytest.fail.Exception) as err:
                raise AssertionError(f"{what} of {k[:20]!r}… ({len(k.encode())} bytes): {err}") from None
    # A key that is not UTF-8.
    for path_key in ["%FF", "a%C3", "%ED%A0%80", "%C0%AF"]:
        path, headers = signed(b, "PUT", "placeholder", path=f"/{b.bucket_name}/{path_key}")
        assert_refused(raw_http(feitian, "PUT", path, headers, b"x"), {"InvalidObjectName", "SignatureDoesNotMatch"},
                       path_key)
    assert state(b) == before
    b.abort_multipart_upload("mp", uid)


BAD_BUCKET_NAMES = ["Bad_Bucket", "ab", "-ab", "ab-", "a" * 64, "a.b", "UPPER", "%E4%B8%AD%E6%96%87", "a%20b",
                    "a..b", "xn--", "192.168.1.1"]


def test_invalid_bucket_names_on_object_requests(feitian, account):
    probe = bucket(feitian, account, name())  # only its signer is used
    problems = []
    for bad in BAD_BUCKET_NAMES:
        for method, key, params, body in [("PUT", "k", None, b"x"), ("GET", "k", None, b""), ("DELETE", "k", None, b""),
                                          ("POST", "k", {"uploads": ""}, b""),
                                          ("POST", "k", {"append": "", "position": "0"}, b"x"),
                                          ("GET", "", None, b""), ("POST", "", {"delete": ""}, b"<Delete/>")]:
            path = f"/{bad}/{urllib.parse.quote(key, safe='')}"
            path, headers = signed(probe, method, key, params, bucket_name=urllib.parse.unquote(bad), path=path)
            r = raw_http(feitian, method, path, headers, body)
            problems.append(refusal_problem(r, {"InvalidBucketName"}, f"{method} {path[:60]}"))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


# --- numbers out of range -----------------------------------------------------------------------

def test_numbers_out_of_range(feitian, new_bucket):
    b = new_bucket()
    uid = b.init_multipart_upload("mp").upload_id
    b.upload_part("mp", uid, 1, b"p")
    b.put_object("src", b"0123456789")
    before = state(b)
    problems = []
    for n in ["0", "10001", "-1", "abc", "1.5", str(2**31), str(2**64), "9" * 40, "0x1"]:
        r = send(feitian, b, "PUT", "mp", {"uploadId": uid, "partNumber": n}, body=b"x")
        problems.append(refusal_problem(r, {"InvalidArgument"}, f"UploadPart partNumber={n!r}"))
        r = send(feitian, b, "PUT", "mp", {"uploadId": uid, "partNumber": n},
                 headers={"x-oss-copy-source": f"/{b.bucket_name}/src"})
        problems.append(refusal_problem(r, {"InvalidArgument"}, f"UploadPartCopy partNumber={n!r}"))
    for n in ["-1", "abc", "1.5", "9" * 40, str(2**64)]:
        r = send(feitian, b, "POST", "ap", {"append": "", "position": n}, body=b"x")
        problems.append(refusal_problem(r, {"InvalidArgument", "PositionNotEqualToLength"},
                                        f"AppendObject position={n!r}"))
    for n in ["-1", "abc", "1.5", "9" * 40]:
        r = send(feitian, b, "GET", "", {"max-keys": n})
        problems.append(refusal_problem(r, {"InvalidArgument"}, f"ListObjects max-keys={n!r}"))
        r = send(feitian, b, "GET", "", {"list-type": "2", "max-keys": n})
        problems.append(refusal_problem(r, {"InvalidArgument"}, f"ListObjectsV2 max-keys={n!r}"))
        r = send(feitian, b, "GET", "mp", {"uploadId": uid, "max-parts": n})
        problems.append(refusal_problem(r, {"InvalidArgument"}, f"ListParts max-parts={n!r}"))
        r = send(feitian, b, "GET", "", {"uploads": "", "max-uploads": n})
        problems.append(refusal_problem(r, {"InvalidArgument"}, f"ListMultipartUploads max-uploads={n!r}"))
    r = send(feitian, b, "GET", "", {"encoding-type": "base64"})
    problems.append(refusal_problem(r, {"InvalidArgument"}, "ListObjects encoding-type=base64"))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
    assert state(b) == before
