"""Done-when 1 and 5: `feitian up` and its credentials, restarts, clean shutdown, more
accounts (made while feitian runs), the account behind every key, and `feitian doctor`."""
import json
import os
import signal
import stat
import urllib.request

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException

from conftest import ecs_v3, v3_raw

ECS = "2014-05-26"


def test_first_start_prints_and_writes_root_credentials_once(own_feitian):
    f = own_feitian().start()
    out = f.stdout()
    ak, secret = f.credentials()
    assert ak.startswith("LTAI") and len(ak) == 24 and len(secret) == 30
    assert json.dumps({"access_key_id": ak, "access_key_secret": secret}, separators=(",", ":")) in out
    assert f"endpoint: http://{f.endpoint}" in out
    mode = stat.S_IMODE(os.stat(f.data_dir / "credentials.json").st_mode)
    assert mode == 0o600
    v3_raw(ecs_v3(f), "DescribeRegions", ECS)
    assert f.stop() == 0, "SIGTERM must stop feitian cleanly"
    f.start()
    assert secret not in f.stdout(), "the secret is shown only on the first start"
    assert f.credentials() == (ak, secret)
    v3_raw(ecs_v3(f), "DescribeRegions", ECS)


def test_root_key_from_environment(own_feitian):
    env = {"FEITIAN_ROOT_ACCESS_KEY_ID": "LTAIfeitianscripted01", "FEITIAN_ROOT_ACCESS_KEY_SECRET": "scripted-secret"}
    f = own_feitian(env=env).start()
    assert f.credentials() == ("LTAIfeitianscripted01", "scripted-secret")
    v3_raw(ecs_v3(f, ("LTAIfeitianscripted01", "scripted-secret")), "DescribeRegions", ECS)


def test_one_variable_alone_is_refused(own_feitian):
    f = own_feitian(env={"FEITIAN_ROOT_ACCESS_KEY_ID": "LTAIonlyhalf"})
    with pytest.raises(RuntimeError, match="FEITIAN_ROOT_ACCESS_KEY_SECRET"):
        f.start()


def test_a_second_feitian_on_the_same_data_dir_is_refused(own_feitian):
    a = own_feitian().start()
    b = own_feitian(data_dir=a.data_dir)
    with pytest.raises(RuntimeError, match="already running"):
        b.start()


def test_accounts_made_while_running_work_at_once(feitian):
    key_b = feitian.new_account("tenant-b")
    v3_raw(ecs_v3(feitian, key_b), "DescribeRegions", ECS)
    extra = json.loads(feitian.cli("accesskey", "create", "--account", "tenant-b").stdout.strip())
    v3_raw(ecs_v3(feitian, (extra["access_key_id"], extra["access_key_secret"])), "DescribeRegions", ECS)
    listed = feitian.cli("account", "list").stdout
    assert "root\t" in listed and "tenant-b\t" in listed
    # A key is bound to its own secret: tenant-b's id with root's secret is refused.
    _, root_secret = feitian.credentials()
    with pytest.raises(ClientException) as e:
        v3_raw(ecs_v3(feitian, (key_b[0], root_secret)), "DescribeRegions", ECS)
    assert e.value.code == "SignatureDoesNotMatch"


def test_account_cli_errors(feitian):
    r = feitian.cli("account", "create", "tenant-b2", check=True)
    r = feitian.cli("account", "create", "tenant-b2", check=False)
    assert r.returncode != 0 and "already exists" in r.stderr
    r = feitian.cli("accesskey", "create", "--account", "nobody", check=False)
    assert r.returncode != 0 and "feitian account create nobody" in r.stderr
    r = feitian.cli("account", "create", "../etc", check=False)
    assert r.returncode != 0 and "not valid" in r.stderr


def test_every_key_resolves_to_its_own_account(feitian):
    """The protocol layer's isolation check: the store maps each AccessKey to exactly one
    account, and services see only that account (resources arrive with the ECS issue; the
    store's scope test covers the filtering itself)."""
    import sqlite3
    ak_root, _ = feitian.credentials()
    ak_c, _ = feitian.new_account("tenant-c")
    con = sqlite3.connect(f"file:{feitian.data_dir / 'meta.db'}?mode=ro", uri=True)
    owners = dict(con.execute("SELECT k.id, a.name FROM access_keys k JOIN accounts a ON a.id = k.account_id"))
    con.close()
    assert owners[ak_root] == "root" and owners[ak_c] == "tenant-c"


def test_healthz_and_doctor(feitian):
    with urllib.request.urlopen(f"http://{feitian.endpoint}/healthz", timeout=5) as r:
        assert r.status == 200 and r.read() == b"ok\n"
    r = feitian.cli("doctor")
    for name in ("root", "qemu", "kvm", "nftables", "netns", "disk"):
        assert name in r.stdout, r.stdout


def test_kill_9_and_restart_keeps_accounts(own_feitian):
    f = own_feitian().start()
    key = f.new_account("survivor")
    v3_raw(ecs_v3(f, key), "DescribeRegions", ECS)
    assert f.kill9() == -signal.SIGKILL
    f.start()
    v3_raw(ecs_v3(f, key), "DescribeRegions", ECS)
