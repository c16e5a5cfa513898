"""Issue 16, done-when 5: Debian's `packer` 1.6.6 with the `alicloud-ecs` builder, configured
as docs/packer.md tells users (the edge as `HTTP_PROXY`, a JSON template, nothing else
changed), builds an image from each system image feitian offers: a file provisioner and a
shell provisioner (one script, one inline) write marker files, and an instance launched from
the result has them. Packer's cleanup leaves nothing behind in the account: no VPC, vSwitch,
security group, key pair, EIP or instance beyond what was there before the build.

Packer SSHes to the EIP it allocates from the host, as the other real-instance tests do: the
EIP pool is routed from the host into feitian's public namespace (docs/architecture.md). The
SDK inside Packer sends its HTTPS Location lookup through the proxy too (HTTPS_PROXY), where
the edge refuses the CONNECT at once, so nothing in the build ever leaves the machine.

One feitian (qemu driver, EIP pool 198.18.93.0/24: no other module uses it) serves the
module; each system image gets one `packer build` (minutes under TCG) whose result serves
both tests of that image. Nothing may be left on the host afterwards."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import wait_for
from qemu_helpers import IMAGE, Net, needs_vms, qemu_feitian, ssh_ok
from test_qemu_debian import DEBIAN

POOL = "198.18.93.0/24"
TEMPLATE = Path(__file__).resolve().parent / "packer" / "alicloud-ecs.json"
# A whole build under TCG: a boot of the source image, provisioning, a clean stop and the
# image; generous, since a hung build is killed and reported.
BUILD_TIMEOUT = 3600


def packer_missing():
    exe = shutil.which("packer")
    if exe is None:
        return "packer not found (Debian's package `packer`; scripts/test installs it)"
    out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=60).stdout
    if "Packer v1.6.6" not in out:
        return f"this test drives Debian's Packer 1.6.6, found {out.strip()!r}"
    return None


WHY = packer_missing()
if WHY:
    print(f"\n*** SKIPPED: the Packer tests need Packer 1.6.6: {WHY} ***\n", file=sys.stderr)
needs_packer = pytest.mark.skipif(WHY is not None, reason=WHY or "")

pytestmark = [needs_vms, needs_packer]


@pytest.fixture(scope="module")
def cloud():
    f, finish = qemu_feitian(POOL)
    yield f
    left = finish()
    assert left == [], f"left on the host after shutdown: {left}"


def resources(net):
    """The ids of everything of the kinds Packer makes, in the account of `net`."""
    def ids(api, action, path, key):
        body = api(action, PageSize=50)
        for p in path:
            body = body[p]
        return sorted(x[key] for x in body)

    return {
        "vpcs": ids(net.vpc, "DescribeVpcs", ["Vpcs", "Vpc"], "VpcId"),
        "vswitches": ids(net.vpc, "DescribeVSwitches", ["VSwitches", "VSwitch"], "VSwitchId"),
        "security groups": ids(net.ecs, "DescribeSecurityGroups", ["SecurityGroups", "SecurityGroup"],
                               "SecurityGroupId"),
        "key pairs": ids(net.ecs, "DescribeKeyPairs", ["KeyPairs", "KeyPair"], "KeyPairName"),
        "eips": ids(net.vpc, "DescribeEipAddresses", ["EipAddresses", "EipAddress"], "AllocationId"),
        "instances": ids(net.ecs, "DescribeInstances", ["Instances", "Instance"], "InstanceId"),
    }


@dataclass(repr=False)  # pytest shows a failed assertion's operands: not the whole output
class Build:
    """One `packer build` of the template from one system image, and what it was given."""
    net: Net
    source: str
    image_name: str
    run_id: str
    uploaded: str
    before: dict
    returncode: int
    output: str

    def tail(self, lines=80):
        return "\n".join(self.output.splitlines()[-lines:])

    def __repr__(self):
        return f"Build({self.source} as {self.image_name}: exit {self.returncode})"


def run_packer(f, workdir, variables, timeout=BUILD_TIMEOUT):
    """`packer build` of the template with `variables`, with the edge as its proxy; returns
    (exit code, output). Packer and the plugin processes it starts share a process group of
    their own, which is stopped if the build outlives `timeout`."""
    var_file = workdir / "vars.json"
    var_file.write_text(json.dumps(variables))
    var_file.chmod(0o600)  # it holds the account's secret
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    env.update({
        # The one line docs/packer.md asks of users: the SDK's default host names
        # (ecs-cn-hangzhou.aliyuncs.com) reach the edge, over plain HTTP.
        "HTTP_PROXY": f"http://{f.endpoint}",
        # The SDK's HTTPS Location lookup: refused at the edge at once, never dialled directly.
        "HTTPS_PROXY": f"http://{f.endpoint}",
        "CHECKPOINT_DISABLE": "1",  # no version check against hashicorp.com
        "HOME": str(workdir),  # Packer's ~/.packer.d and caches stay in the test's directory
        "TMPDIR": str(workdir),
        "PACKER_CACHE_DIR": str(workdir / "cache"),
        "PACKER_LOG": "1",
        "PACKER_LOG_PATH": str(workdir / "packer.log"),
    })
    p = subprocess.Popen(["packer", "build", "-color=false", f"-var-file={var_file}", str(TEMPLATE)],
                         cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace", start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(p)
        out, _ = p.communicate()
        raise AssertionError(f"packer build did not finish in {timeout} s:\n{out[-8000:]}")
    finally:
        if p.poll() is None:
            stop_group(p)
    return p.returncode, out


def stop_group(p):
    """Stops the process group `p` leads (Packer and its plugins), politely, then for good."""
    for sig, grace in ((signal.SIGINT, 120), (signal.SIGKILL, 10)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module", params=[IMAGE, DEBIAN], ids=["feitian-linux", "debian-12"])
def build(cloud, request):
    """One build per system image, in a fresh account that already holds a VPC, a vSwitch, a
    group and a key pair of its own (Net's), so 'nothing left behind' is measured against
    resources that are not Packer's."""
    source = request.param
    net = Net(cloud)
    run_id = uuid.uuid4().hex[:12]
    workdir = Path(tempfile.mkdtemp(prefix="feitian-packer-"))
    try:
        uploaded = f"uploaded by the file provisioner, run {run_id}\n"
        (workdir / "upload.txt").write_text(uploaded)
        ak, secret = net.key
        image_name = f"packer-{source.split('_')[0]}-{run_id}"
        before = resources(net)
        started = time.monotonic()
        rc, out = run_packer(cloud, workdir, {
            "access_key": ak, "secret_key": secret, "source_image": source, "image_name": image_name,
            "upload": str(workdir / "upload.txt"), "run_id": run_id,
        })
        print(f"\npacker build from {source}: exit {rc} after {time.monotonic() - started:.0f} s", file=sys.stderr)
        yield Build(net, source, image_name, run_id, uploaded, before, rc, out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_packer_builds_and_cleans_up(build):
    """The build went through every step up to the image, and its cleanup (which runs even
    when a step fails) removed everything it made."""
    out = build.output
    for step in ("Creating temporary keypair", "Creating vpc", "Creating vswitch", "Creating security group",
                 "Creating instance", "Allocating eip", "Starting instance", "Using ssh communicator",
                 "Uploading", "Provisioning with shell script", "Stopping instance"):
        assert step in out, f"packer never said {step!r}:\n{build.tail()}"
    # Packer has returned, so its deletes returned; what is asynchronous behind them must not
    # leave anything listed for long.
    wait_for(lambda: resources(build.net) == build.before, timeout=120, pause=1.0,
             what=f"the account to hold only what it held before the build: {build.before}")
    # The image part starts here: Packer's CreateImage, its wait in DescribeImages, AddTags and
    # ModifyImageSharePermission.
    assert build.returncode == 0, f"packer build from {build.source} failed:\n{build.tail()}"
    assert "alicloud-ecs: Alicloud images were created" in out, build.tail()


def test_an_instance_from_the_image_has_what_the_provisioners_wrote(build):
    """The image part: everything from here on needs CreateImage and custom images in
    DescribeImages. The image is listed as the account's own and Available; an instance
    launched from it with the SDK has the uploaded file and both shell markers."""
    # The image part, all of it.
    assert build.returncode == 0, f"no image: packer build from {build.source} failed:\n{build.tail(12)}"
    net = build.net
    images = net.ecs("DescribeImages", ImageName=build.image_name, ImageOwnerAlias="self")["Images"]["Image"]
    assert [(i["ImageName"], i["Status"], i["ImageOwnerAlias"]) for i in images] == [
        (build.image_name, "Available", "self")], images
    image_id = images[0]["ImageId"]
    [iid] = net.run(ImageId=image_id)
    eip = net.vpc("AllocateEipAddress")
    try:
        net.vpc("AssociateEipAddress", AllocationId=eip["AllocationId"], InstanceId=iid)
        net.wait(iid, "Running")
        got = ssh_ok(net, eip["EipAddress"], "cat /root/uploaded; cat /root/from-script; cat /root/from-inline",
                     deadline=600)
        assert got == build.uploaded + f"script {build.run_id} as 0\ninline {build.run_id}\n", got
    finally:
        net.vpc("UnassociateEipAddress", AllocationId=eip["AllocationId"], InstanceId=iid)
        wait_for(lambda: eip_status(net, eip["AllocationId"]) == "Available", timeout=120, pause=1.0,
                 what="the EIP to be let go")
        net.vpc("ReleaseEipAddress", AllocationId=eip["AllocationId"])
        net.ecs("DeleteInstance", InstanceId=iid, Force="true")
    net.ecs("DeleteImage", ImageId=image_id)
    assert net.ecs("DescribeImages", ImageName=build.image_name, ImageOwnerAlias="self")["TotalCount"] == 0


def eip_status(net, allocation_id):
    return net.vpc("DescribeEipAddresses", AllocationId=allocation_id)["EipAddresses"]["EipAddress"][0]["Status"]
