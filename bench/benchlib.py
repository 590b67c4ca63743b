"""What the benchmarks in bench/ share: starting packrun on a temporary data
folder, talking to its API, statistics, and noticing other load on the
machine.  Python 3 standard library only."""

import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TERMINAL = {"succeeded", "failed", "timeout", "canceled", "abandoned"}

# What the worker passes on to an action (src/runner/runner.c, env_allow).
# Baselines get the same, so that the environment (PYTHONDONTWRITEBYTECODE,
# say) does not differ between the two sides of a comparison.
ENV_ALLOW = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")


class BenchError(Exception):
    """Something broke: the figures cannot be trusted."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- statistics -------------------------------------------------------------


def pct(values, p):
    """The p-th percentile (0-100) by linear interpolation."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary_ms(samples_s):
    ms = [x * 1000.0 for x in samples_s]
    return {
        "median_ms": round(statistics.median(ms), 4),
        "p90_ms": round(pct(ms, 90), 4),
        "p99_ms": round(pct(ms, 99), 4),
        "min_ms": round(min(ms), 4),
        "mean_ms": round(statistics.fmean(ms), 4),
    }


def bootstrap_ci(a, b, stat, rounds=1000, seed=1):
    """95% interval of stat(a) - stat(b), resampling each side."""
    rnd = random.Random(seed)
    diffs = []
    for _ in range(rounds):
        ra = [a[rnd.randrange(len(a))] for _ in a]
        rb = [b[rnd.randrange(len(b))] for _ in b]
        diffs.append(stat(ra) - stat(rb))
    return pct(diffs, 2.5), pct(diffs, 97.5)


# --- processes and the machine ----------------------------------------------


def proc_cpu(pid):
    """(own user+sys seconds, reaped children's user+sys seconds) of pid."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    # fields[0] is field 3 (state); utime=14, stime=15, cutime=16, cstime=17
    own = (int(fields[11]) + int(fields[12])) / tick
    children = (int(fields[13]) + int(fields[14])) / tick
    return own, children


def proc_memory(pid):
    """{"rss_kib", "peak_rss_kib"} of pid, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["peak_rss_kib"] = int(line.split()[1])
    return out


def system_busy():
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf(
        "SC_CLK_TCK")


class Load:
    """How busy the machine was with work that is not this benchmark's:
    system busy time minus this process, its children, and the daemons with
    their actions.  Other work on a 2-core machine skews the figures."""

    def __init__(self, daemon):
        self.daemon = daemon

    def _ours(self):
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system + sum(self.daemon.cpu())

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.sys0 = system_busy()
        self.ours0 = self._ours()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        foreign = max(0.0, system_busy() - self.sys0 - (self._ours() - self.ours0))
        self.result = {
            "wall_seconds": round(wall, 3),
            "foreign_cpu_seconds": round(foreign, 3),
            # the share of the machine's capacity that other work used
            "foreign_cpu_share": round(foreign / (max(wall, 1e-9) * (os.cpu_count() or 1)), 3),
        }
        return False


def busy_note(*loads):
    """A line warning that other work skewed a measurement, or ""."""
    share = max(l["foreign_cpu_share"] for l in loads)
    if share < 0.05:
        return ""
    return (f"    note: other work used up to {share * 100:.0f}% of the machine's CPU "
            f"during this measurement; the figures are skewed by it")


def find_binary(arg):
    cand = arg or os.environ.get("PACKRUN_BIN") or os.path.join(ROOT, "build", "packrun")
    if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
        raise BenchError(f"{cand}: no packrun binary (build it, or set PACKRUN_BIN / --packrun)")
    return os.path.abspath(cand)


def resolve_python():
    """python3 on PATH resolved to its real executable, as the worker does
    (a pyenv shim is a shell script that would add ~100 ms per start)."""
    p = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                       stdout=subprocess.PIPE, text=True, check=True)
    return p.stdout.strip()


def action_env(pack_dir, python=False):
    """The environment the worker gives an action of pack_dir."""
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    env["PACKRUN_PACK_DIR"] = pack_dir
    env["PACKRUN_PARAMETER_FORMAT"] = "json"
    if python:
        env["PYTHONPATH"] = os.path.join(pack_dir, "lib")
    return env


def write_pack(root, name, files):
    """Write a pack folder root/packs/name from {relative path: text}."""
    pack = os.path.join(root, "packs", name)
    for rel, text in files.items():
        path = os.path.join(pack, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        if rel.endswith(".sh"):
            os.chmod(path, 0o755)
    return pack


# --- the API ----------------------------------------------------------------


class Client:
    """One keep-alive connection to the API."""

    def __init__(self, port, token=None, timeout=120):
        self.port = port
        self.token = token
        self.timeout = timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, method, path, body=None, raw=False):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: reconnect,
                # and send again only what is safe to repeat.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
                if attempt or method != "GET":
                    raise
        if raw:
            return r.status, payload
        try:
            doc = json.loads(payload) if payload else None
        except ValueError:
            doc = None
        return r.status, doc

    def submit(self, action, parameters=None):
        body = {"action": action}
        if parameters is not None:
            body["parameters"] = parameters
        status, doc = self.call("POST", "/api/v1/executions", body)
        if status != 201 or not doc or "id" not in doc:
            raise BenchError(f"POST /api/v1/executions {action}: {status} {doc}")
        return doc["id"]

    def wait(self, eid, seconds=30):
        status, doc = self.call("GET", f"/api/v1/executions/{eid}?wait={seconds}")
        if status != 200 or not doc:
            raise BenchError(f"GET /api/v1/executions/{eid}: {status} {doc}")
        return doc

    def close(self):
        self.conn.close()


