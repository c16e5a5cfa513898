"""kill -9 of feitian in the middle of 200 concurrent RunInstances / CreateVSwitch /
AuthorizeSecurityGroup calls, then a restart on the same data directory (DESIGN.md: "A
crash anywhere leaves state that a restart reconciles; no request that returned success is
lost").

After the restart: every call that returned success is there (and its instances and
vSwitches are driven to Running / Available by the reconcilers), nothing is half-made (no
instance without its network interface, disk or group membership, no orphan address, no
table row without its `resources` row or the other way round), and repeating a call with
the same ClientToken gives back the same resource, for the calls that succeeded as for the
ones the crash cut off, without making a duplicate."""
import random
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from conftest import Api, wait_for

IMAGE = "feitian_linux_x64_1G_alibase_20261122.vhd"
ZONE = "cn-hangzhou-h"

N_RUN, N_VSW, N_RULE = 80, 60, 60  # 200 calls; within the quotas (150 vSwitches/VPC, 100 rules/group)
THREADS = 32
KILL_AFTER = 75  # completed calls before the kill: some done, many still in flight or queued


def _is_api_error(exc):
    """An answer from the server (an error envelope), as opposed to a dead connection."""
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
    return isinstance(exc, (ClientException, ServerException))


def _plan(net, tag):
    """The 200 calls, shuffled with a fixed seed so that the three kinds interleave."""
    calls = []
    for i in range(N_RUN):
        calls.append(dict(kind="run", action="RunInstances", product="ecs", params=dict(
            ImageId=IMAGE, InstanceType="ecs.t5-lc1m1.small", VSwitchId=net["vsw"],
            SecurityGroupId=net["sg"], Amount=1 + i % 2, InstanceName=f"crash-{i}",
            ClientToken=f"run-{tag}-{i}")))
    for i in range(N_VSW):
        calls.append(dict(kind="vsw", action="CreateVSwitch", product="vpc", params=dict(
            VpcId=net["vpc_id"], CidrBlock=f"10.{i + 1}.0.0/24", ZoneId=ZONE,
            VSwitchName=f"crash-{i}", ClientToken=f"vsw-{tag}-{i}")))
    for i in range(N_RULE):
        calls.append(dict(kind="rule", action="AuthorizeSecurityGroup", product="ecs", params=dict(
            SecurityGroupId=net["sg"], IpProtocol="tcp", PortRange=f"{2000 + i}/{2000 + i}",
            SourceCidrIp="0.0.0.0/0", ClientToken=f"rule-{tag}-{i}")))
    random.Random(20260505).shuffle(calls)
    return calls


def _ids(call, body):
    if call["kind"] == "run":
        return body["InstanceIdSets"]["InstanceIdSet"]
    if call["kind"] == "vsw":
        return [body["VSwitchId"]]
    return []


def _all_instances(ecs, vpc_id):
    out, page = [], 1
    while True:
        got = ecs("DescribeInstances", VpcId=vpc_id, PageSize=100, PageNumber=page)
        out += got["Instances"]["Instance"]
        if len(out) >= got["TotalCount"] or not got["Instances"]["Instance"]:
            return out
        page += 1


def _ports(ecs, sg):
    perms = ecs("DescribeSecurityGroupAttribute", SecurityGroupId=sg)["Permissions"]["Permission"]
    return sorted(p["PortRange"] for p in perms)


