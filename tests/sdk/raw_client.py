"""Raw RPC requests, signed with V1 (HMAC-SHA1) by hand and sent over http.client.

Unlike the SDKs, this client sends exactly the pairs it is given: a name twice, a value of
any size or content, a protocol parameter left out or wrong. The signature is computed the
way the server recomputes it (docs/protocol.md): every pair but `Signature`, query and form
alike, sorted by name then value, RFC 3986-encoded, joined with `&`; the string to sign is
`METHOD&%2F&encode(that)`; HMAC-SHA1 under `secret&`, base64.
"""
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

VPC = "2016-04-28"
ECS = "2014-05-26"


def enc(s):
    """RFC 3986: only A-Z a-z 0-9 - _ . ~ stay as they are."""
    return urllib.parse.quote(s, safe="~")


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def string_to_sign(method, pairs):
    canon = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted((k, v) for k, v in pairs if k != "Signature"))
    return f"{method}&%2F&{enc(canon)}"


def sign_v1(secret, method, pairs):
    sts = string_to_sign(method, pairs)
    return base64.b64encode(hmac.new((secret + "&").encode(), sts.encode(), hashlib.sha1).digest()).decode()


def protocol_pairs(ak, version, action, fmt="JSON"):
    """The common parameters of a V1 request (a fresh nonce each time), `Signature` excluded."""
    pairs = [("Action", action), ("Version", version), ("Format", fmt), ("AccessKeyId", ak),
             ("SignatureMethod", "HMAC-SHA1"), ("SignatureVersion", "1.0"),
             ("SignatureNonce", uuid.uuid4().hex), ("Timestamp", now_iso())]
    return [(k, v) for k, v in pairs if v is not None]


def encode_pairs(pairs):
    return "&".join(f"{enc(k)}={enc(v)}" for k, v in pairs)


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes
    elapsed: float
    error: str = ""  # a transport failure (timeout, reset): no answer at all

    def text(self, limit=600):
        t = self.body.decode("utf-8", "replace")
        return t if len(t) <= limit else t[:limit] + f"... ({len(t)} chars)"

    def parsed(self):
        """The error document as a dict (JSON, or the children of XML `<Error>`); raises when
        the body is neither."""
        ct = self.headers.get("content-type", "")
        if ct.startswith("text/xml") or ct.startswith("application/xml"):
            root = ET.fromstring(self.body)
            return {"_root": root.tag, **{c.tag: (c.text or "") for c in root}}
        return json.loads(self.body)


@dataclass
class Request:
    """One request as it goes on the wire. `query` and `form` are ordered pairs, duplicates
    allowed; `raw_query` (already encoded) replaces the encoding of `query` when given."""
    method: str = "GET"
    query: list = field(default_factory=list)
    form: list = field(default_factory=list)
    raw_query: str = None
    body: bytes = None
    content_type: str = None
    headers: dict = field(default_factory=dict)

    def sign(self, secret, signed_pairs=None):
        """Adds `Signature` to the query (GET) or to the form (POST with a form)."""
        pairs = signed_pairs if signed_pairs is not None else self.query + self.form
        s = sign_v1(secret, self.method, pairs)
        (self.form if self.form else self.query).append(("Signature", s))
        return self


class RawRpc:
    def __init__(self, endpoint, timeout=10.0):
        self.host, port = endpoint.rsplit(":", 1)
        self.port = int(port)
        self.timeout = timeout

    def send(self, req: Request) -> Reply:
        path = "/"
        q = req.raw_query if req.raw_query is not None else encode_pairs(req.query)
        if q:
            path += "?" + q
        headers = dict(req.headers)
        body = req.body
        if body is None and (req.form or req.method == "POST"):
            body = encode_pairs(req.form).encode()
            headers.setdefault("Content-Type", req.content_type or "application/x-www-form-urlencoded")
        elif req.content_type:
            headers.setdefault("Content-Type", req.content_type)
        headers.setdefault("Connection", "close")
        t0 = time.monotonic()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            try:
                conn.request(req.method, path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer (413) before reading a huge body: read that answer
            r = conn.getresponse()
            data = r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data, time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - a hang or reset is a finding, not a crash
            return Reply(0, {}, b"", time.monotonic() - t0, error=f"{type(e).__name__}: {e}")
        finally:
            conn.close()

    def call(self, key, version, action, params=(), method="GET", fmt="JSON", split=False):
        """A correctly signed call; `params` are (name, value) pairs sent as given.
        POST puts everything in the form body, or only `params` when `split`."""
        ak, secret = key
        proto = protocol_pairs(ak, version, action, fmt)
        params = list(params.items()) if isinstance(params, dict) else list(params)
        if method == "GET":
            req = Request("GET", query=proto + params)
        elif split:
            req = Request("POST", query=proto, form=params)
        else:
            req = Request("POST", form=proto + params)
        return self.send(req.sign(secret))

    def ok(self, key, version, action, **params):
        """A call that must succeed; its JSON answer."""
        r = self.call(key, version, action, params)
        assert r.status == 200, f"{action} {params}: {r.status} {r.text()}"
        return json.loads(r.body)
