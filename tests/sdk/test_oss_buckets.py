"""Issue 4, first step: OSS buckets on the edge port, through oss2 (signature V1 and V4):
create, list, info, location, ACL, delete, names, ownership and anonymous access, and the
authentication errors. Objects are tested in test_oss_objects.py."""
import uuid

import oss2
import pytest


def endpoint(f):
    return f"http://{f.endpoint}"


def auth(key, v4=False):
    return oss2.AuthV4(*key) if v4 else oss2.Auth(*key)


def bucket(f, key, name, v4=False):
    return oss2.Bucket(auth(key, v4), endpoint(f), name, region="cn-hangzhou")


def name():
    return f"ft-{uuid.uuid4().hex[:12]}"


def oss_error(fn):
    with pytest.raises(oss2.exceptions.OssError) as e:
        fn()
    assert e.value.request_id and len(e.value.request_id) == 24
    return e.value


@pytest.mark.parametrize("v4", [False, True], ids=["v1", "v4"])
def test_bucket_lifecycle(feitian, account, v4):
    n = name()
    b = bucket(feitian, account, n, v4)
    b.create_bucket(oss2.BUCKET_ACL_PRIVATE)
    svc = oss2.Service(auth(account, v4), endpoint(feitian), region="cn-hangzhou")
    assert [x.name for x in svc.list_buckets().buckets] == [n]
    info = b.get_bucket_info()
    assert (info.name, info.acl.grant, info.location, info.storage_class) == (n, "private", "oss-cn-hangzhou", "Standard")
    assert info.extranet_endpoint == "oss-cn-hangzhou.aliyuncs.com"
    assert b.get_bucket_location().location == "oss-cn-hangzhou"
    assert b.get_bucket_acl().acl == "private"
    b.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    assert b.get_bucket_acl().acl == "public-read"
    b.create_bucket()  # one's own bucket again: fine
    b.delete_bucket()
    assert svc.list_buckets().buckets == []
    assert oss_error(b.get_bucket_info).code == "NoSuchBucket"
    assert oss_error(b.get_bucket_info).status == 404


def test_list_buckets_paging_and_prefix(feitian, account):
    names = sorted(name() for _ in range(5))
    for n in names:
        bucket(feitian, account, n).create_bucket()
    svc = oss2.Service(auth(account), endpoint(feitian))
    page = svc.list_buckets(max_keys=2)
    assert [x.name for x in page.buckets] == names[:2] and page.is_truncated
    assert [x.name for x in svc.list_buckets(marker=page.next_marker, max_keys=10).buckets] == names[2:]
    assert [x.name for x in oss2.BucketIterator(svc, max_keys=2)] == names
    assert [x.name for x in svc.list_buckets(prefix=names[3]).buckets] == [names[3]]


def test_ownership_names_and_anonymous(feitian, account):
    n = name()
    bucket(feitian, account, n).create_bucket(oss2.BUCKET_ACL_PRIVATE)
    other = feitian.new_account(f"oss-{uuid.uuid4().hex[:8]}")
    e = oss_error(lambda: bucket(feitian, other, n).create_bucket())
    assert (e.code, e.status) == ("BucketAlreadyExists", 409)
    for call in (lambda b: b.get_bucket_acl(), lambda b: b.get_bucket_info(), lambda b: b.delete_bucket(),
                 lambda b: b.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)):
        e = oss_error(lambda: call(bucket(feitian, other, n)))
        assert (e.code, e.status) == ("AccessDenied", 403)
    assert [x.name for x in oss2.Service(auth(other), endpoint(feitian)).list_buckets().buckets] == []
    anon = oss2.Service(oss2.AnonymousAuth(), endpoint(feitian))
    assert oss_error(anon.list_buckets).code == "AccessDenied"
    # oss2 refuses bad names itself; the server's own check, with raw requests:
    import urllib.error
    import urllib.request
    for bad in ("A-Upper", "ab", "-dash-first", "under_score", "x" * 64):
        req = urllib.request.Request(f"{endpoint(feitian)}/{bad}", method="PUT", data=b"")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        body = e.value.read().decode()
        assert e.value.code == 400 and "<Code>InvalidBucketName</Code>" in body, (bad, body)
        assert len(e.value.headers["x-oss-request-id"]) == 24
    assert bucket(feitian, account, n).get_bucket_acl().acl == "private"


def test_authentication_errors(feitian, account):
    n = name()
    bucket(feitian, account, n).create_bucket()
    e = oss_error(lambda: bucket(feitian, (account[0], "wrong-secret"), n).get_bucket_info())
    assert (e.code, e.status) == ("SignatureDoesNotMatch", 403)
    e = oss_error(lambda: bucket(feitian, ("LTAInobodynobodynobody00", "x"), n).get_bucket_info())
    assert (e.code, e.status) == ("InvalidAccessKeyId", 403)
    e = oss_error(lambda: bucket(feitian, (account[0], "wrong-secret"), n, v4=True).get_bucket_info())
    assert (e.code, e.status) == ("SignatureDoesNotMatch", 403)


def test_rpc_still_served_beside_oss(feitian, account):
    from conftest import Api
    assert Api(feitian, account, "ecs")("DescribeRegions")["Regions"]["Region"][0]["RegionId"] == "cn-hangzhou"
