"""Disk benchmark: feitian's per-disk NBD server (crates/disk) beside qemu-nbd, each serving a
raw image on the same file system, driven by the same fio jobs, in one run; prints Markdown.

- The load: fio 3.33's `nbd` ioengine (libnbd; Debian's fio has it), one job, one NBD
  connection, as a guest's QEMU has: 4 KiB random read and random write at queue depth 32,
  1 MiB sequential read and write at queue depth 8. Time-based runs of BENCH_DISK_SECONDS
  (no ramp: the images are in the page cache already). Every write run ends with a flush (`end_fsync=1`: fio sends
  NBD_CMD_FLUSH and waits for it), so both servers end each write run with the data durable.
- Same durability on both sides: qemu-nbd with `--cache=writeback` (writes reach the page
  cache, FLUSH is fdatasync) and feitian's `file` backend (FileDevice: pwrite, fdatasync on
  FLUSH). `--backend` picks feitian's backend: `file`, or `raf` (the product's disk: a RAF
  volume on a Pangu of one chunkserver under the same directory, write-through: every write is
  fsynced on its replica before it is acknowledged, so its durability is stronger than the
  reference's, whose writes wait in the page cache until the final flush).
- Two images of BENCH_DISK_SIZE, filled with the same random bytes (reads read data, not
  holes), side by side in one directory (BENCH_DISK_DIR, default a temporary directory under
  /var/tmp), and read once before the runs: both servers read from a warm page cache.
- Rounds (BENCH_DISK_ROUNDS) alternate which server goes first; the table shows each case's
  median over rounds. "whole run" divides the I/O done by the wall time of the whole fio
  run (its start-up, the run and the final flush); the other columns are fio's own.

Needs fio (with the nbd engine) and qemu-nbd. Run through scripts/bench (`scripts/bench disk`),
which builds the release binaries. Environment (all optional):
  FEITIAN_BENCH_BIN_DIR  where feitian-bench-nbd is (default $CARGO_TARGET_DIR/release, else target/release)
  BENCH_DISK_SIZE        image size in MiB (default 1024)
  BENCH_DISK_SECONDS     seconds per run (default 5)
  BENCH_DISK_ROUNDS      rounds (default 3)
  BENCH_DISK_DIR         where the images go (default: a temporary directory under /var/tmp)
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(os.environ.get("FEITIAN_BENCH_BIN_DIR")
               or Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release").resolve()
SIZE_MIB = int(os.environ.get("BENCH_DISK_SIZE", "1024"))
SECONDS = int(os.environ.get("BENCH_DISK_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_DISK_ROUNDS", "3"))

# (name, fio rw, block size, queue depth, unit of the headline number)
CASES = [
    ("4 KiB random read, QD32", "randread", "4k", 32, "IOPS"),
    ("4 KiB random write, QD32", "randwrite", "4k", 32, "IOPS"),
    ("1 MiB sequential read, QD8", "read", "1M", 8, "MiB/s"),
    ("1 MiB sequential write, QD8", "write", "1M", 8, "MiB/s"),
]


class Failed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wait_for_socket(path, proc, what):
    deadline = time.monotonic() + 10
    while not Path(path).exists():
        if proc.poll() is not None:
            raise Failed(f"{what} exited with {proc.returncode} before making its socket")
        if time.monotonic() > deadline:
            raise Failed(f"{what} made no socket {path} within 10 s")
        time.sleep(0.05)


class Servers:
    """feitian's NBD server and qemu-nbd, each on its own image and socket in `work`."""

    def __init__(self, work, backend):
        self.work, self.backend, self.procs = Path(work), backend, []

    def __enter__(self):
        feitian_img, qemu_img = self.work / "feitian.raw", self.work / "qemu.raw"
        log(f"filling two {SIZE_MIB} MiB images with random bytes in {self.work}")
        with open(feitian_img, "wb") as f:
            for _ in range(SIZE_MIB):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        shutil.copyfile(feitian_img, qemu_img)
        for img in (feitian_img, qemu_img):
            with open(img, "rb") as f:
                while f.read(8 << 20):
                    pass
        os.sync()
        sockdir = self.work / "sock"
        sockdir.mkdir()
        self.feitian_sock = sockdir / "d-bench.sock"
        self.qemu_sock = sockdir / "qemu.sock"
        server = BIN_DIR / "feitian-bench-nbd"
        path = feitian_img if self.backend == "file" else self.work / "raf"
        self._start([str(server), "--backend", self.backend, "--path", str(path), "--socket-dir", str(sockdir),
                     "--name", "d-bench", "--client-uid", str(os.getuid()), "--size", str(SIZE_MIB << 20)],
                    self.feitian_sock, "feitian-bench-nbd")
        if self.backend == "raf":
            # The volume gets the same bytes through the server (a sequential write of the
            # whole image), so reads read data from the log.
            log("writing the image into the RAF volume through the NBD server")
            uri = f"nbd+unix:///d-bench?socket={self.feitian_sock}"
            subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(feitian_img), uri], check=True)
            feitian_img.unlink()
        self._start(["qemu-nbd", "-f", "raw", "--cache=writeback", "--aio=threads", "--persistent", "--shared=1",
                     "-k", str(self.qemu_sock), str(qemu_img)], self.qemu_sock, "qemu-nbd")
        return self

    def _start(self, argv, sock, what):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(self.work / f"{what}.log", "wb"))
        self.procs.append(p)
        wait_for_socket(sock, p, what)

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def fio(sock, rw, bs, depth, out):
    """One fio run against the NBD socket; returns (fio's job result, wall seconds)."""
    argv = ["fio", "--name=bench", "--ioengine=nbd", f"--uri=nbd+unix:///?socket={sock}", f"--rw={rw}",
            f"--bs={bs}", f"--iodepth={depth}", f"--size={SIZE_MIB}M", "--time_based", f"--runtime={SECONDS}",
            "--randrepeat=0", "--norandommap", "--output-format=json", f"--output={out}"]
    if "write" in rw:
        argv.append("--end_fsync=1")
    start = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - start
    if r.returncode != 0:
        raise Failed(f"fio {rw} {bs} on {sock} failed:\n{r.stdout}{r.stderr}")
    job = json.loads(Path(out).read_text())["jobs"][0]
    return job, wall


