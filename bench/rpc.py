"""Signed DescribeRegions requests/s at concurrency 32: feitian (ECS, V1 signature) beside
moto_server (EC2, SigV4), measured in one run on this machine. Prints a Markdown table.

Run through scripts/bench, which builds the release binaries and the reference's virtualenv.
"""
import json
import os
import platform
import subprocess
import sys
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


def main():
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "32"))
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    os.environ["FEITIAN_BIN"] = str(ROOT / "target" / "release" / "feitian")
    feitian = FeitianProcess(env={"FEITIAN_ROOT_ACCESS_KEY_ID": AK, "FEITIAN_ROOT_ACCESS_KEY_SECRET": SECRET,
                                  "FEITIAN_LOG": "warn"})
    moto = None
    try:
        feitian.start()
        f = load("feitian-describe-regions", feitian.endpoint, concurrency, seconds)
        feitian.stop()
        port = free_port()
        moto = start_moto(port)
        m = load("moto-describe-regions", f"127.0.0.1:{port}", concurrency, seconds)
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
    print(f"Signed DescribeRegions, concurrency {concurrency}, {seconds} s each, {os.cpu_count()} cores ({cpu})\n")
    print("| server | requests/s | p50 ms | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in (("feitian (ECS, V1 HMAC-SHA1)", f), ("moto_server 5.2.5 (EC2, SigV4)", m)):
        print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
    print(f"\nratio feitian / moto: {ratio:.1f}x")


if __name__ == "__main__":
    main()
