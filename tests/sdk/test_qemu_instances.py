"""Issue 5, real instances: a QEMU guest on the built-in image, on a VPC network in
namespaces feitian creates, reached over SSH through an EIP, with the metadata service
answering it about itself (done-when 1)."""
import base64

import pytest

from qemu_helpers import Net, assert_confined, needs_vms, qemu_feitian, qemu_process, ssh, ssh_ok

pytestmark = needs_vms


@pytest.fixture(scope="module")
def cloud():
    f, finish = qemu_feitian("198.18.77.0/24")
    yield f
    left = finish()
    assert left == [], f"left on the host after shutdown: {left}"


def test_ssh_metadata_and_user_data(cloud):
    """Done-when 1: VPC, vSwitch, a group allowing tcp 22, RunInstances with KeyPairName and
    UserData, an EIP; Running; ssh -i key root@EIP works; inside, the metadata service tells
    the instance its own id, and the UserData script ran. Issue 14: the guest's QEMU runs
    confined (its own uid, seccomp, a private directory) and the guest still works."""
    net = Net(cloud)
    script = "#!/bin/sh\necho \"ran as $(id -u) on $(hostname)\" > /root/user-data-proof\n"
    [iid] = net.run(UserData=base64.b64encode(script.encode()).decode(), HostName="web-1",
                    **{"SystemDisk.Size": "50"})
    ip = net.eip(iid)
    net.wait(iid, "Running")
    assert ssh_ok(net, ip, "wget -qO- http://100.100.100.200/latest/meta-data/instance-id").strip() == iid
    # The root file system fills the 50 GiB system disk, not the image's 256 MiB.
    total_kib = int(ssh_ok(net, ip, "df -k / | tail -n 1").split()[1])
    assert 0.9 * 50 * 2**20 < total_kib <= 50 * 2**20, total_kib
    assert ssh_ok(net, ip, "cat /root/user-data-proof").strip() == "ran as 0 on web-1"
    md = "http://100.100.100.200/latest/meta-data"
    got = ssh_ok(net, ip, f"wget -qO- {md}/eipv4; echo; wget -qO- {md}/vpc-id; echo; wget -qO- {md}/private-ipv4")
    private = net.ecs("DescribeInstances", InstanceIds=f'["{iid}"]')["Instances"]["Instance"][0][
        "VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]
    assert got.split() == [ip, net.vpc_id, private]
    assert "feitian-guest: ssh ready" in net.console(iid)
    assert_confined(cloud, iid)


def test_a_dead_qemu_leaves_the_instance_stopped_with_an_event(cloud):
    """A QEMU that dies on its own leaves its instance Stopped with a SystemFailure.Stop
    event; a guest that powers itself off is Stopped with no event; both start again."""
    import os
    import signal
    from pathlib import Path

    net = Net(cloud)
    [iid] = net.run()
    ip = net.eip(iid)
    net.wait(iid, "Running")
    ssh_ok(net, ip, "true")
    # Issue 14: each instance's QEMU has a uid of its own (the first test's guest still runs).
    uid = assert_confined(cloud, iid)
    dirs = [d for d in (Path(cloud.data_dir) / "instances").iterdir() if d.is_dir()]
    owners = [d.stat().st_uid for d in dirs]
    assert len(dirs) >= 2 and len(set(owners)) == len(owners) and 0 not in owners, owners
    running = [d.name for d in dirs if d.name != iid and (d / "qemu.pid").exists()]
    assert running and uid not in [qemu_process(cloud, other)["uids"][0] for other in running]
    pid = int((Path(cloud.data_dir) / "instances" / iid / "qemu.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # the fault: the VM's process dies under the guest
    net.wait(iid, "Stopped", timeout=60)
    events = net.ecs("DescribeInstanceHistoryEvents", InstanceId=iid)["InstanceSystemEventSet"]["InstanceSystemEventType"]
    assert [(e["EventType"]["Name"], e["EventCycleStatus"]["Name"], e["InstanceId"]) for e in events] == [
        ("SystemFailure.Stop", "Executed", iid)]
    assert net.ecs("DescribeInstanceHistoryEvents", InstanceId=iid, EventCycleStatus="Scheduled")["TotalCount"] == 0
    assert net.ecs.error("DescribeInstanceHistoryEvents", EventType="Nope").code == "InvalidParameter"

    net.ecs("StartInstance", InstanceId=iid)
    net.wait(iid, "Running")
    assert assert_confined(cloud, iid) == uid  # a boot again keeps the instance's uid
    ssh(net, ip, "poweroff")  # the guest shuts itself down: no event, as on Alibaba Cloud
    net.wait(iid, "Stopped", timeout=120)
    assert net.ecs("DescribeInstanceHistoryEvents", InstanceId=iid)["TotalCount"] == 1
    assert "feitian-guest: shutting down" in net.console(iid)
    net.ecs("DeleteInstance", InstanceId=iid)