def measure(sock, case, out):
    _, rw, bs, depth, unit = case
    job, wall = fio(sock, rw, bs, depth, out)
    d = job["read" if "read" in rw else "write"]
    value = d["iops"] if unit == "IOPS" else d["bw_bytes"] / (1 << 20)
    # Everything the run moved over its whole wall time: start-up, the run and the end flush.
    with_flush = d["total_ios"] / wall if unit == "IOPS" else d["io_bytes"] / wall / (1 << 20)
    p99 = d["clat_ns"]["percentile"].get("99.000000", 0) / 1000
    return {"value": value, "with_flush": with_flush, "p99_us": p99}


def median(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="raf", choices=["raf", "file"], help="feitian's backend")
    args = ap.parse_args()
    for tool in ("fio", "qemu-nbd"):
        if shutil.which(tool) is None:
            raise Failed(f"{tool} is not installed (apt-get install fio qemu-utils)")
    if "nbd" not in subprocess.run(["fio", "--enghelp"], capture_output=True, text=True).stdout:
        raise Failed("this fio has no nbd ioengine")
    base = os.environ.get("BENCH_DISK_DIR")
    work = tempfile.mkdtemp(prefix="feitian-bench-disk-", dir=base or "/var/tmp")
    try:
        results = {c[0]: {"feitian": [], "qemu-nbd": []} for c in CASES}
        with Servers(work, args.backend) as s:
            sides = [("feitian", s.feitian_sock), ("qemu-nbd", s.qemu_sock)]
            for rnd in range(ROUNDS):
                order = sides if rnd % 2 == 0 else sides[::-1]
                for case in CASES:
                    for name, sock in order:
                        r = measure(sock, case, Path(work) / "fio.json")
                        results[case[0]][name].append(r)
                        log(f"round {rnd + 1}/{ROUNDS} {case[0]} {name}: {r['value']:.0f} {case[4]}"
                            f" (whole run {r['with_flush'] or 0:.0f}), p99 {r['p99_us']:.0f} us")
        print_table(args.backend, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(backend, results):
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    fio_version = subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()
    qemu_version = subprocess.run(["qemu-nbd", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"\nfeitian backend `{backend}` vs {qemu_version} (--cache=writeback); {fio_version}, nbd engine;"
          f" {os.cpu_count()} CPUs ({cpu}); {SIZE_MIB} MiB images; {SECONDS} s runs; median of {ROUNDS} rounds\n")
    print("| case | feitian | qemu-nbd | ratio | feitian, whole run | qemu-nbd, whole run | ratio | p99 feitian / qemu-nbd (µs) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _, _, _, unit in CASES:
        f, q = results[name]["feitian"], results[name]["qemu-nbd"]
        fv, qv = median(f, "value"), median(q, "value")
        fw, qw = median(f, "with_flush"), median(q, "with_flush")
        fp, qp = median(f, "p99_us"), median(q, "p99_us")
        ratio = f"{fv / qv:.2f}" if qv else "-"
        wratio = f"{fw / qw:.2f}" if fw and qw else "-"
        print(f"| {name} | {fv:.0f} {unit} | {qv:.0f} {unit} | {ratio} | {fw or 0:.0f} | {qw or 0:.0f} | {wratio} |"
              f" {fp:.0f} / {qp:.0f} |")


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        log(f"FAILED: {e}")
        sys.exit(1)
