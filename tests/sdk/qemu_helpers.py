"""Shared by the real-instance tests (issue 5): a feitian on the qemu driver, a VPC with SSH
allowed, SSH into guests. Needs root, qemu-system-x86_64, nftables, iproute2 and ssh
(scripts/test installs them; CI runs as root); without them the tests using this module are
skipped, loudly (`pytestmark = needs_vms`)."""
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Api, wait_for
from feitian_harness import ROOT, FeitianProcess

IMAGE = "feitian_linux_x64_1G_alibase_20261122.vhd"
TYPE = "ecs.t5-lc1m1.small"
# The guest image is built once into the workspace's target directory and shared by runs.
IMAGES = ROOT / "target" / "feitian-images"


def missing():
    if os.geteuid() != 0:
        return "not root"
    for tool in ("qemu-system-x86_64", "qemu-img", "nft", "ip", "ssh"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None


WHY = missing()
if WHY:
    print(f"\n*** SKIPPED: real-instance tests need root, QEMU, nftables, iproute2 and ssh: {WHY} ***\n",
          file=sys.stderr)
needs_vms = pytest.mark.skipif(WHY is not None, reason=f"real instances need root and QEMU: {WHY}")


def qemu_feitian(pool, extra=""):
    """Starts a feitian on the qemu driver with EIP pool `pool` (each test module its own) and
    `extra` configuration (TOML tables after [compute]). Returns it and a function that stops
    it and returns what it left on the host."""
    tmp = Path(tempfile.mkdtemp(prefix="feitian-qemu-"))
    cfg = tmp / "feitian.toml"
    cfg.write_text(
        f'eip_pool = "{pool}"\n'
        "[compute]\n"
        'driver = "qemu"\n'
        f'images_dir = "{IMAGES}"\n'
        "stop_grace_secs = 15\n"
        # Idle guests under TCG touch a fraction of their memory; test_twenty_at_once runs
        # twenty 1 GiB guests beside three others on a 24 GiB CI host.
        "memory_overcommit = 2.0\n"
        + extra
    )
    f = FeitianProcess(config=cfg, env={"FEITIAN_COMPUTE_DRIVER": "qemu"})
    f.start(timeout=900)  # the first run builds the image from Debian packages

    def finish():
        f.stop(timeout=180)
        left = f.host_leftovers()
        f.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
        return left

    return f, finish


class Net:
    """A VPC with one vSwitch and a security group allowing SSH, in a fresh account."""

    def __init__(self, f, cidr="192.168.0.0/16", vsw="192.168.1.0/24", ssh_from="0.0.0.0/0"):
        self.f = f
        self.account = f"q{time.monotonic_ns()}"
        self.key = f.new_account(self.account)
        self.vpc = Api(f, self.key, "vpc")
        self.ecs = Api(f, self.key, "ecs")
        self.vpc_id = self.vpc("CreateVpc", CidrBlock=cidr)["VpcId"]
        wait_for(lambda: self.vpc("DescribeVpcs", VpcId=self.vpc_id)["Vpcs"]["Vpc"][0]["Status"] == "Available")
        self.vsw = self.vpc("CreateVSwitch", VpcId=self.vpc_id, CidrBlock=vsw, ZoneId="cn-hangzhou-h")["VSwitchId"]
        wait_for(lambda: self.vpc("DescribeVSwitchAttributes", VSwitchId=self.vsw)["Status"] == "Available")
        self.sg = self.ecs("CreateSecurityGroup", VpcId=self.vpc_id)["SecurityGroupId"]
        self.ecs("AuthorizeSecurityGroup", SecurityGroupId=self.sg, IpProtocol="tcp", PortRange="22/22",
                 SourceCidrIp=ssh_from)
        made = self.ecs("CreateKeyPair", KeyPairName="login")
        self.keyfile = Path(tempfile.mkdtemp(prefix="feitian-key-")) / "login.pem"
        self.keyfile.write_text(made["PrivateKeyBody"])
        self.keyfile.chmod(0o600)

    def account_id(self):
        """The account's numeric id (what image sharing names), from `feitian account list`."""
        for line in self.f.cli("account", "list").stdout.splitlines():
            name, aid, *_ = line.split("\t")
            if name == self.account:
                return aid
        raise AssertionError(f"account {self.account} is not listed")

    def run(self, **kw):
        kw.setdefault("ImageId", IMAGE)
        kw.setdefault("InstanceType", TYPE)
        kw.setdefault("VSwitchId", self.vsw)
        kw.setdefault("SecurityGroupId", self.sg)
        kw.setdefault("KeyPairName", "login")
        return self.ecs("RunInstances", **kw)["InstanceIdSets"]["InstanceIdSet"]

    def status(self, iid):
        return self.ecs("DescribeInstanceStatus", **{"InstanceId.1": iid})["InstanceStatuses"]["InstanceStatus"][0]["Status"]

    def wait(self, iid, want, timeout=600):
        wait_for(lambda: self.status(iid) == want, timeout=timeout, what=f"{iid} {want}")

    def eip(self, iid):
        e = self.vpc("AllocateEipAddress")
        self.vpc("AssociateEipAddress", AllocationId=e["AllocationId"], InstanceId=iid)
        return e["EipAddress"]

    def console(self, iid):
        out = self.ecs("GetInstanceConsoleOutput", InstanceId=iid)
        return base64.b64decode(out["ConsoleOutput"]).decode(errors="replace")


def ssh_options(net):
    """The options every OpenSSH client (ssh, scp, sftp) logs in to a test guest with."""
    return ["-i", str(net.keyfile), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]


def ssh(net, ip, command, timeout=30):
    return subprocess.run(
        ["ssh", *ssh_options(net), f"root@{ip}", command],
        capture_output=True, text=True, errors="replace", timeout=timeout,
    )


def ssh_ok(net, ip, command, deadline=180):
    """Runs `command` over SSH, retrying while the guest comes up; returns its stdout."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            last = ssh(net, ip, command)
            if last.returncode == 0:
                return last.stdout
        except subprocess.TimeoutExpired as e:
            last = e
        time.sleep(2)
    raise AssertionError(f"ssh root@{ip} {command!r} never worked: {last}")




def qemu_process(f, iid):
    """What /proc says of instance `iid`'s QEMU: pid, uids, gids, groups, seccomp mode,
    no_new_privs, effective capabilities, working directory."""
    pid = int((Path(f.data_dir) / "instances" / iid / "qemu.pid").read_text())
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {
        "pid": pid,
        "uids": [int(x) for x in status["Uid"].split()],
        "gids": [int(x) for x in status["Gid"].split()],
        "groups": [int(x) for x in status["Groups"].split()],
        "seccomp": int(status["Seccomp"]),
        "no_new_privs": int(status["NoNewPrivs"]),
        "cap_eff": int(status["CapEff"], 16),
        "cwd": os.readlink(f"/proc/{pid}/cwd"),
    }


def as_user(uid, gid, code, cwd="/"):
    """Runs Python `code` as `uid`:`gid` with no other groups; returns its stdout lines."""
    def drop():
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    out = subprocess.run(["/usr/bin/python3", "-c", code], preexec_fn=drop, cwd=cwd, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def assert_confined(f, iid):
    """Issue 14, QEMU confined: instance `iid`'s QEMU is not root and has no capabilities, runs
    under QEMU's seccomp filter with no_new_privs, from its private directory (0700, its own
    uid's), and that uid can read nothing else of the data directory nor write the image.
    Returns the QEMU's uid."""
    import stat

    p = qemu_process(f, iid)
    data = Path(f.data_dir).resolve()
    d = data / "instances" / iid
    uid, gid = p["uids"][0], p["gids"][0]
    assert uid != 0 and p["uids"] == [uid] * 4, p
    assert gid != 0 and p["gids"] == [gid] * 4, p
    assert p["groups"] == [], p  # (under KVM: /dev/kvm's group; the tests run TCG)
    assert p["cap_eff"] == 0, p
    assert p["seccomp"] == 2, p  # SECCOMP_MODE_FILTER: QEMU's -sandbox is loaded
    assert p["no_new_privs"] == 1, p
    assert p["cwd"] == str(d), p
    st = d.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o700)
    for closed in (data, data / "instances"):
        assert stat.S_IMODE(closed.stat().st_mode) & 0o077 == 0, closed
    # Its disks: RAF volumes on sockets of its own (0600), or a qcow2 overlay over a
    # read-only view of the image (a driver without disk servers).
    socks = sorted(d.glob("d-*.sock"))
    for s in socks:
        st = s.lstat()
        assert stat.S_ISSOCK(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, 0o600), s
    base = "base.qcow2" if (d / "base.qcow2").exists() else "vmlinuz"
    assert socks or base == "base.qcow2", f"{iid} has neither disk sockets nor a qcow2 disk"
    # What that uid can do, tried as that uid: its own files yes; the data directory, the
    # credentials and the other instances no; its image only read.
    probe = f"""
import os
def can(f):
    try:
        f()
        return "yes"
    except PermissionError:
        return "no"
print(can(lambda: open("console.log", "rb").read(1)))
print(can(lambda: open({base!r}, "rb").read(1)))
print(can(lambda: open({base!r}, "r+b")))
print(can(lambda: open("vmlinuz", "r+b")))
print(can(lambda: os.listdir({str(data)!r})))
print(can(lambda: os.listdir({str(data / "instances")!r})))
print(can(lambda: open({str(data / "credentials.json")!r}, "rb")))
print(can(lambda: os.listdir("..")))
"""
    assert as_user(uid, gid, probe, cwd=d) == ["yes", "yes", "no", "no", "no", "no", "no", "no"]
    return uid