def check_succeeded(doc):
    if doc.get("status") != "succeeded":
        raise BenchError(f"execution {doc.get('id')} ({doc.get('action')}) ended "
                         f"{doc.get('status')}: {json.dumps(doc.get('result'))[:400]}")


# --- the daemons -------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """packrun on workdir/data with the packs in workdir/packs: either
    `packrun up` (API and worker in one process), or with split=True a
    `packrun server` and a separate `packrun worker` on the same database."""

    def __init__(self, binary, workdir, slots, actions, split=False):
        self.binary = binary
        self.workdir = workdir
        self.slots = slots
        self.actions = actions
        self.split = split
        self.procs = []
        self.port = None
        self.token = None
        self.log_path = os.path.join(workdir, "packrun.log")
        # `packrun up` and `server` write an admin token for the local CLI
        # to the CLI config; keep it in the temporary folder, not in the
        # user's ~/.config, and use it.
        self.cli_config = os.path.join(workdir, "cli.yaml")
        # Actions run as the user running the benchmark, like the baselines
        # (a root worker would otherwise switch to its run_as user).
        self.env = dict(os.environ, PACKRUN_CLI_CONFIG=self.cli_config, PACKRUN_RUN_AS="root")

    def client(self, timeout=120):
        return Client(self.port, self.token, timeout=timeout)

    def _read_token(self):
        """The token packrun wrote to the CLI config, or None (no file: a
        packrun without authentication)."""
        try:
            with open(self.cli_config) as f:
                for line in f:
                    m = re.match(r"""\s*token:\s*["']?([^"'\s]+)""", line)
                    if m:
                        return m.group(1)
        except OSError:
            pass
        return None

    @property
    def worker_pid(self):
        return self.procs[-1].pid

    def _spawn(self, argv):
        with open(self.log_path, "ab") as logf:
            self.procs.append(subprocess.Popen(
                [self.binary] + argv, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, cwd=self.workdir, env=self.env))

    def start(self):
        packs = os.path.join(self.workdir, "packs")
        data = os.path.join(self.workdir, "data")
        for _ in range(3):
            self.port = free_port()
            listen = f"127.0.0.1:{self.port}"
            if self.split:
                self._spawn(["server", "--data", data, "--listen", listen, "--packs", packs])
                if self._healthy(timeout=30) and not self._read_token():
                    # `server` writes no CLI token (only `up` does): make one.
                    self.token = self._create_token(data)
                if self._ready(timeout=30, worker=False):
                    self._spawn(["worker", "--data", data, "--api", f"http://{listen}",
                                 "--slots", str(self.slots)])
            else:
                self._spawn(["up", "--data", data, "--listen", listen, "--packs", packs,
                             "--slots", str(self.slots)])
            if self._ready(timeout=30, worker=True):
                return
            self.reset()
            if not re.search(r"(?i)address already in use|bind", self.log_tail()):
                break
            log(f"bench: packrun could not listen on port {self.port}; trying another")
        raise BenchError(f"packrun did not start; see its log:\n{self.log_tail()}")

    def _healthy(self, timeout):
        """GET /health (a public route) answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                return False
            try:
                c = Client(self.port, timeout=5)
                status, _ = c.call("GET", "/health")
                c.close()
                if status == 200:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        return False

    def _create_token(self, data):
        """An operator token made with `packrun token create`, or None when
        this packrun has no tokens."""
        p = subprocess.run([self.binary, "token", "create", "bench", "--role", "operator",
                            "--data", data], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=self.env, cwd=self.workdir)
        token = p.stdout.strip()
        return token if p.returncode == 0 and token else None

    def _ready(self, timeout, worker):
        """The API answers, the actions are registered, and (if worker) our
        worker is running: in `up` it starts after the API."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                return False
            try:
                self.token = self._read_token() or self.token
                c = Client(self.port, self.token, timeout=5)
                ok = all(c.call("GET", f"/api/v1/actions/{a}")[0] == 200 for a in self.actions)
                if ok and worker:
                    status, doc = c.call("GET", "/api/v1/workers")
                    ok = status == 200 and any(
                        w.get("pid") == self.worker_pid and w.get("status") == "running"
                        for w in doc.get("workers", []))
                c.close()
                if ok:
                    return True
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        return False

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def runtime_path(self, name):
        """The interpreter the worker resolved for runtime name, from its log."""
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    m = re.search(r"runtime %s: (\S+)" % re.escape(name), line)
                    if m:
                        return m.group(1)
        except OSError:
            pass
        return None

    def cpu(self):
        """(own, reaped children's) CPU seconds, summed over the daemons."""
        own = children = 0.0
        for p in self.procs:
            o, c = proc_cpu(p.pid)
            own += o
            children += c
        return own, children

    def exit_codes(self):
        return [p.returncode for p in self.procs]

    def stop(self):
        # The worker first, so that it does not see the API vanish under it.
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    log(f"bench: packrun (pid {p.pid}) ignored SIGTERM for 30 s; killing it")
                    p.kill()
                    p.wait()

    def reset(self):
        self.stop()
        self.procs = []
        self.token = None
