"""Issue 15, done-when 2 (first part): `kill -9` of feitian while a real guest writes, record
after record, to a cloud disk with an fsync after each one; then a restart.

The guest logs every record it completed (the write and its fsync returned) on its serial
console, which QEMU writes to a file and which outlives feitian. feitian's disk server dies
with it; QEMU's NBD client waits (`reconnect-delay`) and reconnects to the restarted feitian,
replaying what was in flight (`docs/disks.md`: write-through makes that safe). After the
restart: the instance is still Running, the same guest keeps writing (completions logged
after the restart), and every record the guest saw complete reads back from the disk.

One feitian (qemu driver, EIP pool 198.18.71.0/24: no other module uses it), one guest."""
import re

import pytest

from conftest import Api, wait_for
from qemu_helpers import Net, needs_vms, qemu_feitian, ssh, ssh_ok

pytestmark = needs_vms

POOL = "198.18.71.0/24"
RECORD = "feitian-record-"


@pytest.fixture(scope="module")
def cloud():
    f, finish = qemu_feitian(POOL)
    yield f
    left = finish()
    assert left == [], f"left on the host after shutdown: {left}"


def completed(net, iid):
    """The record numbers the guest logged as completed, from its console."""
    return [int(n) for n in re.findall(r"completed (\d+)", net.console(iid))]


# The guest's loop: block i of the data disk gets "feitian-record-<i>"; `conv=fsync` makes
# dd fsync the device (a FLUSH down to the disk server) before it exits; only then is the
# record logged as completed, on the serial console.
LOOP = r"""
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


def test_every_completed_write_survives_kill9_and_the_guest_keeps_running(cloud):
    net = Net(cloud, cidr="10.71.0.0/16", vsw="10.71.1.0/24")
    iid = net.run(**{"DataDisk.1.Size": 20, "DataDisk.1.Category": "cloud_efficiency"})[0]
    net.wait(iid, "Running")
    ip = net.eip(iid)
    disks = net.ecs("DescribeDisks", InstanceId=iid, DiskType="data")["Disks"]["Disk"]
    assert len(disks) == 1 and disks[0]["Status"] == "In_use", disks
    serial = disks[0]["DiskId"].removeprefix("d-")[:20]
    ssh_ok(net, ip, "true", deadline=300)
    script = LOOP.format(serial=serial, record=RECORD)
    ssh_ok(net, ip, f"cat > /tmp/loop.sh <<'EOF'\n{script}\nEOF\nsetsid sh /tmp/loop.sh >/dev/null 2>&1 </dev/null &")

    wait_for(lambda: len(completed(net, iid)) >= 20, timeout=180, what="the guest's first records", pause=1.0)
    before = max(completed(net, iid))  # through the API, so before it goes
    cloud.kill9()
    cloud.start(timeout=300)
    net.vpc, net.ecs = Api(net.f, net.key, "vpc"), Api(net.f, net.key, "ecs")

    # The same guest goes on writing once its disk server is back.
    assert net.status(iid) == "Running"
    wait_for(lambda: max(completed(net, iid)) >= before + 20, timeout=300, what="records completed after the restart", pause=1.0)
    ssh_ok(net, ip, "touch /tmp/stop")
    dev = wait_for(lambda: ssh(net, ip, "cat /tmp/loop.dev").stdout.strip(), timeout=60, what="the loop to stop", pause=1.0)
    done = completed(net, iid)
    last = max(done)
    # The console API returns its last 64 KiB: a contiguous tail of the completions.
    assert done == list(range(done[0], last + 1)), "the console lost or reordered completions"

    # Every record the guest saw complete is on the disk (read back in one pass; the rest of
    # each block is zeros on a fresh disk).
    out = ssh_ok(net, ip, f"dd if={dev} bs=4096 count={last + 1} 2>/dev/null | tr -d '\\000'")
    found = {int(m) for m in re.findall(RECORD + r"(\d{8})", out)}
    missing = sorted(set(range(last + 1)) - found)
    assert not missing, f"{len(missing)} completed records are gone after kill -9: {missing[:20]}"
    net.ecs("DeleteInstance", InstanceId=iid, Force=True)
