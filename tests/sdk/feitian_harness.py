"""Starting and stopping a real `feitian up` for tests and benchmarks.

Each FeitianProcess owns one temporary data directory and one child process, which it
stops by pid (SIGTERM, then SIGKILL) however the test ends.
"""
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def feitian_bin():
    b = os.environ.get("FEITIAN_BIN") or str(ROOT / "target" / "debug" / "feitian")
    if not os.access(b, os.X_OK):
        raise RuntimeError(f"feitian binary {b} not found: build it with `cargo build` or set FEITIAN_BIN")
    return b


class Child:
    """A child process this harness started, stopped only by its pid."""
    proc = None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops the child by pid; returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill9(self):
        return self.stop(signal.SIGKILL)


class FeitianProcess(Child):
    def __init__(self, data_dir=None, env=None, listen="127.0.0.1:0", pangu_listen="127.0.0.1:0", config=None):
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="feitian-test-")
            data_dir = Path(self._tmp.name) / "data"
        self.data_dir = Path(data_dir)
        self.env = dict(os.environ, **(env or {}))
        # Tests run the instance model unless they ask for real VMs (see QemuFeitian).
        self.env.setdefault("FEITIAN_COMPUTE_DRIVER", "sim")
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            self.env.pop(k, None)
        self.listen = listen
        self.pangu_listen = pangu_listen
        self.config = config
        self.proc = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="feitian-log-"))

    # -- lifecycle --------------------------------------------------------------------
    def start(self, timeout=30):
        n = len(list(self.log_dir.iterdir()))
        self.stdout_path = self.log_dir / f"stdout.{n}"
        self.stderr_path = self.log_dir / f"stderr.{n}"
        args = [feitian_bin(), "up", "--data-dir", str(self.data_dir), "--listen", self.listen,
                "--pangu-listen", self.pangu_listen]
        if self.config:
            args += ["--config", str(self.config)]
        self.proc = subprocess.Popen(
            args,
            stdout=open(self.stdout_path, "wb"),
            stderr=open(self.stderr_path, "wb"),
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"feitian exited with {self.proc.returncode}: {self.stderr_path.read_text()}")
            out = self.stdout_path.read_text()
            m = re.search(r"^endpoint: http://(\S+)", out, re.M)
            p = re.search(r"^storage: pangu master at (\S+)", out, re.M)
            if m and p:
                self.pangu_master = p.group(1)
                self.endpoint = m.group(1)
                self.host, port = self.endpoint.rsplit(":", 1)
                self.port = int(port)
                break
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("feitian did not print its endpoint in time")
        with urllib.request.urlopen(f"http://{self.endpoint}/healthz", timeout=5) as r:
            assert r.status == 200
        return self

    def stdout(self):
        return self.stdout_path.read_text()

    def credentials(self):
        c = json.loads((self.data_dir / "credentials.json").read_text())
        return c["access_key_id"], c["access_key_secret"]


    def cleanup(self):
        self.stop()
        self.remove_host_leftovers()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- what a real-VM feitian leaves on the host if it is killed --------------------------
    def host_prefix(self):
        """The prefix of this data directory's namespaces and links (as feitian computes it)."""
        import hashlib
        key = str(Path(self.data_dir).resolve())
        return "ft" + hashlib.sha256(key.encode()).hexdigest()[:6]

    def qemu_pids(self):
        """Live QEMU processes this feitian started, from their pid files."""
        pids = []
        for f in (Path(self.data_dir) / "instances").glob("*/qemu.pid"):
            try:
                pid = int(f.read_text().strip())
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                if state != "Z" and f"process=feitian-{f.parent.name}" in cmdline:
                    pids.append(pid)
            except (OSError, ValueError):
                pass
        return pids

    def host_leftovers(self):
        """Processes, namespaces, links and nftables tables of this feitian still on the host."""
        prefix = self.host_prefix()
        out = [f"qemu pid {p}" for p in self.qemu_pids()]
        netns = Path("/var/run/netns")
        if netns.exists():
            out += [f"namespace {n.name}" for n in netns.iterdir() if n.name.startswith(prefix)]
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        out += [f"link {l.split(':')[1].strip()}" for l in links.splitlines() if f": {prefix}" in l]
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        out += [f"nft {t}" for t in tables.splitlines() if "feitian" in t]
        return out

    def remove_host_leftovers(self):
        """After a kill -9: the QEMUs it started (by pid), its namespaces, host link and host guard."""
        if not (Path(self.data_dir) / "instances").exists():
            return  # the sim driver: nothing on the host
        for pid in self.qemu_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        prefix = self.host_prefix()
        netns = Path("/var/run/netns")
        if netns.exists():
            for n in netns.iterdir():
                if n.name.startswith(prefix):
                    subprocess.run(["ip", "netns", "del", n.name], capture_output=True)
        subprocess.run(["ip", "link", "del", prefix + "h"], capture_output=True)
        subprocess.run(["nft", "delete", "table", "inet", prefix + "_host_guard"], capture_output=True)

    # -- the CLI on the same data directory -------------------------------------------------
    def cli(self, *args, check=True):
        return subprocess.run(
            [feitian_bin(), *args, "--data-dir", str(self.data_dir)],
            capture_output=True, text=True, check=check, env=self.env, timeout=60,
        )

    def new_account(self, name):
        out = self.cli("account", "create", name).stdout
        c = json.loads(out.strip().splitlines()[-1])
        return c["access_key_id"], c["access_key_secret"]