def _check_store(f):
    """Nothing half-made, read straight from the store (read-only, beside the server)."""
    con = sqlite3.connect(f"file:{f.data_dir / 'meta.db'}?mode=ro", uri=True)
    try:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        problems = []

        def none(what, sql):
            rows = q(sql)
            if rows:
                problems.append(f"{what}: {rows[:5]}{' …' if len(rows) > 5 else ''} ({len(rows)} in all)")

        none("instances without exactly one network interface",
             "SELECT i.id, COUNT(n.id) FROM instances i LEFT JOIN network_interfaces n ON n.instance_id = i.id "
             "GROUP BY i.id HAVING COUNT(n.id) != 1")
        none("network interfaces of no instance",
             "SELECT n.id, n.instance_id FROM network_interfaces n LEFT JOIN instances i ON i.id = n.instance_id "
             "WHERE i.id IS NULL")
        none("instances whose interface is in no security group",
             "SELECT i.id FROM instances i JOIN network_interfaces n ON n.instance_id = i.id "
             "WHERE NOT EXISTS (SELECT 1 FROM eni_security_groups g WHERE g.eni_id = n.id)")
        none("instances without a system disk",
             "SELECT i.id FROM instances i WHERE NOT EXISTS "
             "(SELECT 1 FROM disks d WHERE d.instance_id = i.id AND d.disk_type = 'system')")
        none("network interfaces whose primary address is not held by them",
             "SELECT n.id, n.primary_ip FROM network_interfaces n WHERE NOT EXISTS (SELECT 1 FROM private_ips p "
             "WHERE p.vswitch_id = n.vswitch_id AND p.ip_address = n.primary_ip AND p.holder_id = n.id)")
        none("orphan addresses (held by no network interface)",
             "SELECT p.vswitch_id, p.ip_address, p.holder_id FROM private_ips p "
             "LEFT JOIN network_interfaces n ON n.id = p.holder_id WHERE n.id IS NULL")
        none("addresses held twice in one vSwitch",
             "SELECT vswitch_id, primary_ip, COUNT(*) FROM network_interfaces GROUP BY vswitch_id, primary_ip "
             "HAVING COUNT(*) > 1")
        none("interfaces in a vSwitch that does not exist",
             "SELECT n.id FROM network_interfaces n LEFT JOIN vswitches s ON s.id = n.vswitch_id WHERE s.id IS NULL")
        none("group memberships of a missing interface or group",
             "SELECT g.eni_id, g.security_group_id FROM eni_security_groups g "
             "LEFT JOIN network_interfaces n ON n.id = g.eni_id LEFT JOIN security_groups s ON s.id = g.security_group_id "
             "WHERE n.id IS NULL OR s.id IS NULL")
        none("rules of a missing group",
             "SELECT r.id FROM security_group_rules r LEFT JOIN security_groups s ON s.id = r.security_group_id "
             "WHERE s.id IS NULL")
        kinds = {"instances": "instance", "network_interfaces": "eni", "disks": "disk", "vswitches": "vswitch",
                 "vpcs": "vpc", "security_groups": "security_group", "eips": "eip", "route_tables": "route_table"}
        for table, kind in kinds.items():
            none(f"{table} rows without their resources row",
                 f"SELECT t.id FROM {table} t LEFT JOIN resources r ON r.id = t.id AND r.kind = '{kind}' "
                 "WHERE r.id IS NULL")
            none(f"resources of kind {kind} without their {table} row",
                 f"SELECT r.id FROM resources r LEFT JOIN {table} t ON t.id = r.id WHERE r.kind = '{kind}' "
                 "AND t.id IS NULL")
        none("vSwitches without their System route entry",
             "SELECT s.id, s.cidr_block FROM vswitches s JOIN vpcs v ON v.id = s.vpc_id WHERE NOT EXISTS "
             "(SELECT 1 FROM route_entries e WHERE e.route_table_id = v.route_table_id "
             "AND e.destination = s.cidr_block AND e.kind = 'System')")
        none("System route entries of no vSwitch",
             "SELECT e.id, e.destination FROM route_entries e JOIN vpcs v ON v.route_table_id = e.route_table_id "
             "WHERE e.kind = 'System' AND NOT EXISTS "
             "(SELECT 1 FROM vswitches s WHERE s.vpc_id = v.id AND s.cidr_block = e.destination)")
        none("tags of a missing resource",
             "SELECT t.resource_id FROM tags t LEFT JOIN resources r ON r.id = t.resource_id WHERE r.id IS NULL")
        assert not problems, "half-made state after the crash:\n" + "\n".join(problems)
        return {t: q(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("instances", "vswitches", "security_group_rules")}
    finally:
        con.close()


def test_kill9_during_concurrent_creates(own_feitian):
    t0 = time.monotonic()
    f = own_feitian().start()
    key = f.new_account(f"crash-{uuid.uuid4().hex[:8]}")
    vpc, ecs = Api(f, key, "vpc"), Api(f, key, "ecs")
    vpc_id = vpc("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vpc_id)["Vpcs"]["Vpc"][0]["Status"] == "Available", what="VPC Available")
    vsw = vpc("CreateVSwitch", VpcId=vpc_id, CidrBlock="10.0.0.0/16", ZoneId=ZONE)["VSwitchId"]
    wait_for(lambda: vpc("DescribeVSwitchAttributes", VSwitchId=vsw)["Status"] == "Available", what="vSwitch Available")
    sg = ecs("CreateSecurityGroup", VpcId=vpc_id)["SecurityGroupId"]
    net = dict(vpc_id=vpc_id, vsw=vsw, sg=sg)
    calls = _plan(net, uuid.uuid4().hex[:8])

    # --- the burst, and the kill in the middle of it ----------------------------------------
    local = threading.local()
    done = [0]
    lock = threading.Lock()
    enough = threading.Event()

    def client(product):
        cache = getattr(local, "clients", None)
        if cache is None:
            cache = local.clients = {}
        if product not in cache:
            cache[product] = Api(f, key, product)
        return cache[product]

    def one(call):
        try:
            body = client(call["product"])(call["action"], **call["params"])
            call.update(outcome="ok", ids=_ids(call, body))
        except Exception as e:  # noqa: BLE001 - a dead server shows as any kind of connection error
            call.update(outcome="api-error" if _is_api_error(e) else "cut", error=f"{type(e).__name__}: {e}")
        with lock:
            done[0] += 1
            if done[0] >= KILL_AFTER:
                enough.set()

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(one, c) for c in calls]
        assert enough.wait(60), "the calls did not get going"
        killed_after = done[0]
        f.kill9()
        for fu in futures:
            fu.result()

    ok = [c for c in calls if c["outcome"] == "ok"]
    cut = [c for c in calls if c["outcome"] == "cut"]
    api_errors = [c for c in calls if c["outcome"] == "api-error"]
    summary = (f"{len(ok)} succeeded, {len(cut)} cut off, {len(api_errors)} API errors; kill after {killed_after} "
               f"completions; by kind ok/cut: " + ", ".join(
                   f"{k} {sum(c['outcome'] == 'ok' for c in calls if c['kind'] == k)}/"
                   f"{sum(c['outcome'] == 'cut' for c in calls if c['kind'] == k)}" for k in ("run", "vsw", "rule")))
    # A call the dead server refused never reached it; the others were in flight at the kill.
    in_flight = [c for c in cut if "Connection refused" not in c["error"]]
    summary += f"; {len(in_flight)} of the cut-off calls were in flight"
    print(summary)
    # Before the kill every call is valid: an error answer is a server bug (e.g. a busy store).
    assert not api_errors, [(c["action"], c["params"], c["error"]) for c in api_errors[:5]]
    # The kill must have fallen in the middle of the burst, or this tested nothing.
    assert len(ok) >= 20 and len(cut) >= 20 and len(in_flight) >= 5, summary

    # --- restart on the same data directory ----------------------------------------------
    f.start()
    vpc, ecs = Api(f, key, "vpc"), Api(f, key, "ecs")
    store_counts = _check_store(f)
    promised = {i for c in ok if c["kind"] == "run" for i in c["ids"]}
    # More than promised: calls the kill cut off after their commit (their repeat finds them).
    print(f"after the restart the store holds {store_counts['instances']} instances for {len(promised)} promised, "
          f"{store_counts['vswitches'] - 1} vSwitches for {sum(c['kind'] == 'vsw' for c in ok)} promised, "
          f"{store_counts['security_group_rules']} rules for {sum(c['kind'] == 'rule' for c in ok)} promised")

    # Every call that returned success is there and gets finished by the reconcilers.
    listed = {x["InstanceId"]: x for x in _all_instances(ecs, vpc_id)}
    assert not promised - set(listed), f"instances lost by the crash: {sorted(promised - set(listed))}"

    def all_running():
        got = _all_instances(ecs, vpc_id)
        return all(x["Status"] == "Running" for x in got) and got

    got = wait_for(all_running, timeout=60, what="every instance Running after the restart")
    for x in got:
        nics = x["NetworkInterfaces"]["NetworkInterface"]
        assert len(nics) == 1 and x["VpcAttributes"]["PrivateIpAddress"]["IpAddress"], x["InstanceId"]
        assert x["SecurityGroupIds"]["SecurityGroupId"] == [sg], x["InstanceId"]
    for c in ok:
        if c["kind"] == "vsw":
            (sid,) = c["ids"]
            wait_for(lambda: vpc("DescribeVSwitchAttributes", VSwitchId=sid)["Status"] == "Available",
                     timeout=20, what=f"{sid} Available after the restart")
            assert vpc("DescribeVSwitchAttributes", VSwitchId=sid)["CidrBlock"] == c["params"]["CidrBlock"]
    ports = _ports(ecs, sg)
    for c in ok:
        if c["kind"] == "rule":
            assert c["params"]["PortRange"] in ports, f"rule lost by the crash: {c['params']}"
    assert len(ports) == len(set(ports)), "a rule stored twice"

    # --- repeating every ClientToken call: same answer, no duplicate ---------------------------
    for c in calls:
        if c["kind"] == "rule":
            ecs(c["action"], **c["params"])  # identical rules are idempotent by identity
            continue
        api = ecs if c["product"] == "ecs" else vpc
        first = _ids(c, api(c["action"], **c["params"]))
        second = _ids(c, api(c["action"], **c["params"]))
        if c["outcome"] == "ok":
            assert first == c["ids"], f"{c['action']} {c['params']['ClientToken']}: {c['ids']} then {first}"
        assert second == first, f"{c['action']} {c['params']['ClientToken']} ({c['outcome']}): {first} then {second}"
        c["final"] = first

    run_ids = [i for c in calls if c["kind"] == "run" for i in c["final"]]
    assert len(run_ids) == len(set(run_ids)) == sum(c["params"]["Amount"] for c in calls if c["kind"] == "run")
    listed = {x["InstanceId"] for x in _all_instances(ecs, vpc_id)}
    assert listed == set(run_ids), f"extra {sorted(listed - set(run_ids))[:5]}, missing {sorted(set(run_ids) - listed)[:5]}"
    vsw_ids = {c["final"][0] for c in calls if c["kind"] == "vsw"}
    assert len(vsw_ids) == N_VSW
    listed_vsw = set()
    page = 1
    while True:
        got = vpc("DescribeVSwitches", VpcId=vpc_id, PageSize=50, PageNumber=page)
        listed_vsw |= {s["VSwitchId"] for s in got["VSwitches"]["VSwitch"]}
        if len(listed_vsw) >= got["TotalCount"] or not got["VSwitches"]["VSwitch"]:
            break
        page += 1
    assert listed_vsw == vsw_ids | {vsw}
    assert _ports(ecs, sg) == sorted(f"{2000 + i}/{2000 + i}" for i in range(N_RULE))
    counts = _check_store(f)
    assert counts == {"instances": len(run_ids), "vswitches": N_VSW + 1, "security_group_rules": N_RULE}, counts
    assert store_counts["instances"] <= counts["instances"]
    wait_for(all_running, timeout=60, what="every instance Running after the repeats")
    print(f"done in {time.monotonic() - t0:.1f}s")
