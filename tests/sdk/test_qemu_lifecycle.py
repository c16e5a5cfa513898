"""Issue 5, real instances (done-when 3 and 4): the lifecycle of a QEMU guest through the API
(stop, start, reboot, a poweroff from inside, delete), a feitian killed with -9 that adopts the
guests it left running, twenty instances from one RunInstances, and two VPCs with the same
CIDR and the same private address that never see each other.

One feitian (qemu driver, EIP pool 198.18.66.0/24: no other module uses it) serves the whole
module. Deadlines are upper bounds for waiting only (guests boot under TCG on small hosts);
no test asserts how long anything took. At the end, with every instance deleted, no VPC
namespace may be left while feitian runs, and nothing at all once it has stopped."""
import concurrent.futures
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Api
from feitian_harness import FeitianProcess
from qemu_helpers import IMAGES, Net, needs_vms, qemu_feitian, ssh, ssh_ok

pytestmark = needs_vms

POOL = "198.18.66.0/24"
SSH_READY = "feitian-guest: ssh ready"
# Every network of this module, so that the last test can delete every instance it made.
NETS = []


@pytest.fixture(scope="module")
def cloud():
    f, finish = qemu_feitian(POOL)
    yield f
    left = finish()
    assert left == [], f"left on the host after shutdown: {left}"


# --- helpers ---------------------------------------------------------------------------------