# A guest's loop of records on a data disk (issue 15's fault tests): block i of the disk whose
# serial is SERIAL gets "feitian-record-<i>"; `conv=fsync` makes dd fsync the device (a FLUSH
# down to the disk server) before it exits, and only then is the record logged as completed on
# the serial console, which QEMU writes to a file that outlives feitian. A failed write ends
# the loop at once (exit 4), and /tmp/loop.dev is written only when it stops as asked.
RECORD = "feitian-record-"
RECORD_LOOP = r"""
dev=
for d in /sys/block/vd*; do [ "$(cat $d/serial 2>/dev/null)" = "{serial}" ] && dev=/dev/${{d##*/}}; done
[ -n "$dev" ] || exit 3
i=0
while [ ! -e /tmp/stop ]; do
  printf '{record}%08d\n' $i | dd of=$dev bs=4096 seek=$i conv=notrunc,fsync 2>/dev/null || exit 4
  echo "completed $i" > /dev/console
  i=$((i+1))
done
echo "$dev" > /tmp/loop.dev
"""


def start_record_loop(net, ip, disk_id):
    """Starts the record loop in the guest at `ip` on the data disk `disk_id`."""
    script = RECORD_LOOP.format(serial=disk_id.removeprefix("d-")[:20], record=RECORD)
    ssh_ok(net, ip, f"cat > /tmp/loop.sh <<'EOF'\n{script}\nEOF\nsetsid sh /tmp/loop.sh >/dev/null 2>&1 </dev/null &")


def completed_records(net, iid):
    """The record numbers the guest logged as completed, from its console (the API returns its
    last 64 KiB: a contiguous tail)."""
    return [int(n) for n in re.findall(r"completed (\d+)", net.console(iid))]


def stop_record_loop(net, ip, iid):
    """Stops the loop (it must still be running: a write error would have ended it) and checks
    that every record the guest saw complete reads back from the disk. Returns how many."""
    ssh_ok(net, ip, "touch /tmp/stop")
    dev = wait_for(lambda: ssh(net, ip, "cat /tmp/loop.dev").stdout.strip(), timeout=60,
                   what="the record loop to stop as asked (a write error ends it early)", pause=1.0)
    done = completed_records(net, iid)
    last = max(done)
    assert done == list(range(done[0], last + 1)), "the console lost or reordered completions"
    # Read back in one pass; the rest of each block is zeros on a fresh disk.
    out = ssh_ok(net, ip, f"dd if={dev} bs=4096 count={last + 1} 2>/dev/null | tr -d '\\000'")
    found = {int(m) for m in re.findall(RECORD + r"(\d{8})", out)}
    missing = sorted(set(range(last + 1)) - found)
    assert not missing, f"{len(missing)} completed records are gone: {missing[:20]}"
    return last + 1
