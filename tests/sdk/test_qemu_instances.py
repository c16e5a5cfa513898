"""Issue 5, real instances: a QEMU guest on the built-in image, on a VPC network in
namespaces feitian creates, reached over SSH through an EIP, with the metadata service
answering it about itself (done-when 1); and files copied in and out of it the ways Packer
and Ansible do (issue 16: SCP's legacy protocol and SFTP)."""
import base64
import hashlib
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from qemu_helpers import Net, assert_confined, needs_vms, qemu_feitian, qemu_process, ssh, ssh_ok, ssh_options

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
    assert_file_transfers(net, ip)


def assert_file_transfers(net, ip):
    """Issue 16: the guest's scp and SFTP server work with its SSH server. `scp -O` (the legacy
    protocol: the guest runs `scp -t`/`scp -f`) and `sftp -b` copy a file in and back out
    byte for byte, and Packer 1.6.6's upload (its own client driving `scp -vt DIR`) leaves
    the file with the mode its header gave."""
    with tempfile.TemporaryDirectory(prefix="feitian-xfer-") as tmp:
        tmp = Path(tmp)
        data = os.urandom(300_000) + b"\0\n" + os.urandom(1000)  # binary, NULs, not a block multiple
        sent = tmp / "sent.bin"
        sent.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()

        def copy(*argv):
            out = subprocess.run(list(argv), capture_output=True, text=True, errors="replace", timeout=60)
            assert out.returncode == 0, f"{argv[0]} failed ({out.returncode}): {out.stderr}"

        # scp, legacy protocol, up and down.
        copy("scp", "-O", "-q", *ssh_options(net), str(sent), f"root@{ip}:/tmp/by-scp.bin")
        assert ssh_ok(net, ip, "sha256sum /tmp/by-scp.bin").split()[0] == digest
        copy("scp", "-O", "-q", *ssh_options(net), f"root@{ip}:/tmp/by-scp.bin", str(tmp / "scp-back.bin"))
        assert (tmp / "scp-back.bin").read_bytes() == data

        # sftp in batch mode (it exits non-zero when any command fails).
        batch = tmp / "batch"
        batch.write_text(f"put {sent} /tmp/by-sftp.bin\nget /tmp/by-sftp.bin {tmp / 'sftp-back.bin'}\n")
        copy("sftp", "-b", str(batch), *ssh_options(net), f"root@{ip}")
        assert ssh_ok(net, ip, "sha256sum /tmp/by-sftp.bin").split()[0] == digest
        assert (tmp / "sftp-back.bin").read_bytes() == data

    # Packer's upload: the script with the header Packer writes, then a second file whose mode
    # differs from what the guest's umask would give, so the mode is shown to come from it.
    script = b"#!/bin/sh\necho provisioned\n"
    packer_scp_upload(net, ip, "/tmp", "script_1234.sh", script, "0644")
    packer_scp_upload(net, ip, "/tmp", "keep-private", b"secret\n", "0600")
    got = ssh_ok(net, ip, "stat -c '%a %s' /tmp/script_1234.sh /tmp/keep-private; cat /tmp/script_1234.sh")
    assert got.splitlines() == [f"644 {len(script)}", "600 7", "#!/bin/sh", "echo provisioned"], got


def packer_scp_upload(net, ip, directory, name, data, mode, timeout=60):
    """Uploads `data` as Packer 1.6.6's SSH communicator does: run `scp -vt DIR` on the guest,
    wait for its 0 byte, send `C<mode> <size> <name>`, wait, send the bytes and a 0 byte, wait,
    close. Each wait fails on anything but a 0 byte (1 or 2: the guest's scp refused)."""
    p = subprocess.Popen(["ssh", *ssh_options(net), f"root@{ip}", f"scp -vt {directory}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        def ack(step):
            ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"the guest's scp did not answer {step} within {timeout} s"
            b = os.read(p.stdout.fileno(), 1)
            if b != b"\0":
                rest = os.read(p.stdout.fileno(), 4096) if b else b""
                raise AssertionError(f"the guest's scp refused {step}: {b + rest!r}")

        ack("the session")
        p.stdin.write(f"C{mode} {len(data)} {name}\n".encode())
        p.stdin.flush()
        ack("the header")
        p.stdin.write(data + b"\0")
        p.stdin.flush()
        ack("the file")
        p.stdin.close()
        assert p.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, p.stderr.read().decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()


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
