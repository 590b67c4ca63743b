"""Black-box tests of packrun: they start the real binary and talk to it
over HTTP and through its CLI, as a user would.

Fixtures:
  up         `packrun up` on a free port, in a temporary data folder, with
             examples/packs installed at start and tests/e2e/packs/e2e
             registered through the API; shared by the tests of a module.
  start_up   a factory for a private `packrun up` with its own settings.
  roles      `packrun server` plus a separate `packrun worker` process on
             the same data folder.

Authentication: every daemon gets its own CLI config file (PACKRUN_CLI_CONFIG,
beside its data folder). `packrun up` writes its admin token there on first
start; before a `packrun server` starts, the fixtures make an admin token with
`packrun token create` and write the file themselves. Api sends that token as
`Authorization: Bearer` on every request (Api.with_token() and
Api.without_token() make clients with another token or none), Api.cli() runs
the CLI with that config file, and for tests that call urllib or the CLI
directly, a global urllib handler and clean_env() add the token of the daemon
whose URL they use.

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


# The CLI config file of each API the fixtures started, by URL: how code that
# does not go through Api finds the token to send.
CLI_CONFIGS = {}


def read_cli_config(path):
    """The keys of a CLI config file (api_url, token), {} when it is missing.
    The file is flat YAML with plain or double-quoted strings."""
    out = {}
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        if value.startswith('"'):
            value = json.loads(value)
        out[key.strip()] = value
    return out


def cli_config_for(url):
    return CLI_CONFIGS.get(url.rstrip("/"))


def clean_env(extra=None):
    """The test runner's environment without any PACKRUN_* setting, plus extra.
    A CLI pointed (PACKRUN_API_URL) at an API the fixtures started also gets
    that API's CLI config file, and so its token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKRUN_")}
    env.update(extra or {})
    cfg = cli_config_for(env.get("PACKRUN_API_URL", ""))
    if cfg and "PACKRUN_CLI_CONFIG" not in env and "PACKRUN_TOKEN" not in env:
        env["PACKRUN_CLI_CONFIG"] = str(cfg)
    return env


class _TokenHandler(urllib.request.BaseHandler):
    """Adds the token of a known API to urllib requests that carry none, for
    tests that call urllib.request.urlopen() themselves."""

    def http_request(self, req):
        if not req.has_header("Authorization"):
            url = req.full_url
            base = url[:url.index("/", len("http://"))] if url.count("/") > 2 else url
            cfg = cli_config_for(base)
            token = read_cli_config(cfg).get("token") if cfg else None
            if token:
                req.add_unredirected_header("Authorization", f"Bearer {token}")
        return req


urllib.request.install_opener(urllib.request.build_opener(_TokenHandler()))

# Api's own opener adds nothing: it sends exactly the token it is given.
_PLAIN_OPENER = urllib.request.build_opener()

_UNSET = object()


