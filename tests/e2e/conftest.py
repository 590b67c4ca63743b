"""Black-box tests of packrun: they start the real binary and talk to it
over HTTP and through its CLI, as a user would.

Fixtures:
  up         `packrun up` on a free port, in a temporary data folder, with
             examples/packs installed at start and tests/e2e/packs/e2e
             registered through the API; shared by the tests of a module.
  start_up   a factory for a private `packrun up` with its own settings.
  roles      `packrun server` plus a separate `packrun worker` process on
             the same data folder.

The binary is $PACKRUN_BIN, by default build/packrun in the repository.
Only the Python standard library and pytest are used.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("PACKRUN_BIN", str(ROOT / "build" / "packrun"))
EXAMPLES = ROOT / "examples" / "packs"
FIXTURE_PACKS = Path(__file__).resolve().parent / "packs"
E2E_PACK = FIXTURE_PACKS / "e2e"

TERMINAL = {"succeeded", "failed", "timeout", "canceled", "abandoned"}

HEALTH_DEADLINE_S = 10
STOP_DEADLINE_S = 15


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra=None):
    """The test runner's environment without any PACKRUN_* setting, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKRUN_")}
    env.update(extra or {})
    return env


class Api:
    """A small HTTP client: each call returns (status, body), body being the
    decoded JSON when the answer is JSON, else the text."""

    def __init__(self, url, data_dir=None):
        self.url = url.rstrip("/")
        self.data_dir = Path(data_dir) if data_dir else None

    def request(self, method, path, body=None, raw=None, headers=None, timeout=60):
        data = raw
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, ctype, payload = resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as e:
            status, ctype, payload = e.code, e.headers.get("Content-Type", ""), e.read()
        text = payload.decode("utf-8")  # strict: every answer must be valid UTF-8
        if "json" in ctype:
            return status, json.loads(text)
        return status, text

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # --- executions -------------------------------------------------------

    def submit(self, action, parameters=None, **extra):
        body = {"action": action}
        if parameters is not None:
            body["parameters"] = parameters
        body.update(extra)
        status, rec = self.post("/api/v1/executions", body)
        assert status == 201, f"submit {action}: {status} {rec}"
        return rec

    def wait(self, exec_id, timeout=60):
        """The execution once it is terminal; fails the test after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(1, int(deadline - time.monotonic()))
            status, rec = self.get(f"/api/v1/executions/{exec_id}?wait={min(left, 300)}",
                                   timeout=left + 30)
            assert status == 200, f"GET execution {exec_id}: {status} {rec}"
            if rec["status"] in TERMINAL:
                return rec
            assert time.monotonic() < deadline, \
                f"execution {exec_id} not finished after {timeout}s: {rec}"

    def run(self, action, parameters=None, timeout=60, **extra):
        rec = self.submit(action, parameters, **extra)
        return self.wait(rec["id"], timeout)

    def wait_status(self, exec_id, wanted, timeout=15):
        """Poll (with a deadline) until the execution has one of the statuses."""
        wanted = {wanted} if isinstance(wanted, str) else set(wanted)
        deadline = time.monotonic() + timeout
        while True:
            status, rec = self.get(f"/api/v1/executions/{exec_id}")
            assert status == 200, rec
            if rec["status"] in wanted:
                return rec
            assert rec["status"] not in TERMINAL - wanted, \
                f"execution {exec_id} ended before reaching {wanted}: {rec}"
            assert time.monotonic() < deadline, \
                f"execution {exec_id} not {wanted} after {timeout}s: {rec}"
            time.sleep(0.02)

    def wait_output(self, exec_id, needle, stream="stdout", timeout=15):
        """Follow a log stream until it contains needle; returns what was read."""
        req = urllib.request.Request(f"{self.url}/api/v1/executions/{exec_id}/logs/{stream}?follow=1")
        got = b""
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            deadline = time.monotonic() + timeout
            while needle.encode() not in got:
                line = resp.readline()
                assert line, f"{stream} of {exec_id} ended without {needle!r}: {got!r}"
                got += line
                assert time.monotonic() < deadline
        return got.decode()

    def start_sleep(self, tmp_dir, seconds=30, timeout=15, **extra):
        """Submit e2e.sleep and wait (polling its pid file, with a deadline)
        until the action runs. Returns (record, pid of the action's shell)."""
        tmp_dir = Path(tmp_dir)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        pidfile = tmp_dir / f"sleep-{time.monotonic_ns()}.pid"
        rec = self.submit("e2e.sleep", {"seconds": seconds, "pidfile": str(pidfile)}, **extra)
        deadline = time.monotonic() + timeout
        while not pidfile.exists():
            assert time.monotonic() < deadline, \
                f"e2e.sleep {rec['id']} did not start within {timeout}s: " \
                f"{self.get('/api/v1/executions/' + str(rec['id']))}"
            time.sleep(0.02)
        return rec, int(pidfile.read_text())

    def wait_worker(self, name, timeout=10):
        """Poll /api/v1/workers until a worker of that name is listed."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.get("/api/v1/workers")
            if status == 200 and name in [w["name"] for w in body["workers"]]:
                return
            assert time.monotonic() < deadline, f"worker {name} not listed: {body}"
            time.sleep(0.02)

    def pack_refs(self):
        status, body = self.get("/api/v1/packs")
        assert status == 200, body
        return sorted(p["ref"] for p in body["packs"])

    # --- CLI ---------------------------------------------------------------

    def cli(self, *args, timeout=120, input=None, env=None):
        """Run the packrun CLI against this API; returns the CompletedProcess."""
        e = clean_env({"PACKRUN_API_URL": self.url})
        e.update(env or {})
        return subprocess.run([BIN, *map(str, args)], env=e, input=input, capture_output=True,
                              text=True, timeout=timeout)


class Daemon:
    """One packrun daemon process (up, server or worker)."""

    def __init__(self, role, data_dir, log_dir, args=(), env=None, port=None, name=None):
        self.role = role
        self.data_dir = Path(data_dir)
        self.port = port
        self.args = list(args)
        self.env = clean_env(env)
        self.name = name or role
        self.log_path = Path(log_dir) / f"{self.name}.{int(time.time() * 1000)}.stderr"
        self.proc = None
        self.signaled = False
        self.api = None
        if port is not None:
            self.api = Api(f"http://127.0.0.1:{port}", data_dir)

    def start(self):
        cmd = [BIN, self.role, "--data", str(self.data_dir)]
        if self.port is not None:
            cmd += ["--listen", f"127.0.0.1:{self.port}"]
        cmd += self.args
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        return self

    def wait_healthy(self, deadline_s=HEALTH_DEADLINE_S):
        deadline = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"packrun {self.role} exited with {self.proc.returncode} at start:\n"
                            f"{self.log()}")
            try:
                status, body = self.api.get("/health", timeout=2)
                if status == 200 and body.get("status") == "ok":
                    return self
                last = (status, body)
            except (OSError, urllib.error.URLError) as e:
                last = e
            time.sleep(0.02)
        pytest.fail(f"packrun {self.role}: /health did not answer ok within {deadline_s}s "
                    f"(last: {last}):\n{self.log()}")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig=signal.SIGTERM):
        self.signaled = True
        self.proc.send_signal(sig)

    def stop(self, timeout=STOP_DEADLINE_S):
        """SIGTERM; returns (exit code, seconds it took). Kills it if it hangs."""
        if self.proc is None:
            return None, 0
        t0 = time.monotonic()
        if self.proc.poll() is None and not self.signaled:
            self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "hung"
        self.log_file.close()
        return rc, time.monotonic() - t0

    def stop_and_check(self):
        rc, took = self.stop()
        print(f"--- packrun {self.role} ({self.name}) output, {self.log_path}:\n{self.log()}")
        assert rc == 0, (f"packrun {self.role} did not exit 0 within {STOP_DEADLINE_S}s of "
                         f"SIGTERM (exit: {rc}, {took:.1f}s):\n{self.log()}")


class Launcher:
    """Starts daemons for one test or module and stops them all at the end."""

    def __init__(self, base):
        self.base = Path(base)
        self.daemons = []
        self.n = 0

    def up(self, data=None, env=None, args=(), packs=EXAMPLES, register_e2e=True, name=None):
        self.n += 1
        data = Path(data) if data else self.base / f"data{self.n}"
        args = list(args)
        if packs:
            args += ["--packs", str(packs)]
        d = Daemon("up", data, self.base, args=args, env=env, port=free_port(),
                   name=name or f"up{self.n}").start()
        self.daemons.append(d)
        d.wait_healthy()
        if register_e2e:
            status, body = d.api.post("/api/v1/packs/register", {"path": str(E2E_PACK)})
            assert status == 201, f"register {E2E_PACK}: {status} {body}\n{d.log()}"
        return d

    def daemon(self, role, data, args=(), env=None, port=None, name=None):
        d = Daemon(role, data, self.base, args=args, env=env, port=port, name=name).start()
        self.daemons.append(d)
        return d

    def close(self):
        errors = []
        for d in reversed(self.daemons):
            if d.proc is not None and d.proc.returncode is None:
                try:
                    d.stop_and_check()
                except AssertionError as e:
                    errors.append(str(e))
            elif d.proc is not None:
                print(f"--- packrun {d.role} ({d.name}) output:\n{d.log()}")
        assert not errors, "\n".join(errors)


def _check_binary():
    if not os.access(BIN, os.X_OK):
        pytest.exit(f"packrun binary not found at {BIN}; build it or set PACKRUN_BIN", 2)


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """A `packrun up` shared by the tests of one module: examples/packs
    installed at start, the e2e fixture pack registered, default settings
    but for a short kill grace."""
    _check_binary()
    launcher = Launcher(tmp_path_factory.mktemp("up"))
    try:
        d = launcher.up(env={"PACKRUN_KILL_GRACE_SECONDS": "1"})
        yield d.api
    finally:
        launcher.close()


@pytest.fixture
def start_up(tmp_path):
    """A factory: start_up(env=..., args=..., data=...) -> Daemon (running, healthy)."""
    _check_binary()
    launcher = Launcher(tmp_path / "daemons")
    launcher.base.mkdir()
    try:
        yield launcher.up
    finally:
        launcher.close()


@pytest.fixture
def launcher(tmp_path):
    _check_binary()
    la = Launcher(tmp_path / "daemons")
    la.base.mkdir()
    try:
        yield la
    finally:
        la.close()


@pytest.fixture
def roles(tmp_path):
    """`packrun server` and a separate `packrun worker` on one data folder.
    Yields (api, server Daemon, worker Daemon)."""
    _check_binary()
    la = Launcher(tmp_path / "daemons")
    la.base.mkdir()
    data = tmp_path / "data"
    try:
        port = free_port()
        server = la.daemon("server", data, args=["--packs", str(EXAMPLES)], port=port,
                           name="server")
        server.wait_healthy()
        worker = la.daemon("worker", data, name="worker",
                           args=["--api", server.api.url, "--name", "e2e-worker-1", "--slots", "2"])
        server.api.wait_worker("e2e-worker-1")
        yield server.api, server, worker
    finally:
        la.close()


def copy_pack(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return Path(dst)
