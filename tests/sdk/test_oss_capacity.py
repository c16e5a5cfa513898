"""Issue 14: a bucket's storage capacity, through oss2's own calls and models
(`set_bucket_storage_capacity(BucketUserQos(storage_capacity=N))`, `PUT/GET /?qos`): N in
GB, -1 (the default) for no limit. Only the owner sets or reads it; a bad N is
InvalidArgument; a write that would take the bucket beyond it is refused with
InsufficientStorageSpace (403) and changes nothing, while writes that do not grow the
bucket (deletes, smaller overwrites, empty objects) still pass.

The unit is the GB, too big to fill in a test with real bytes; the refusal is shown with
the smallest capacity, 0, on a bucket holding real MiBs (a capacity below what a bucket
holds is allowed and deletes nothing). The crossing of a 1 GB capacity byte for byte, and
two uploads racing for the last room, are tested in process
(crates/oss/tests/bucket_capacity.rs)."""
import uuid

import oss2
import pytest
from oss2.models import BucketUserQos, PartInfo

MIB = 1 << 20


def endpoint(f):
    return f"http://{f.endpoint}"


def bucket(f, key, n, v4=False):
    a = oss2.AuthV4(*key) if v4 else oss2.Auth(*key)
    return oss2.Bucket(a, endpoint(f), n, region="cn-hangzhou")


def oss_error(fn, code, status):
    with pytest.raises(oss2.exceptions.OssError) as e:
        fn()
    assert (e.value.code, e.value.status) == (code, status), e.value
    assert e.value.request_id
    return e.value


@pytest.fixture
def own_bucket(feitian, account):
    made = []

    def make(acl=oss2.BUCKET_ACL_PRIVATE, v4=False):
        b = bucket(feitian, account, f"ft-{uuid.uuid4().hex[:12]}", v4)
        b.create_bucket(acl)
        made.append(b)
        return b

    yield make
    for b in made:
        b.set_bucket_storage_capacity(BucketUserQos(storage_capacity=-1))
        for u in oss2.MultipartUploadIterator(b):
            b.abort_multipart_upload(u.key, u.upload_id)
        for o in oss2.ObjectIterator(b):
            b.delete_object(o.key)
        b.delete_bucket()


def capacity(b):
    r = b.get_bucket_storage_capacity()
    assert isinstance(r, oss2.models.GetBucketUserQosResult)
    return r.storage_capacity


@pytest.mark.parametrize("v4", [False, True], ids=["v1", "v4"])
def test_set_and_get_round_trip(own_bucket, v4):
    b = own_bucket(v4=v4)
    assert capacity(b) == -1  # the default: no limit
    for n in (1, 0, 10240, 8589934591, -1):
        r = b.set_bucket_storage_capacity(BucketUserQos(storage_capacity=n))
        assert r.status == 200
        assert capacity(b) == n


def test_only_the_owner(feitian, own_bucket):
    b = own_bucket(acl=oss2.BUCKET_ACL_PUBLIC_READ_WRITE)  # even a bucket anyone may write to
    b.set_bucket_storage_capacity(BucketUserQos(storage_capacity=5))
    other = feitian.new_account(f"cap-{uuid.uuid4().hex[:8]}")
    theirs = bucket(feitian, other, b.bucket_name)
    anon = oss2.Bucket(oss2.AnonymousAuth(), endpoint(feitian), b.bucket_name)
    for s in (theirs, anon):
        oss_error(lambda: s.set_bucket_storage_capacity(BucketUserQos(storage_capacity=-1)), "AccessDenied", 403)
        oss_error(s.get_bucket_storage_capacity, "AccessDenied", 403)
    assert capacity(b) == 5
    ghost = bucket(feitian, other, f"ft-{uuid.uuid4().hex[:12]}")
    oss_error(ghost.get_bucket_storage_capacity, "NoSuchBucket", 404)


def test_bad_values_are_invalid_argument(own_bucket):
    b = own_bucket()
    b.set_bucket_storage_capacity(BucketUserQos(storage_capacity=3))
    for bad in (-2, -100, "1.5", "ten", None, "", 2**63, 8589934592):
        e = oss_error(lambda: b.set_bucket_storage_capacity(BucketUserQos(storage_capacity=bad)),
                      "InvalidArgument", 400)
        assert "StorageCapacity" in e.message
    assert capacity(b) == 3


def test_a_full_bucket_refuses_growth_and_nothing_else(own_bucket):
    b = own_bucket()
    b.put_object("a", b"a" * (3 * MIB))
    b.put_object("b", b"b" * MIB)
    b.append_object("log", 0, b"l" * MIB)
    up = b.init_multipart_upload("mp").upload_id
    p1 = b.upload_part("mp", up, 1, b"1" * (2 * MIB))
    b.set_bucket_storage_capacity(BucketUserQos(storage_capacity=0))
    before = {o.key: (o.size, o.etag) for o in oss2.ObjectIterator(b)}

    full = ("InsufficientStorageSpace", 403)
    oss_error(lambda: b.put_object("new", b"x"), *full)
    oss_error(lambda: b.put_object("b", b"y" * (MIB + 1)), *full)  # an overwrite that grows
    oss_error(lambda: b.append_object("log", MIB, b"more"), *full)
    oss_error(lambda: b.copy_object(b.bucket_name, "b", "b-copy"), *full)
    oss_error(lambda: b.upload_part("mp", up, 2, b"2" * MIB), *full)
    # Nothing changed: the same objects, the same bytes.
    assert {o.key: (o.size, o.etag) for o in oss2.ObjectIterator(b)} == before
    assert b.get_object("log").read() == b"l" * MIB

    # Writes that do not grow the bucket pass.
    b.put_object("empty", b"")
    b.put_object("a", b"A" * MIB)  # an overwrite with fewer bytes
    b.complete_multipart_upload("mp", up, [PartInfo(1, p1.etag)])  # its part was counted already
    b.delete_object("b")
    assert b.get_object("a").read() == b"A" * MIB

    # Room again: 1 GB is far more than the bucket holds.
    b.set_bucket_storage_capacity(BucketUserQos(storage_capacity=1))
    b.put_object("new", b"x" * MIB)
    b.copy_object(b.bucket_name, "new", "new-copy")
    assert b.get_object("new-copy").read() == b"x" * MIB
