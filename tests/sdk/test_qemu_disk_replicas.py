"""Issue 15, done-when 2 (second part): a real guest writes fsync'ed records to a cloud disk on
a Pangu of three chunkservers with replication 3 (the embedded one and two `feitian
chunkserver` processes), and one chunkserver is killed (-9) in the middle. The guest sees no
I/O error (its loop ends at the first failed write, and it keeps completing records), every
record it saw complete reads back, and once the server is back the master restores three
replicas of every chunk (`docs/disks.md`: an acknowledged write is on every replica; Pangu's
writer moves to a new replica set when one fails, and the repair loop copies back).

One feitian (qemu driver, EIP pool 198.18.72.0/24: no other module uses it), one guest."""
import os

import pytest

from conftest import wait_for
from feitian_harness import ChunkserverProcess, pangu_status
from qemu_helpers import (Net, completed_records, needs_vms, qemu_feitian, ssh, ssh_ok, start_record_loop,
                          stop_record_loop)

pytestmark = needs_vms

POOL = "198.18.72.0/24"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    f, finish = qemu_feitian(POOL, extra="[pangu]\nreplication = 3\nheartbeat_timeout_secs = 3\n")
    secret = str(f.data_dir / "pangu" / "cluster.key")
    old = os.environ.get("FEITIAN_PANGU_SECRET_FILE")
    os.environ["FEITIAN_PANGU_SECRET_FILE"] = secret  # the chunkservers' secret
    base = tmp_path_factory.mktemp("chunkservers")
    servers = [ChunkserverProcess(f.pangu_master, base / f"cs{i}", f"rack-{i}") for i in (1, 2)]
    try:
        for s in servers:
            s.start()
        wait_for(lambda: sum(x["live"] for x in pangu_status(f.pangu_master)["servers"]) == 3, timeout=30,
                 what="three live chunkservers", pause=0.2)
        yield f, servers
    finally:
        for s in servers:
            s.stop()
        if old is None:
            os.environ.pop("FEITIAN_PANGU_SECRET_FILE", None)
        else:
            os.environ["FEITIAN_PANGU_SECRET_FILE"] = old
        left = finish()
        assert left == [], f"left on the host after shutdown: {left}"


def test_a_chunkserver_dies_under_a_guests_writes(cluster):
    f, servers = cluster
    net = Net(f, cidr="10.72.0.0/16", vsw="10.72.1.0/24")
    iid = net.run(**{"DataDisk.1.Size": 20, "DataDisk.1.Category": "cloud_efficiency"})[0]
    net.wait(iid, "Running")
    ip = net.eip(iid)
    disk = net.ecs("DescribeDisks", InstanceId=iid, DiskType="data")["Disks"]["Disk"][0]
    ssh_ok(net, ip, "true", deadline=300)
    start_record_loop(net, ip, disk["DiskId"])

    wait_for(lambda: len(completed_records(net, iid)) >= 20, timeout=180, what="the guest's first records", pause=1.0)
    before = max(completed_records(net, iid))
    servers[0].kill9()
    master = f.pangu_master
    wait_for(lambda: pangu_status(master)["under_replicated"] > 0, timeout=60, what="the loss to be seen", pause=0.5)
    # The guest keeps completing records with one server gone, and never saw an I/O error.
    wait_for(lambda: max(completed_records(net, iid)) >= before + 40, timeout=300,
             what="records completed after the kill", pause=1.0)
    count = stop_record_loop(net, ip, iid)
    assert count > before + 40
    errors = ssh(net, ip, "dmesg | grep -i -e 'I/O error' -e 'blk_update_request' || true").stdout.strip()
    assert errors == "", f"the guest saw I/O errors: {errors}"

    # The server comes back with its data: three replicas of every chunk again.
    servers[0].start()
    wait_for(lambda: (s := pangu_status(master))["under_replicated"] == 0 and s["repair"]["in_flight"] == 0,
             timeout=300, what="three replicas of every chunk", pause=1.0)
    net.ecs("DeleteInstance", InstanceId=iid, Force=True)
