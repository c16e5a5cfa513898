"""Issue 15, done-when 2 (first part): `kill -9` of feitian while a real guest writes, record
after record, to a cloud disk with an fsync after each one; then a restart.

The guest logs every record it completed (the write and its fsync returned) on its serial
console (qemu_helpers' record loop). feitian's disk server dies with it; QEMU's NBD client
waits (`reconnect-delay`) and reconnects to the restarted feitian, replaying what was in flight
(`docs/disks.md`: write-through makes that safe). After the restart: the instance is still
Running, the same guest keeps writing (completions logged after the restart, no write error),
and every record the guest saw complete reads back from the disk.

One feitian (qemu driver, EIP pool 198.18.71.0/24: no other module uses it), one guest."""
import pytest

from conftest import Api, wait_for
from qemu_helpers import (Net, completed_records, needs_vms, qemu_feitian, ssh_ok, start_record_loop,
                          stop_record_loop)

pytestmark = needs_vms

POOL = "198.18.71.0/24"


@pytest.fixture(scope="module")
def cloud():
    f, finish = qemu_feitian(POOL)
    yield f
    left = finish()
    assert left == [], f"left on the host after shutdown: {left}"


def test_every_completed_write_survives_kill9_and_the_guest_keeps_running(cloud):
    net = Net(cloud, cidr="10.71.0.0/16", vsw="10.71.1.0/24")
    iid = net.run(**{"DataDisk.1.Size": 20, "DataDisk.1.Category": "cloud_efficiency"})[0]
    net.wait(iid, "Running")
    ip = net.eip(iid)
    disks = net.ecs("DescribeDisks", InstanceId=iid, DiskType="data")["Disks"]["Disk"]
    assert len(disks) == 1 and disks[0]["Status"] == "In_use", disks
    ssh_ok(net, ip, "true", deadline=300)
    start_record_loop(net, ip, disks[0]["DiskId"])

    wait_for(lambda: len(completed_records(net, iid)) >= 20, timeout=180, what="the guest's first records", pause=1.0)
    before = max(completed_records(net, iid))  # through the API, so before it goes
    cloud.kill9()
    cloud.start(timeout=300)
    net.vpc, net.ecs = Api(net.f, net.key, "vpc"), Api(net.f, net.key, "ecs")

    # The same guest goes on writing once its disk server is back.
    assert net.status(iid) == "Running"
    wait_for(lambda: max(completed_records(net, iid)) >= before + 20, timeout=300,
             what="records completed after the restart", pause=1.0)
    stop_record_loop(net, ip, iid)
    net.ecs("DeleteInstance", InstanceId=iid, Force=True)