class ChunkserverProcess(Child):
    """One `feitian chunkserver` child, stopped by pid."""

    def __init__(self, master, data_dir, rack, repair_rate_mib=64, scrub_interval_secs=0):
        self.master, self.data_dir, self.rack = master, Path(data_dir), rack
        self.repair_rate_mib = repair_rate_mib
        self.scrub_interval_secs = scrub_interval_secs
        self.proc = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="chunkserver-log-"))
        self.runs = 0

    def start(self, timeout=30):
        self.runs += 1
        self.stdout_path = self.log_dir / f"stdout.{self.runs}"
        self.stderr_path = self.log_dir / f"stderr.{self.runs}"
        env = dict(os.environ)
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(k, None)
        self.proc = subprocess.Popen(
            [feitian_bin(), "chunkserver", "--master", self.master, "--data-dir", str(self.data_dir),
             "--rack", self.rack, "--repair-rate-mib", str(self.repair_rate_mib),
             "--scrub-interval-secs", str(self.scrub_interval_secs)],
            stdout=open(self.stdout_path, "wb"), stderr=open(self.stderr_path, "wb"),
            stdin=subprocess.DEVNULL, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chunkserver exited with {self.proc.returncode}: {self.stderr_path.read_text()}")
            m = re.search(r"^chunkserver (\d+) serving at (\S+)", self.stdout_path.read_text(), re.M)
            if m:
                self.server_id, self.addr = int(m.group(1)), m.group(2)
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the chunkserver did not start in time")

    def logs(self):
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("stderr.*")))

def pangu_status(master, secret_file=None):
    """GET /pangu/v1/status, signed with the cluster secret (the scheme: crates/pangu/src/auth.rs)
    in `secret_file` (default: FEITIAN_PANGU_SECRET_FILE)."""
    lines = open(secret_file or os.environ["FEITIAN_PANGU_SECRET_FILE"]).read().splitlines()
    key = bytes.fromhex(next(l.strip() for l in lines if l.strip() and not l.startswith("#")))
    path, ts, nonce = "/pangu/v1/status", str(int(time.time() * 1000)), secrets.token_hex(8)
    to_sign = "\n".join(["PANGU1-HMAC-SHA256", "cluster", "GET", path, ts, nonce, "0", "", ""])
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"PANGU1-HMAC-SHA256 Key=cluster,Timestamp={ts},Nonce={nonce},Signature={sig}"
    req = urllib.request.Request(f"http://{master}{path}", headers={"Authorization": auth})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
