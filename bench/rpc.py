"""RPC benchmarks: feitian beside moto_server, in one run on this machine; prints Markdown.

- `regions`: signed DescribeRegions requests/s at concurrency 32 (ECS, V1 signature) beside
  EC2 DescribeRegions (SigV4).
- `instances`: DescribeInstances over 1,000 instances, 100 per page, at concurrency 32, beside
  EC2 DescribeInstances (MaxResults=100) over 1,000 instances.

Run through scripts/bench, which builds the release binaries and the references' virtualenv.
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sdk"))
from feitian_harness import FeitianProcess, free_port  # noqa: E402

BENCH = str(ROOT / "target" / "release" / "feitian-bench")
AK, SECRET = "LTAIbenchmarkbenchmark01", "benchmark-secret"


def load(kind, target, concurrency, seconds):
    out = subprocess.run([BENCH, "--kind", kind, "--target", target, "--concurrency", str(concurrency),
                          "--seconds", str(seconds), "--access-key-id", AK, "--access-key-secret", SECRET],
                         capture_output=True, text=True, check=True, timeout=seconds + 60)
    return json.loads(out.stdout)


def start_moto(port):
    moto_bin = str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen([moto_bin, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return proc
        except Exception:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def make_feitian_instances(feitian, n):
    from conftest import Api, wait_for
    vpc, ecs = Api(feitian, (AK, SECRET), "vpc"), Api(feitian, (AK, SECRET), "ecs")
    vid = vpc("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    wait_for(lambda: vpc("DescribeVpcs", VpcId=vid)["Vpcs"]["Vpc"][0]["Status"] == "Available")
    sw = vpc("CreateVSwitch", VpcId=vid, CidrBlock="10.1.0.0/16", ZoneId="cn-hangzhou-h")["VSwitchId"]
    wait_for(lambda: vpc("DescribeVSwitchAttributes", VSwitchId=sw)["Status"] == "Available")
    sg = ecs("CreateSecurityGroup", VpcId=vid)["SecurityGroupId"]
    for _ in range(n // 100):
        ecs("RunInstances", ImageId="feitian_linux_x64_1G_alibase_20261122.vhd", InstanceType="ecs.t5-lc1m1.small",
            VSwitchId=sw, SecurityGroupId=sg, Amount=100, **{"Tag.1.Key": "bench", "Tag.1.Value": "yes"})
    wait_for(lambda: ecs("DescribeInstances", Status="Running", PageSize=1)["TotalCount"] == n, timeout=120)


def make_moto_instances(port, n):
    import boto3
    ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id=AK, aws_secret_access_key=SECRET)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    # One instance per reservation: moto pages DescribeInstances by reservation, so this makes
    # MaxResults=100 return 100 instances, as feitian's PageSize=100 does.
    for _ in range(n):
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "bench", "Value": "yes"}]}])
    page = ec2.describe_instances(MaxResults=100)
    assert sum(len(r["Instances"]) for r in page["Reservations"]) == 100, "moto pages differently than assumed"


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "regions"
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "32"))
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    os.environ["FEITIAN_BIN"] = str(ROOT / "target" / "release" / "feitian")
    # One account holds the 1,000 instances: above the default quotas (docs/configuration.md).
    config = Path(tempfile.mkdtemp(prefix="feitian-bench-")) / "feitian.toml"
    config.write_text("[quotas]\ninstances = 1000\nvcpus = 1000\n")
    feitian = FeitianProcess(env={"FEITIAN_ROOT_ACCESS_KEY_ID": AK, "FEITIAN_ROOT_ACCESS_KEY_SECRET": SECRET,
                                  "FEITIAN_LOG": "warn", "FEITIAN_SIM_BOOT_MS": "10"}, config=config)
    moto = None
    kinds = {"regions": ("feitian-describe-regions", "moto-describe-regions"),
             "instances": ("feitian-describe-instances", "moto-describe-instances")}[which]
    try:
        feitian.start()
        if which == "instances":
            make_feitian_instances(feitian, 1000)
        f = load(kinds[0], feitian.endpoint, concurrency, seconds)
        feitian.stop()
        port = free_port()
        moto = start_moto(port)
        if which == "instances":
            make_moto_instances(port, 1000)
        m = load(kinds[1], f"127.0.0.1:{port}", concurrency, seconds)
    finally:
        feitian.cleanup()
        if moto is not None:
            moto.terminate()
            try:
                moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                moto.kill()
    ratio = f["rps"] / m["rps"] if m["rps"] else float("inf")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    what = "Signed DescribeRegions" if which == "regions" else "DescribeInstances over 1,000 instances, 100 per page,"
    print(f"{what} concurrency {concurrency}, {seconds} s each, {os.cpu_count()} cores ({cpu})\n")
    print("| server | requests/s | p50 ms | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in ((f"feitian (ECS {kinds[0].split('-', 1)[1]}, V1 HMAC-SHA1)", f), (f"moto_server 5.2.5 (EC2, SigV4)", m)):
        print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
    print(f"\nratio feitian / moto: {ratio:.1f}x")


if __name__ == "__main__":
    main()
