"""OSS benchmark: feitian's OSS beside plain files on the same disk and moto's S3, in one run;
prints Markdown.

- 64 MiB objects, PUT then GET, at concurrency 16: MB/s of feitian (signature V1) against the
  disk's own limit (files written with write + fsync each, then read back) in a directory
  beside feitian's data directory, and moto_server's S3 (SigV4) for reference.
- 4 KiB objects, PUT for a while then GET of what was written for as long: ops/s of feitian
  against moto_server (and the disk, for reference).

64 MiB objects are read twice after they are written: first from the disk (the files the
PUT phase wrote, and only those, are evicted from the page cache with
posix_fadvise(DONTNEED) first; the raw files' for the raw reads, feitian's chunk files for
feitian's), which is the physical limit the aim is judged against, then again from the page
cache, which shows everything above the cache. moto keeps objects in memory or in unlinked
temporary files, so its GETs are measured once. 4 KiB GETs read what was just written. `sync`
runs before every PUT phase so that an earlier phase's dirty pages are not charged to it.

Run through scripts/bench (`scripts/bench oss`), which builds the release binaries and the
references' virtualenv. Environment (all optional):
  FEITIAN_BENCH_BIN_DIR     where feitian and feitian-bench are (default $CARGO_TARGET_DIR/release,
                            else target/release)
  BENCH_DATA_DIR            parent of the temporary data directory (default target/; keep it
                            on the disk you mean to measure: /tmp is often a tmpfs)
  BENCH_CONCURRENCY         16
  BENCH_LARGE_OBJECTS       64 (objects of 64 MiB for feitian and the disk: 4 GiB each)
  BENCH_MOTO_LARGE_OBJECTS  as many as BENCH_LARGE_OBJECTS (fewer if moto is too slow)
  BENCH_SECONDS             20 (each 4 KiB PUT and GET phase)
  BENCH_ROUNDS              3 (rounds of 64 MiB objects, raw files and feitian in turn; the
                            median is reported, and the ratio is the median of the rounds')
"""
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sdk"))
from feitian_harness import FeitianProcess, free_port  # noqa: E402

BIN_DIR = Path(os.environ.get("FEITIAN_BENCH_BIN_DIR")
               or Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release").resolve()
BENCH = str(BIN_DIR / "feitian-bench")
AK, SECRET = "LTAIbenchmarkbenchmark01", "benchmark-secret"
BUCKET = "feitian-bench"
MIB = 1 << 20
LARGE, SMALL = 64 * MIB, 4096

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
LARGE_N = int(os.environ.get("BENCH_LARGE_OBJECTS", "64"))
MOTO_LARGE_N = int(os.environ.get("BENCH_MOTO_LARGE_OBJECTS", str(LARGE_N)))
SMALL_SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


class Failed(Exception):
    pass


def load(kind, size, *, target=None, directory=None, objects=None, seconds=None, prefix="obj-"):
    """One feitian-bench run; its JSON line."""
    cmd = [BENCH, "--kind", kind, "--concurrency", str(CONCURRENCY), "--object-size", str(size),
           "--bucket", BUCKET, "--prefix", prefix, "--access-key-id", AK, "--access-key-secret", SECRET]
    for flag, value in (("--target", target), ("--dir", directory), ("--objects", objects), ("--seconds", seconds)):
        if value is not None:
            cmd += [flag, str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=dict(os.environ, RUST_BACKTRACE="0"))
    if out.returncode != 0:
        message = " ".join(out.stderr.split()) or f"exit {out.returncode}"
        print(f"  {kind}: {message}", file=sys.stderr)
        answer = re.search(r"answered (\d+)[^:]*:.*?<Code>(\w+)</Code>", message)
        raise Failed(f"HTTP {answer[1]} {answer[2]}" if answer else message)
    r = json.loads(out.stdout)
    if r["errors"]:
        print(f"  {kind}: {r['errors']} errors, the first: {r['first_error']}", file=sys.stderr)
    return r


def mount_of(path):
    """(device, mount point, type) of the file system holding path."""
    path = os.path.realpath(path)
    best = ("?", "/", "?")
    for line in open("/proc/self/mounts"):
        dev, mnt, fstype = line.split()[:3]
        mnt = mnt.replace("\\040", " ")
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1]):
            best = (dev, mnt, fstype)
    return best


def start_moto(port, tmpdir):
    moto_bin = str(Path(sys.executable).parent / "moto_server")
    # moto spills objects over 5 MiB to temporary files: keep them on the measured disk too.
    env = dict(os.environ, TMPDIR=str(tmpdir))
    proc = subprocess.Popen([moto_bin, "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return proc
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}")
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError("moto_server did not start")


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_buckets(feitian, moto_port):
    import boto3
    import botocore.config
    import oss2
    oss2.Bucket(oss2.Auth(AK, SECRET), f"http://{feitian.endpoint}", BUCKET, region="cn-hangzhou").create_bucket()
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                      aws_access_key_id=AK, aws_secret_access_key=SECRET,
                      config=botocore.config.Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket=BUCKET)


