import json
import sqlite3

import pytest

from feitian_harness import FeitianProcess


@pytest.fixture(scope="session")
def feitian():
    """One feitian for the whole session (tests that restart or kill make their own)."""
    f = FeitianProcess().start()
    yield f
    f.cleanup()


@pytest.fixture
def own_feitian():
    """A private feitian a test may restart, kill or misconfigure."""
    made = []

    def make(**kw):
        f = FeitianProcess(**kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.cleanup()


# --- clients ------------------------------------------------------------------------------

def v3_config(f, key=None, **kw):
    from alibabacloud_tea_openapi import models as om
    ak, secret = key or f.credentials()
    return om.Config(access_key_id=ak, access_key_secret=secret, endpoint=f.endpoint,
                     protocol="http", region_id="cn-hangzhou", **kw)


def ecs_v3(f, key=None):
    from alibabacloud_ecs20140526.client import Client
    return Client(v3_config(f, key))


def vpc_v3(f, key=None):
    from alibabacloud_vpc20160428.client import Client
    return Client(v3_config(f, key))


def v1_client(f, key=None, region="cn-hangzhou"):
    from aliyunsdkcore.client import AcsClient
    ak, secret = key or f.credentials()
    return AcsClient(ak, secret, region, auto_retry=False)


def v3_raw(client, action, version, query=None, body_type="json"):
    """The official V3 client's generic call: the raw answer, before any model sees it."""
    from alibabacloud_tea_openapi import utils_models as um
    from darabonba.runtime import RuntimeOptions
    params = um.Params(action=action, version=version, protocol="HTTP", pathname="/", method="POST",
                       auth_type="AK", style="RPC", req_body_type="formData", body_type=body_type)
    req = um.OpenApiRequest(query={k: str(v) for k, v in (query or {}).items()})
    return client.call_api(params, req, RuntimeOptions())["body"]


def v1_common(f, action, version, params=None, fmt="JSON", product="Ecs", endpoint=None, key=None, region="cn-hangzhou"):
    """aliyun-python-sdk-core's CommonRequest; returns (status, body bytes)."""
    from aliyunsdkcore.request import CommonRequest
    r = CommonRequest(domain=endpoint or f.endpoint, version=version, action_name=action, product=product)
    r.set_method("POST")
    r.set_accept_format(fmt)
    for k, v in (params or {}).items():
        r.add_query_param(k, v)
    status, _headers, body, _exc = v1_client(f, key, region)._implementation_of_do_action(r)
    return status, body


# --- checks -------------------------------------------------------------------------------

def model_round_trip(model_cls, body):
    """`Model().from_map(body).to_map()` must keep every key the server sent: a key the
    official model does not know is a misspelling."""
    out = model_cls().from_map(body).to_map()
    missing = []

    def walk(a, b, path):
        if isinstance(a, dict):
            for k, v in a.items():
                if not isinstance(b, dict) or k not in b:
                    missing.append(path + k)
                else:
                    walk(v, b[k], path + k + ".")
        elif isinstance(a, list):
            for i, v in enumerate(a):
                if isinstance(b, list) and i < len(b):
                    walk(v, b[i], f"{path}[{i}].")

    walk(body, out, "")
    assert not missing, f"keys the {model_cls.__name__} model does not know: {missing}"
    return out


def xml_to_obj(text, list_tags=()):
    """Parses an RPC XML answer into the JSON shape: elements named in `list_tags` become
    lists, repeated elements too."""
    import xml.etree.ElementTree as ET

    def conv(e):
        kids = list(e)
        if not kids:
            return e.text or ""
        out = {}
        for k in kids:
            v = conv(k)
            if k.tag in out or k.tag in list_tags:
                out.setdefault(k.tag, [])
                if not isinstance(out[k.tag], list):
                    out[k.tag] = [out[k.tag]]
                out[k.tag].append(v)
            else:
                out[k.tag] = v
        return out

    root = ET.fromstring(text)
    return root.tag, conv(root)


def db_snapshot(f):
    """Every row of every table, for 'nothing changed' checks (read-only, beside the server)."""
    con = sqlite3.connect(f"file:{f.data_dir / 'meta.db'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    finally:
        con.close()


def without_request_id(obj):
    if isinstance(obj, (bytes, str)):
        obj = json.loads(obj)
    obj = dict(obj)
    obj.pop("RequestId", None)
    return obj


# --- per-test accounts and short calls ----------------------------------------------------------

import itertools
import time
import uuid

_names = itertools.count()


@pytest.fixture
def account(feitian):
    """A fresh account (its key pair) so that a test sees only its own resources."""
    return feitian.new_account(f"t{next(_names)}-{uuid.uuid4().hex[:8]}")


class Api:
    """Calls one product through its official V3 client, returning the raw answer checked
    against the SDK's response model."""

    def __init__(self, f, key, product):
        self.f, self.key, self.product = f, key, product
        self.client = (vpc_v3 if product == "vpc" else ecs_v3)(f, key)
        self.version = "2016-04-28" if product == "vpc" else "2014-05-26"
        import importlib
        self.models = importlib.import_module(
            "alibabacloud_vpc20160428.models" if product == "vpc" else "alibabacloud_ecs20140526.models")

    def __call__(self, action, **params):
        params.setdefault("RegionId", "cn-hangzhou")
        body = v3_raw(self.client, action, self.version, {k: v for k, v in params.items() if v is not None})
        model_round_trip(getattr(self.models, f"{action}ResponseBody"), body)
        return body

    def error(self, action, **params):
        from alibabacloud_tea_openapi.exceptions import ClientException
        with pytest.raises(ClientException) as e:
            self(action, **params)
        assert 400 <= e.value.status_code < 500
        return e.value


def wait_for(fn, timeout=10, what="condition", pause=0.05):
    """Polls `fn` every `pause` seconds until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(pause)
    raise AssertionError(f"timed out waiting for {what}")
