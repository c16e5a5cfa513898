"""Computes, with oss2's own signers, the signatures pinned in crates/api/src/oss_signature.rs
(writes crates/api/testdata/oss_v{1,4}_sig.txt)."""
import datetime
import pathlib
from unittest import mock

import oss2
from oss2 import auth, http

OUT = pathlib.Path(__file__).resolve().parents[3] / "crates" / "api" / "testdata"

r = http.Request("PUT", "http://my-bucket.oss-cn-hangzhou.aliyuncs.com/dir/a%20b.txt",
                 params={"uploadId": "abc", "partNumber": "3", "max-keys": "10"},
                 headers={"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==", "Content-Type": "text/plain",
                          "x-oss-meta-author": "me", "x-oss-object-acl": "private"})
with mock.patch.object(oss2.utils, "http_date", lambda *a: "Sun, 22 Nov 2026 08:00:00 GMT"):
    auth.Auth("ak", "secret")._sign_request(r, "my-bucket", "dir/a b.txt")
(OUT / "oss_v1_sig.txt").write_text(r.headers["authorization"].split(":", 1)[1] + "\n")

r = http.Request("PUT", "http://my-bucket.oss-cn-hangzhou.aliyuncs.com/dir/a%20b%2Bc.txt",
                 params={"uploadId": "abc/def", "partNumber": "3", "acl": ""},
                 headers={"Content-Type": "text/plain", "x-oss-meta-a": "b", "host": "my-bucket.oss-cn-hangzhou.aliyuncs.com"},
                 region="cn-hangzhou", product="oss")


class Fixed(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return datetime.datetime(2026, 11, 22, 8, 0, 0)


with mock.patch.object(auth, "datetime", Fixed):
    auth.AuthV4("ak", "secret")._sign_request(r, "my-bucket", "dir/a b+c.txt")
(OUT / "oss_v4_sig.txt").write_text(r.headers["authorization"].rsplit("Signature=", 1)[1] + "\n")
print((OUT / "oss_v1_sig.txt").read_text(), (OUT / "oss_v4_sig.txt").read_text())
