"""Shared by the real-instance tests (issue 5): a feitian on the qemu driver, a VPC with SSH
allowed, SSH into guests. Needs root, qemu-system-x86_64, nftables, iproute2 and ssh
(scripts/test installs them; CI runs as root); without them the tests using this module are
skipped, loudly (`pytestmark = needs_vms`)."""
import base64
import os
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


def qemu_feitian(pool):
    """Starts a feitian on the qemu driver with EIP pool `pool` (each test module its own).
    Returns it and a function that stops it and returns what it left on the host."""
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
        self.key = f.new_account(f"q{time.monotonic_ns()}")
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


def ssh(net, ip, command, timeout=30):
    return subprocess.run(
        ["ssh", "-i", str(net.keyfile), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{ip}", command],
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