class Api:
    """A small HTTP client: each call returns (status, body), body being the
    decoded JSON when the answer is JSON, else the text. It sends the token
    in the CLI config file cli_config (read at each request, as the daemon
    may write it late), or the token given, or none (token=None)."""

    def __init__(self, url, data_dir=None, cli_config=None, token=_UNSET):
        self.url = url.rstrip("/")
        self.data_dir = Path(data_dir) if data_dir else None
        self.cli_config = Path(cli_config) if cli_config else None
        self._token = token

    @property
    def token(self):
        if self._token is not _UNSET:
            return self._token
        if self.cli_config:
            return read_cli_config(self.cli_config).get("token")
        return None

    def with_token(self, token):
        """A client of the same API that sends token (None: no token)."""
        return Api(self.url, self.data_dir, self.cli_config, token=token)

    def without_token(self):
        return self.with_token(None)

    def auth_headers(self):
        token = self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, method, path, body=None, raw=None, headers=None, timeout=60):
        data = raw
        hdrs = self.auth_headers()
        hdrs.update(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with _PLAIN_OPENER.open(req, timeout=timeout) as resp:
                status, ctype, payload = resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as e:
            status, ctype, payload = e.code, e.headers.get("Content-Type", ""), e.read()
            self.last_headers = e.headers
        else:
            self.last_headers = resp.headers
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
        req = urllib.request.Request(f"{self.url}/api/v1/executions/{exec_id}/logs/{stream}?follow=1",
                                     headers=self.auth_headers())
        got = b""
        with _PLAIN_OPENER.open(req, timeout=timeout) as resp:
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
        """Run the packrun CLI against this API, with its CLI config file (and
        so its token); returns the CompletedProcess."""
        e = clean_env({"PACKRUN_API_URL": self.url})
        if self.cli_config:
            e["PACKRUN_CLI_CONFIG"] = str(self.cli_config)
        e.update(env or {})
        return subprocess.run([BIN, *map(str, args)], env=e, input=input, capture_output=True,
                              text=True, timeout=timeout)


def default_cli_config(data_dir):
    """The CLI config file of the daemons on a data folder: beside it, so
    that a daemon restarted on the same data finds the same token."""
    data_dir = Path(data_dir)
    return data_dir.parent / f"{data_dir.name}.cli.yaml"


def make_token(data_dir, name, role, check=True):
    """`packrun token create` on a data folder; returns the token."""
    r = subprocess.run([BIN, "token", "create", name, "--role", role, "--data", str(data_dir)],
                       env=clean_env(), capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, f"token create {name}: {r.stdout}{r.stderr}"
    return r.stdout.strip()


class Daemon:
    """One packrun daemon process (up, server or worker). cli_config is the
    CLI config file it uses (PACKRUN_CLI_CONFIG), beside the data folder by
    default."""

    def __init__(self, role, data_dir, log_dir, args=(), env=None, port=None, name=None,
                 cli_config=None):
        self.role = role
        self.data_dir = Path(data_dir)
        self.port = port
        self.args = list(args)
        self.cli_config = Path(cli_config) if cli_config else default_cli_config(data_dir)
        env = dict(env or {})
        env.setdefault("PACKRUN_CLI_CONFIG", str(self.cli_config))
        # The tests' actions write into root's private temporary folders; the
        # unprivileged default (run_as: packrun) has tests of its own.
        env.setdefault("PACKRUN_RUN_AS", "root")
        self.env = clean_env(env)
        self.name = name or role
        self.log_path = Path(log_dir) / f"{self.name}.{int(time.time() * 1000)}.stderr"
        self.proc = None
        self.signaled = False
        self.api = None
        if port is not None:
            self.api = Api(f"http://127.0.0.1:{port}", data_dir, self.cli_config)
            CLI_CONFIGS[self.api.url] = self.cli_config

    def ensure_admin_token(self):
        """For a server, which makes no token itself: an admin token in the
        CLI config file, made with `packrun token create` unless the file
        holds one already."""
        if read_cli_config(self.cli_config).get("token"):
            return
        token = make_token(self.data_dir, f"e2e-admin-{time.monotonic_ns()}", "admin")
        self.cli_config.parent.mkdir(parents=True, exist_ok=True)
        self.cli_config.write_text(f'api_url: "{self.api.url if self.api else ""}"\n'
                                   f'token: "{token}"\n')
        self.cli_config.chmod(0o600)

    def start(self):
        if self.role == "server":
            self.ensure_admin_token()
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

    def up(self, data=None, env=None, args=(), packs=EXAMPLES, register_e2e=True, name=None,
           cli_config=None):
        self.n += 1
        data = Path(data) if data else self.base / f"data{self.n}"
        args = list(args)
        if packs:
            args += ["--packs", str(packs)]
        d = Daemon("up", data, self.base, args=args, env=env, port=free_port(),
                   name=name or f"up{self.n}", cli_config=cli_config).start()
        self.daemons.append(d)
        d.wait_healthy()
        if register_e2e:
            status, body = d.api.post("/api/v1/packs/register", {"path": str(E2E_PACK)})
            assert status == 201, f"register {E2E_PACK}: {status} {body}\n{d.log()}"
        return d

    def daemon(self, role, data, args=(), env=None, port=None, name=None, cli_config=None):
        d = Daemon(role, data, self.base, args=args, env=env, port=port, name=name,
                   cli_config=cli_config).start()
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