def phase(results, name, size, op, fn):
    """Runs fn (a PUT or GET) for the row (name, size, op); a failure is recorded, not raised,
    so that the other servers are still measured."""
    if op == "PUT":
        os.sync()
    label = f"{'64 MiB' if size == LARGE else '4 KiB'} {op} {name}"
    print(f"  {label} ...", file=sys.stderr, flush=True)
    try:
        results[(size, op, name)] = fn()
    except Failed as e:
        print(f"  {label} failed: {e}", file=sys.stderr)
        results[(size, op, name)] = e


def evict(directory, suffix=""):
    """Drops the page-cache pages of the files under directory (those ending in suffix):
    the next read of them comes from the disk. posix_fadvise(DONTNEED) on each file, which
    touches only these files (clean after their fsync), nothing else on the machine."""
    for path in Path(directory).rglob(f"*{suffix}"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def pair(results, name, size, put, get, files=None):
    """A PUT phase, then GET phases over what it wrote (skipped if the PUT failed). With
    files (a function evicting the written files from the page cache), the first GET phase
    reads from the disk ("GET disk") and the second from the page cache ("GET cache");
    without, one GET phase ("GET cache": the objects were just written)."""
    phase(results, name, size, "PUT", put)
    r = results[(size, "PUT", name)]
    ops = ["GET disk", "GET cache"] if files else ["GET cache"]
    if isinstance(r, Failed):
        for op in ops:
            results[(size, op, name)] = Failed("not run: the PUT failed")
        return
    if files:
        os.sync()
        files()
    for op in ops:
        phase(results, name, size, op, lambda: get(r["objects"]))


def main():
    os.environ["FEITIAN_BIN"] = str(BIN_DIR / "feitian")
    parent = Path(os.environ.get("BENCH_DATA_DIR", ROOT / "target"))
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-oss-", dir=parent))
    mount = mount_of(work)
    disk_dir, moto_tmp = work / "disk", work / "moto-tmp"
    moto_tmp.mkdir()
    feitian = FeitianProcess(data_dir=work / "feitian",
                             env={"FEITIAN_ROOT_ACCESS_KEY_ID": AK, "FEITIAN_ROOT_ACCESS_KEY_SECRET": SECRET,
                                  "FEITIAN_LOG": "warn"})
    moto = None
    results, setup, rounds = {}, {}, {}
    try:
        feitian.start()
        replication = re.search(r"\(replication (\d+)\)", feitian.stdout())
        setup["replication"] = replication[1] if replication else "?"
        port = free_port()
        moto = start_moto(port, moto_tmp)
        moto_target = f"127.0.0.1:{port}"
        make_buckets(feitian, port)

        # (a) 64 MiB objects, counted: the raw files and feitian in turn, ROUNDS times (the
        # machine's disk and memory speed drift; each round's ratio compares neighbours).
        for _ in range(ROUNDS):
            this = {}
            pair(this, "disk", LARGE,
                 lambda: load("disk-put", LARGE, directory=disk_dir / "large", objects=LARGE_N),
                 lambda n: load("disk-get", LARGE, directory=disk_dir / "large", objects=n),
                 files=lambda: evict(disk_dir / "large"))
            shutil.rmtree(disk_dir / "large", ignore_errors=True)
            pair(this, "feitian", LARGE,
                 lambda: load("oss-put", LARGE, target=feitian.endpoint, objects=LARGE_N, prefix="large-"),
                 lambda n: load("oss-get", LARGE, target=feitian.endpoint, objects=n, prefix="large-"),
                 files=lambda: evict(work / "feitian", ".chunk"))
            for key, r in this.items():
                rounds.setdefault(key, []).append(r)
        for key, rs in rounds.items():
            done = [r for r in rs if not isinstance(r, Failed)]
            if len(done) < len(rs):
                results[key] = next(r for r in rs if isinstance(r, Failed))
            else:
                results[key] = dict(sorted(done, key=lambda r: r["mb_s"])[len(done) // 2],
                                    rounds=[r["mb_s"] for r in done])
        pair(results, "moto", LARGE,
             lambda: load("s3-put", LARGE, target=moto_target, objects=MOTO_LARGE_N, prefix="large-"),
             lambda n: load("s3-get", LARGE, target=moto_target, objects=n, prefix="large-"))

        # (b) 4 KiB objects, timed: PUT new objects, then GET round and round over them.
        s = SMALL_SECONDS
        pair(results, "disk", SMALL,
             lambda: load("disk-put", SMALL, directory=disk_dir / "small", seconds=s),
             lambda n: load("disk-get", SMALL, directory=disk_dir / "small", objects=n, seconds=s))
        shutil.rmtree(disk_dir / "small", ignore_errors=True)
        pair(results, "feitian", SMALL,
             lambda: load("oss-put", SMALL, target=feitian.endpoint, seconds=s, prefix="small-"),
             lambda n: load("oss-get", SMALL, target=feitian.endpoint, objects=n, seconds=s, prefix="small-"))
        pair(results, "moto", SMALL,
             lambda: load("s3-put", SMALL, target=moto_target, seconds=s, prefix="small-"),
             lambda n: load("s3-get", SMALL, target=moto_target, objects=n, seconds=s, prefix="small-"))
    except BaseException:
        if feitian.proc is not None and feitian.stderr_path.exists():
            tail = feitian.stderr_path.read_text()[-2000:]
            if tail:
                print(f"feitian's stderr (end):\n{tail}", file=sys.stderr)
        raise
    finally:
        stop(moto)
        feitian.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(feitian.log_dir, ignore_errors=True)
    report(results, mount, setup, rounds)
    if any(isinstance(r, Failed) for r in results.values()):
        sys.exit(1)


def report(results, mount, setup, rounds):
    dev, mnt, fstype = mount
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.machine())
    mem = next((int(l.split()[1]) // (1 << 20) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    print(f"OSS objects at concurrency {CONCURRENCY}: 64 MiB x {LARGE_N} (moto x {MOTO_LARGE_N}), "
          f"4 KiB for {SMALL_SECONDS} s per phase; feitian replication {setup.get('replication', '?')}; "
          f"data on {dev} ({fstype}, mounted at {mnt}); "
          f"{os.cpu_count()} cores ({cpu}), {mem} GiB memory. MB = 10^6 bytes. 64 MiB GETs: first with the "
          f"objects' files evicted from the page cache (from the disk), then again (from the page cache). "
          f"64 MiB rows of the raw files and feitian: the median of {ROUNDS} rounds (each round's MB/s in "
          f"brackets); their ratios: the median of the rounds' ratios.\n")
    names = {"disk": "raw files (write+fsync / read)", "feitian": "feitian OSS (V1)", "moto": "moto_server 5.2.5 S3 (SigV4)"}
    ops = {"PUT": "PUT", "GET disk": "GET from the disk", "GET cache": "GET from the page cache"}
    print("| object | op | server | objects | MB/s | ops/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in (LARGE, SMALL):
        for op in ops:
            for name in ("disk", "feitian", "moto"):
                r = results.get((size, op, name))
                label = f"| {'64 MiB' if size == LARGE else '4 KiB'} | {ops[op]} | {names[name]} |"
                if r is None:
                    continue
                elif isinstance(r, Failed):
                    print(f"{label} failed: {str(r)[:200].replace('|', '/')} | | | | | |")
                else:
                    each = f" [{', '.join(f'{x:.0f}' for x in r['rounds'])}]" if "rounds" in r else ""
                    print(f"{label} {r['objects']} | {r['mb_s']:.1f}{each} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                          f"{r['p99_ms']:.2f} | {r['errors']} |")

    def ratio(size, op, num, den, key, aim):
        a, b = results.get((size, op, num)), results.get((size, op, den))
        what = f"{'64 MiB' if size == LARGE else '4 KiB'} {op} {num} / {den} ({'MB/s' if key == 'mb_s' else 'ops/s'})"
        if not isinstance(a, dict) or not isinstance(b, dict) or not b[key]:
            return f"- {what}: n/a"
        x = a[key] / b[key]
        pairs = list(zip(rounds.get((size, op, num), []), rounds.get((size, op, den), [])))
        if pairs and all(isinstance(p, dict) and isinstance(q, dict) and q[key] for p, q in pairs):
            each = sorted(p[key] / q[key] for p, q in pairs)
            x = each[len(each) // 2]
            what += f", rounds {', '.join(f'{r:.2f}' for r in each)}"
        met = "" if aim is None else (" (aim met)" if x >= aim else " (aim NOT met)")
        return f"- {what}: **{x:.3g}x**" + (f", aim {aim}x{met}" if aim is not None else "")

    print("\nratios:")
    for op in ("PUT", "GET disk"):
        print(ratio(LARGE, op, "feitian", "disk", "mb_s", 0.7))
    print(ratio(LARGE, "GET cache", "feitian", "disk", "mb_s", None))
    for op in ("PUT", "GET cache"):
        print(ratio(SMALL, op, "feitian", "moto", "rps", 10))
    for op in ("PUT", "GET cache"):
        print(ratio(LARGE, op, "feitian", "moto", "mb_s", None))
        print(ratio(SMALL, op, "feitian", "disk", "rps", None))


if __name__ == "__main__":
    main()