def wait_until(fn, timeout, what, pause=1.0):
    """Polls `fn` (gently: guests need the CPU) until it returns something true."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def new_net(f, **kw):
    net = Net(f, **kw)
    NETS.append(net)
    return net


class SecondVpc(Net):
    """Another VPC (with its vSwitch, an SSH group) in the same account as `other`."""

    def __init__(self, other, cidr, vsw):
        self.f, self.key, self.keyfile = other.f, other.key, other.keyfile
        self.vpc, self.ecs = Api(self.f, self.key, "vpc"), Api(self.f, self.key, "ecs")
        self.vpc_id = self.vpc("CreateVpc", CidrBlock=cidr)["VpcId"]
        wait_until(lambda: self.vpc("DescribeVpcs", VpcId=self.vpc_id)["Vpcs"]["Vpc"][0]["Status"] == "Available",
                   30, "the VPC", pause=0.2)
        self.vsw = self.vpc("CreateVSwitch", VpcId=self.vpc_id, CidrBlock=vsw, ZoneId="cn-hangzhou-h")["VSwitchId"]
        wait_until(lambda: self.vpc("DescribeVSwitchAttributes", VSwitchId=self.vsw)["Status"] == "Available",
                   30, "the vSwitch", pause=0.2)
        self.sg = self.ecs("CreateSecurityGroup", VpcId=self.vpc_id)["SecurityGroupId"]
        self.ecs("AuthorizeSecurityGroup", SecurityGroupId=self.sg, IpProtocol="tcp", PortRange="22/22",
                 SourceCidrIp="0.0.0.0/0")
        NETS.append(self)


def reconnect(net):
    """New clients after a restart (feitian listens on a new port)."""
    net.vpc, net.ecs = Api(net.f, net.key, "vpc"), Api(net.f, net.key, "ecs")


def statuses(net, ids):
    """Instance id -> status, for those of `ids` that exist."""
    out = {}
    for i in range(0, len(ids), 50):
        chunk = ids[i:i + 50]
        q = {f"InstanceId.{n}": iid for n, iid in enumerate(chunk, 1)}
        got = net.ecs("DescribeInstanceStatus", PageSize=50, **q)["InstanceStatuses"]["InstanceStatus"]
        out.update({s["InstanceId"]: s["Status"] for s in got})
    return out


def wait_status(net, ids, want, timeout=300):
    def done():
        s = statuses(net, ids)
        return all(s.get(i) == want for i in ids)

    try:
        wait_until(done, timeout, f"{len(ids)} instance(s) {want}", pause=2)
    except AssertionError as e:
        raise AssertionError(f"{e}; statuses: {statuses(net, ids)}") from None


def described(net):
    """Every instance of the account (DescribeInstances, pages of 100)."""
    out, page = [], 1
    while True:
        r = net.ecs("DescribeInstances", PageSize=100, PageNumber=page)
        out += r["Instances"]["Instance"]
        if len(out) >= r["TotalCount"] or not r["Instances"]["Instance"]:
            return out
        page += 1


def eip(net, iid):
    """Allocates an EIP and associates it with `iid`: (address, allocation id)."""
    e = net.vpc("AllocateEipAddress")
    net.vpc("AssociateEipAddress", AllocationId=e["AllocationId"], InstanceId=iid)
    return e["EipAddress"], e["AllocationId"]


def qemu_pid(f, iid):
    """The pid of the instance's live QEMU (from its pid file, checked like the harness does)."""
    try:
        pid = int((Path(f.data_dir) / "instances" / iid / "qemu.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if f"process=feitian-{iid}" in cmdline else None


def pid_alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def instance_dir(f, iid):
    return Path(f.data_dir) / "instances" / iid


def boot_id(net, ip):
    return ssh_ok(net, ip, "cat /proc/sys/kernel/random/boot_id").strip()


def reaches(net, ip, command):
    """Runs `command` in the guest at `ip` (SSH must work): whether it succeeded there."""
    out = ssh_ok(net, ip, f"if {command} >/dev/null 2>&1 </dev/null; then echo REACHED; else echo UNREACHED; fi")
    return out.split()[-1] == "REACHED"


def netns_of(f):
    """This feitian's network namespaces (`ip netns list`, filtered by its prefix)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return sorted(l.split()[0] for l in out.splitlines() if l.split() and l.split()[0].startswith(f.host_prefix()))


def metadata(net, ip, what):
    return ssh_ok(net, ip, f"wget -qO- http://100.100.100.200/latest/meta-data/{what}").strip()


# --- 1. one instance's life ------------------------------------------------------------------

def test_lifecycle(cloud):
    """Running with SSH; the system disk survives Stop + Start; Stopped has no QEMU and no
    SSH; Reboot boots again (a new boot id); `poweroff` inside makes it Stopped on its own;
    a forced DeleteInstance of a running one removes it and its QEMU, and frees its EIP."""
    net = new_net(cloud)
    [iid] = net.run(InstanceName="life", HostName="life-1")
    ip, alloc = eip(net, iid)
    wait_status(net, [iid], "Running")
    ssh_ok(net, ip, "echo kept-on-the-system-disk > /root/persist && sync")
    boot1 = boot_id(net, ip)
    assert SSH_READY in net.console(iid)
    pid = qemu_pid(cloud, iid)
    assert pid is not None

    # Stop: Stopped, no QEMU, no SSH.
    net.ecs("StopInstance", InstanceId=iid)
    wait_status(net, [iid], "Stopped", timeout=120)
    assert qemu_pid(cloud, iid) is None and not pid_alive(pid)
    assert f"qemu pid {pid}" not in cloud.host_leftovers()
    try:
        r = ssh(net, ip, "true", timeout=30)
        assert r.returncode != 0, "SSH works into a Stopped instance"
    except subprocess.TimeoutExpired:
        pass

    # Start: the same disk, a new boot.
    net.ecs("StartInstance", InstanceId=iid)
    wait_status(net, [iid], "Running")
    assert ssh_ok(net, ip, "cat /root/persist").strip() == "kept-on-the-system-disk"
    boot2 = boot_id(net, ip)
    assert boot2 != boot1

    # Reboot: Stopping at once (the API's answer), then Running again on a new boot.
    net.ecs("RebootInstance", InstanceId=iid)
    assert net.status(iid) in ("Stopping", "Starting")
    wait_status(net, [iid], "Running")
    boot3 = boot_id(net, ip)
    assert boot3 not in (boot1, boot2)
    assert ssh_ok(net, ip, "cat /root/persist").strip() == "kept-on-the-system-disk"
    assert SSH_READY in net.console(iid)

    # A poweroff typed inside: the instance becomes Stopped on its own.
    pid = qemu_pid(cloud, iid)
    ssh_ok(net, ip, "setsid sh -c 'sleep 1; poweroff' >/dev/null 2>&1 </dev/null &")
    wait_status(net, [iid], "Stopped", timeout=180)
    assert not pid_alive(pid) and qemu_pid(cloud, iid) is None
    assert "feitian-guest: shutting down" in net.console(iid)

    # A forced stop powers the guest off without asking it: no shutdown on its console, and
    # no system event (the stop was asked for).
    net.ecs("StartInstance", InstanceId=iid)
    wait_status(net, [iid], "Running")
    net.ecs("StopInstance", InstanceId=iid, ForceStop="true")
    wait_status(net, [iid], "Stopped", timeout=120)
    assert SSH_READY in net.console(iid) and "feitian-guest: shutting down" not in net.console(iid)
    assert net.ecs("DescribeInstanceHistoryEvents", InstanceId=iid)["TotalCount"] == 0

    # Start once more, then delete it running (Force): gone from the API, its QEMU and its
    # directory gone from the host, its EIP free again.
    net.ecs("StartInstance", InstanceId=iid)
    wait_status(net, [iid], "Running")
    assert boot_id(net, ip) not in (boot1, boot2, boot3)
    pid = qemu_pid(cloud, iid)
    assert pid is not None
    net.ecs("DeleteInstance", InstanceId=iid, Force="true")
    assert iid not in [i["InstanceId"] for i in described(net)]
    wait_until(lambda: f"qemu pid {pid}" not in cloud.host_leftovers() and not pid_alive(pid),
               60, f"the QEMU of deleted {iid} to end")
    wait_until(lambda: not instance_dir(cloud, iid).exists(), 60, f"the host directory of deleted {iid} to go")
    e = net.vpc("DescribeEipAddresses", AllocationId=alloc)["EipAddresses"]["EipAddress"][0]
    assert (e["Status"], e["InstanceId"]) == ("Available", "")
    net.vpc("ReleaseEipAddress", AllocationId=alloc)


# --- 2 and 3. two VPCs with the same addresses; a restart that adopts the guests ------------

class Overlap:
    pass


@pytest.fixture(scope="module")
def overlap(cloud):
    """One account, two VPCs 192.168.0.0/16 with a vSwitch 192.168.1.0/24 each; A1 at
    192.168.1.10 in A, B1 at 192.168.1.10 and B2 at 192.168.1.20 (listening on tcp 5000,
    answering its host name) in B; each with an EIP. The groups allow tcp 5000 and icmp from
    192.168.0.0/16, so only the VPC boundary can keep A1 from B2."""
    o = Overlap()
    o.a = new_net(cloud)
    o.b = SecondVpc(o.a, "192.168.0.0/16", "192.168.1.0/24")
    for n in (o.a, o.b):
        n.ecs("AuthorizeSecurityGroup", SecurityGroupId=n.sg, IpProtocol="tcp", PortRange="5000/5000",
              SourceCidrIp="192.168.0.0/16")
        n.ecs("AuthorizeSecurityGroup", SecurityGroupId=n.sg, IpProtocol="icmp", PortRange="-1/-1",
              SourceCidrIp="192.168.0.0/16")
    [o.a1] = o.a.run(PrivateIpAddress="192.168.1.10", HostName="a-one")
    [o.b1] = o.b.run(PrivateIpAddress="192.168.1.10", HostName="b-one")
    [o.b2] = o.b.run(PrivateIpAddress="192.168.1.20", HostName="b-two")
    o.net = {o.a1: o.a, o.b1: o.b, o.b2: o.b}
    o.ip = {iid: eip(net, iid)[0] for iid, net in o.net.items()}
    wait_status(o.a, [o.a1], "Running")
    wait_status(o.b, [o.b1, o.b2], "Running")
    o.boot = {iid: boot_id(net, o.ip[iid]) for iid, net in o.net.items()}
    ssh_ok(o.b, o.ip[o.b2], "setsid nc -ll -p 5000 -e /bin/hostname >/dev/null 2>&1 </dev/null &")
    return o


def check_isolation(o):
    """B1 reaches B2 (ping, tcp 5000); A1, at B1's address in the other VPC, reaches nothing."""
    assert ssh_ok(o.b, o.ip[o.b1], "nc -w 5 192.168.1.20 5000 </dev/null").strip() == "b-two"
    assert reaches(o.b, o.ip[o.b1], "ping -c 1 -w 5 192.168.1.20")
    assert not reaches(o.a, o.ip[o.a1], "nc -w 3 192.168.1.20 5000")
    assert not reaches(o.a, o.ip[o.a1], "ping -c 2 -w 4 192.168.1.20")


def test_overlapping_vpcs(overlap):
    """Done-when 3: the same CIDR and the same private address in two VPCs; each instance is
    reached through its own EIP, the metadata service tells each its own id, and nothing
    crosses from one VPC to the other."""
    o = overlap
    assert o.a.vpc_id != o.b.vpc_id
    for iid, net in ((o.a1, o.a), (o.b1, o.b)):
        [inst] = net.ecs("DescribeInstances", InstanceIds=f'["{iid}"]')["Instances"]["Instance"]
        assert inst["VpcAttributes"]["PrivateIpAddress"]["IpAddress"] == ["192.168.1.10"]
        assert inst["VpcAttributes"]["VpcId"] == net.vpc_id
    assert len(set(o.ip.values())) == 3
    for iid, net in o.net.items():
        assert metadata(net, o.ip[iid], "instance-id") == iid
        assert metadata(net, o.ip[iid], "vpc-id") == net.vpc_id
        assert ssh_ok(net, o.ip[iid], "hostname").strip() == {o.a1: "a-one", o.b1: "b-one", o.b2: "b-two"}[iid]
    check_isolation(o)


def test_restart_adoption(cloud, overlap):
    """A feitian killed with -9 leaves its guests running; started again on the same data
    directory it adopts them: still Running, the same QEMUs, the same boots (their processes
    and listeners alive), reachable through the same EIPs, with the metadata service and the
    VPC boundary as before, and still under its control (StopInstance works)."""
    o = overlap
    sleeper = ssh_ok(o.a, o.ip[o.a1], "setsid sleep 100000 >/dev/null 2>&1 </dev/null & echo $!").strip()
    assert sleeper.isdigit()
    pids = {iid: qemu_pid(cloud, iid) for iid in o.net}
    assert all(pids.values()), pids

    cloud.kill9()
    assert all(pid_alive(p) for p in pids.values()), "a guest died with feitian"
    cloud.start(timeout=300)
    for n in (o.a, o.b):
        reconnect(n)

    assert statuses(o.a, [o.a1]) == {o.a1: "Running"}
    assert statuses(o.b, [o.b1, o.b2]) == {o.b1: "Running", o.b2: "Running"}
    for iid, net in o.net.items():
        assert boot_id(net, o.ip[iid]) == o.boot[iid], f"{iid} was booted again instead of adopted"
        assert metadata(net, o.ip[iid], "instance-id") == iid
    assert "sleep" in ssh_ok(o.a, o.ip[o.a1], f"cat /proc/{sleeper}/cmdline")
    check_isolation(o)
    # Several reconciler passes later: still Running, still the same QEMUs.
    assert statuses(o.a, [o.a1]) == {o.a1: "Running"}
    assert statuses(o.b, [o.b1, o.b2]) == {o.b1: "Running", o.b2: "Running"}
    assert {iid: qemu_pid(cloud, iid) for iid in o.net} == pids

    # An adopted guest is still feitian's to stop.
    o.a.ecs("StopInstance", InstanceId=o.a1)
    wait_status(o.a, [o.a1], "Stopped", timeout=120)
    assert not pid_alive(pids[o.a1])


# --- 4. twenty at once ------------------------------------------------------------------------

def test_twenty_at_once(cloud):
    """Done-when 4: RunInstances Amount=20 in one call; all reach Running and boot; then half
    are stopped and half deleted (Force), all at once; each ends in its state; then all go."""
    net = new_net(cloud, cidr="10.0.0.0/16", vsw="10.0.0.0/24")
    ids = net.run(Amount=20, InstanceName="many")
    assert len(set(ids)) == 20
    wait_status(net, ids, "Running", timeout=1800)
    wait_until(lambda: all(SSH_READY in net.console(i) for i in ids), 600, "every guest to report ssh ready",
               pause=3)
    insts = described(net)
    assert sorted(i["InstanceId"] for i in insts) == sorted(ids)
    addrs = [i["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0] for i in insts]
    assert len(set(addrs)) == 20
    pids = {i: qemu_pid(cloud, i) for i in ids}
    assert all(pids.values()) and len(set(pids.values())) == 20, pids

    stop, delete = ids[0::2], ids[1::2]

    def call(action, iid, **kw):
        # One client per call: the calls run on many threads at once.
        return Api(cloud, net.key, "ecs")(action, InstanceId=iid, **kw)

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as ex:
        futures = [ex.submit(call, "StopInstance", i) for i in stop]
        futures += [ex.submit(call, "DeleteInstance", i, Force="true") for i in delete]
        for fu in futures:
            fu.result()

    assert sorted(i["InstanceId"] for i in described(net)) == sorted(stop)
    wait_status(net, stop, "Stopped", timeout=300)
    wait_until(lambda: not any(pid_alive(pids[i]) for i in ids), 120, "every QEMU of the twenty to end")
    wait_until(lambda: not any(instance_dir(cloud, i).exists() for i in delete), 60,
               "the host directories of the deleted instances to go")
    assert all(instance_dir(cloud, i).exists() for i in stop), "a stopped instance lost its disk"

    net.ecs("DeleteInstances", **{f"InstanceId.{n}": i for n, i in enumerate(stop, 1)})
    r = net.ecs("DescribeInstances", PageSize=100)
    assert (r["TotalCount"], r["Instances"]["Instance"]) == (0, [])
    wait_until(lambda: not any(instance_dir(cloud, i).exists() for i in ids), 60,
               "the host directories of all twenty to go")


# --- 5. nothing left behind -------------------------------------------------------------------

def test_no_vpc_namespace_after_the_last_instance(cloud):
    """Once every instance is deleted (feitian still running), only the public namespace of
    this feitian remains: each VPC's namespace went with its last instance."""
    for net in NETS:
        reconnect(net)
        for inst in described(net):
            net.ecs("DeleteInstance", InstanceId=inst["InstanceId"], Force="true")
    wait_until(lambda: cloud.qemu_pids() == [], 120, "every QEMU to end")
    pub = f"{cloud.host_prefix()}-pub"
    wait_until(lambda: netns_of(cloud) == [pub], 60, f"only {pub} to remain")
    assert [l for l in cloud.host_leftovers() if l.startswith(("qemu", "nft"))] == []


def test_a_shutdown_racing_a_start_leaves_nothing():
    """feitian stopped (SIGTERM) while an instance is starting: the start launches no guest
    after the shutdown looked, and nothing is left on the host."""
    f, finish = qemu_feitian("198.18.68.0/24")
    try:
        net = Net(f)
        net.run()
        time.sleep(0.1)
    finally:
        left = finish()
    assert left == [], f"left on the host: {left}"


def test_a_failed_start_removes_the_host_networking_it_made():
    """A start that fails after the host networking was made (here: the guest image's root
    disk is damaged, so it cannot be imported into its RAF volume) removes it again, and says
    what went wrong."""
    tmp = Path(tempfile.mkdtemp(prefix="feitian-qemu-"))
    images = tmp / "images"
    shutil.copytree(IMAGES, images)
    for rootfs in images.glob("*/rootfs.qcow2"):
        rootfs.write_bytes(b"not a qcow2 image" * 64)
    cfg = tmp / "feitian.toml"
    cfg.write_text(f'eip_pool = "198.18.69.0/24"\n[compute]\ndriver = "qemu"\nimages_dir = "{images}"\n')
    f = FeitianProcess(config=cfg, env={"FEITIAN_COMPUTE_DRIVER": "qemu"})
    try:
        with pytest.raises(RuntimeError) as failed:
            f.start(timeout=900)
        assert "image" in str(failed.value), str(failed.value)
        assert "stopping instances and removing host networking" in f.stdout()
        left = [x for x in f.host_leftovers() if f.host_prefix() in x]
        assert left == [], f"left on the host after a failed start: {left}"
    finally:
        f.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
