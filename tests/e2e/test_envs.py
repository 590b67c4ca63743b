"""Runtime environments (issue 4), black-box: packs with a requirements.txt
or a package.json, built by workers into DATA/envs/<runtime>/<key>/.

Everything runs offline. A session fixture builds a wheelhouse (Debian's
pip, setuptools and wheel wheels; wheels of tests/e2e/envs/python/tiny*;
an sdist of tinyslow whose build sleeps), and the daemons run with
PIP_NO_INDEX=1 and PIP_FIND_LINKS pointing at it. Node packs use a local
"file:" dependency. The packs themselves are written per test from
tests/e2e/envs/actions/probe.{py,js}, an action that reports the
interpreter it runs on, whether that environment has its .ready marker,
and what the modules it was asked to import contain.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from conftest import BIN, clean_env, free_port

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "envs"
# The system's tools and nothing else: python3 is /usr/bin/python3 (with
# Debian's pip), node and npm are /usr/bin's; no pyenv shims, no uv.
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEY_RE = re.compile(r"^[0-9a-f]{64}$")
BUILT_RE = re.compile(r"environment ([0-9a-f]{12}) \((\w+), pack ([\w-]+)\) built in")
MISSING = "nosuchpkg-packrun-e2e"


# --- the wheelhouse --------------------------------------------------------

def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def build_wheel(src, out_dir):
    """A pure-Python wheel of the modules in src (named by src/wheel.json)."""
    meta = json.loads((src / "wheel.json").read_text())
    name, version = meta["name"], meta["version"]
    dist_info = f"{name}-{version}.dist-info"
    files = [(p.name, p.read_bytes()) for p in sorted(src.glob("*.py"))]
    files += [(f"{dist_info}/METADATA",
               f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()),
              (f"{dist_info}/WHEEL",
               b"Wheel-Version: 1.0\nGenerator: packrun-e2e\nRoot-Is-Purelib: true\n"
               b"Tag: py3-none-any\n")]
    record = "".join(_record_line(p, d) for p, d in files) + f"{dist_info}/RECORD,,\n"
    path = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in files:
            z.writestr(p, d)
        z.writestr(f"{dist_info}/RECORD", record)
    return path


def build_sdist(src, out_dir, name, version):
    path = out_dir / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        for f in sorted(src.iterdir()):
            t.add(f, arcname=f"{name}-{version}/{f.name}")
    return path


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory):
    wh = tmp_path_factory.mktemp("wheelhouse")
    debian = sorted(Path("/usr/share/python-wheels").glob("*.whl"))
    assert debian, "no wheels in /usr/share/python-wheels (python3-pip-whl)"
    for w in debian:
        shutil.copy(w, wh)
    build_wheel(FIXTURES / "python" / "tinyone", wh)
    build_wheel(FIXTURES / "python" / "tinytwo", wh)
    build_sdist(FIXTURES / "python" / "tinyslow", wh, "tinyslow", "1.0")
    return wh


def daemon_env(wheelhouse, tmp_path, **extra):
    """Settings of every daemon that builds: offline, from the wheelhouse,
    with pip's and npm's caches in the test's folder (pip caches the wheels
    it builds: a cached tinyslow would not be built, nor slow, again)."""
    env = {"PATH": SYS_PATH, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse),
           "PIP_CACHE_DIR": str(tmp_path / "cache" / "pip"),
           "npm_config_cache": str(tmp_path / "cache" / "npm"),
           "PACKRUN_KILL_GRACE_SECONDS": "1", "PACKRUN_STOP_GRACE_SECONDS": "2",
           "TINYSLOW_SLEEP": "0"}
    env.update(extra)
    return env


# --- packs -------------------------------------------------------------------

PROBE_YAML = """\
ref: {ref}.probe
label: Probe
description: Report the interpreter, its environment and some modules.
runner_type: python
entry_point: probe.py
output_format: json
parameters:
  imports:
    type: array
    default: []
  sleep:
    type: number
    default: 0
  startfile:
    type: string
  waitfor:
    type: string
"""

PROBE_JS_YAML = """\
ref: {ref}.probe_js
label: Probe (Node)
description: Report NODE_PATH and require('tiny').
runner_type: node
entry_point: probe.js
output_format: json
"""


def make_pack(path, ref, requirements=None, node=False, version="1.0.0"):
    """Write (or rewrite) a pack folder; returns its path."""
    path = Path(path)
    actions = path / "actions"
    actions.mkdir(parents=True, exist_ok=True)
    (path / "pack.yaml").write_text(
        f'ref: {ref}\nlabel: {ref}\ndescription: An environments test pack.\n'
        f'version: "{version}"\n')
    shutil.copy(FIXTURES / "actions" / "probe.py", actions / "probe.py")
    (actions / "probe.yaml").write_text(PROBE_YAML.format(ref=ref))
    req = path / "requirements.txt"
    if requirements is None:
        req.unlink(missing_ok=True)
    else:
        req.write_text(requirements)
    if node:
        shutil.copy(FIXTURES / "actions" / "probe.js", actions / "probe.js")
        (actions / "probe_js.yaml").write_text(PROBE_JS_YAML.format(ref=ref))
        vendor = path / "vendor" / "tiny"
        if vendor.exists():
            shutil.rmtree(vendor)
        shutil.copytree(FIXTURES / "node" / "tiny", vendor)
        (path / "package.json").write_text(json.dumps(
            {"name": ref, "version": version, "private": True,
             "dependencies": {"tiny": "file:./vendor/tiny"}}, indent=2))
    return path


def register(api, path):
    status, body = api.post("/api/v1/packs/register", {"path": str(path)})
    assert status == 201, f"register {path}: {status} {body}"
    return body


# --- daemons -------------------------------------------------------------

class Cluster:
    """A `packrun server` and any number of `packrun worker` processes on
    one data folder, started through conftest's Launcher."""

    def __init__(self, launcher, data, env):
        self.launcher = launcher
        self.data = Path(data)
        self.env = env
        self.server = None
        self.api = None
        self.workers = []

    def start_server(self, env=None):
        self.server = self.launcher.daemon("server", self.data, env=env or self.env,
                                           port=free_port(), name="server")
        self.server.wait_healthy()
        self.api = self.server.api
        return self.server

    def start_worker(self, name, slots=2, env=None, wait=True):
        d = self.launcher.daemon("worker", self.data, env=env or self.env, name=name,
                                 args=["--api", self.api.url, "--name", name,
                                       "--slots", str(slots)])
        self.workers.append(d)
        if wait:
            self.api.wait_worker(name)
        return d

    def worker_logs(self):
        return "".join(w.log() for w in self.workers)

    def builds(self):
        """(key prefix, runtime, pack) of every "built in" line of the workers."""
        return BUILT_RE.findall(self.worker_logs())

    # --- the data folder's environments ---

    def env_dir(self, key, runtime="python"):
        return self.data / "envs" / runtime / key

    def env_keys(self, runtime="python"):
        d = self.data / "envs" / runtime
        return sorted(p.name for p in d.iterdir() if KEY_RE.match(p.name)) if d.exists() else []

    def ready(self, key, runtime="python"):
        p = self.env_dir(key, runtime) / ".ready"
        return json.loads(p.read_text()) if p.exists() else None


@pytest.fixture
def cluster(launcher, tmp_path, wheelhouse):
    """A server and one worker ("w1", 2 slots), offline pip settings."""
    c = Cluster(launcher, tmp_path / "data", daemon_env(wheelhouse, tmp_path))
    c.start_server()
    c.start_worker("w1")
    return c


def env_of(rec):
    assert rec["result"] is not None, rec
    env = rec["result"].get("environment")
    assert isinstance(env, dict), f"no environment in the result: {rec}"
    return env


def succeeded(rec):
    assert rec["status"] == "succeeded", json.dumps(rec, indent=1)
    return rec["result"]["data"]


def wait_env_ready(api, pack, timeout=60, not_key=None):
    """Poll GET /api/v1/environments until one row lists pack as a user and is
    ready (and is not not_key); returns the row."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = api.get("/api/v1/environments")
        assert status == 200, body
        for row in body["environments"]:
            if pack in row.get("packs", []) and row["status"] == "ready" \
                    and row["key"] != not_key:
                return row
        assert time.monotonic() < deadline, \
            f"no ready environment of {pack} after {timeout}s: {body}"
        time.sleep(0.1)


def wait_file(path, timeout, what):
    deadline = time.monotonic() + timeout
    while not Path(path).exists() or not Path(path).read_text().strip():
        assert time.monotonic() < deadline, f"{what}: {path} not written within {timeout}s"
        time.sleep(0.02)
    return Path(path).read_text()


def descendants(pid):
    """The pids of every process below pid (from /proc, now)."""
    children = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- 1. the API never needs an interpreter -----------------------------------

def test_api_without_interpreters(launcher, tmp_path, wheelhouse):
    c = Cluster(launcher, tmp_path / "data", daemon_env(wheelhouse, tmp_path))
    server = c.start_server(env=daemon_env(wheelhouse, tmp_path, PATH="/nonexistent"))
    environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
    assert b"PATH=/nonexistent" in environ
    assert all(shutil.which(t, path="/nonexistent") is None for t in ("python3", "node", "npm"))

    pack = make_pack(tmp_path / "nopy", "nopy", requirements="tinyone\n")
    body = register(c.api, pack)
    assert body["ref"] == "nopy"
    assert body.get("environment") == "pending", body
    assert "requirements.txt" in json.dumps(body.get("manifests")), body
    status, got = c.api.get("/api/v1/packs/nopy")
    assert status == 200, got

    # A worker with the ordinary PATH on the same data folder builds it and
    # runs the action in it.
    c.start_worker("w1")
    rec = c.api.run("nopy.probe", {"imports": ["tinyone"]}, timeout=90)
    data = succeeded(rec)
    env = env_of(rec)
    assert env["status"] in ("created", "ready") and KEY_RE.match(env["key"]), env
    assert data["in_venv"] and data["ready_at_start"], data
    assert data["modules"]["tinyone"].get("value") == "tinyone 1.0", data
    assert Path(data["prefix"]) == c.env_dir(env["key"]).resolve(), data
    # The server started nothing: no process below it.
    assert descendants(server.proc.pid) == [], "the server has child processes"


# --- 2. first run builds, later runs reuse -----------------------------------

def test_first_run_builds_later_runs_reuse(cluster, tmp_path):
    c = cluster
    pack = make_pack(tmp_path / "reuse", "reuse", requirements="tinyone\ntinytwo\n")
    assert register(c.api, pack).get("environment") == "pending"

    first = c.api.run("reuse.probe", {"imports": ["tinyone", "tinytwo"]}, timeout=90)
    data = succeeded(first)
    env = env_of(first)
    key = env["key"]
    # The setup job queued at registration may have built it first: then
    # this execution found it ready (or waited for it).
    assert env["status"] in ("created", "ready"), env
    assert KEY_RE.match(key) and env["error"] is None, env
    assert c.env_keys() == [key]
    ready = c.ready(key)
    assert ready is not None, f"no .ready in {c.env_dir(key)}"
    assert ready["key"] == key and ready["runtime"] == "python"
    assert {(i["name"], i["version"]) for i in ready["installed"]} >= \
        {("tinyone", "1.0"), ("tinytwo", "2.0")}, ready
    assert data["in_venv"] and data["ready_at_start"], data
    assert Path(data["prefix"]) == c.env_dir(key).resolve(), data
    assert data["virtual_env"] and Path(data["virtual_env"]).resolve() == c.env_dir(key).resolve()
    assert data["modules"]["tinyone"]["value"] == "tinyone 1.0", data
    assert data["modules"]["tinytwo"]["value"] == "tinytwo 2.0", data
    assert data["modules"]["tinyone"]["file"].startswith(data["prefix"]), data

    built_at = ready["built_at"]
    checks = []
    for _ in range(7):
        rec = c.api.run("reuse.probe", {"imports": ["tinyone"]}, timeout=30)
        d = succeeded(rec)
        e = env_of(rec)
        assert e["status"] == "ready" and e["key"] == key and e["error"] is None, e
        assert d["modules"]["tinyone"]["value"] == "tinyone 1.0"
        checks.append(e["seconds"])
    # "The check on a ready environment costs well under a millisecond."
    assert max(checks) < 0.05 and statistics.median(checks) < 0.001, \
        f"checks of a ready environment took {checks} s"
    assert c.ready(key)["built_at"] == built_at, "the environment was rebuilt"
    assert len(c.builds()) == 1, c.worker_logs()


def test_registration_prepares_the_environment(cluster, tmp_path):
    """The setup job queued at registration builds the environment before
    any execution asks for it: the first execution finds it ready."""
    c = cluster
    assert register(c.api, make_pack(tmp_path / "warm", "warm", requirements="tinytwo\n")) \
        .get("environment") == "pending"
    row = wait_env_ready(c.api, "warm", timeout=60)
    key = row["key"]
    assert c.ready(key) is not None and row["runtime"] == "python", row
    assert row["size_bytes"] > 0 and row["built_at"], row
    assert c.builds() == [(key[:12], "python", "warm")], c.worker_logs()
    rec = c.api.run("warm.probe", {"imports": ["tinytwo"]}, timeout=30)
    assert succeeded(rec)["modules"]["tinytwo"]["value"] == "tinytwo 2.0"
    assert env_of(rec)["key"] == key and env_of(rec)["status"] == "ready", env_of(rec)
    assert env_of(rec)["seconds"] < 0.05, env_of(rec)


# --- 3. content addressing ---------------------------------------------------

def test_same_requirements_share_changed_make_new(cluster, tmp_path):
    c = cluster
    a = make_pack(tmp_path / "sharea", "sharea", requirements="tinyone\n")
    b = make_pack(tmp_path / "shareb", "shareb", requirements="tinyone\n")
    register(c.api, a)
    register(c.api, b)
    ra = c.api.run("sharea.probe", {"imports": ["tinyone"]}, timeout=90)
    rb = c.api.run("shareb.probe", {"imports": ["tinyone"]}, timeout=90)
    succeeded(ra), succeeded(rb)
    old = env_of(ra)["key"]
    assert env_of(rb)["key"] == old, (env_of(ra), env_of(rb))
    assert c.env_keys() == [old], "two packs with one requirements.txt: one folder"
    assert [b[0] for b in c.builds()] == [old[:12]], c.worker_logs()

    # A long execution on the current release of sharea...
    startfile, go = tmp_path / "long.pid", tmp_path / "long.go"
    long = c.api.submit("sharea.probe", {"imports": ["tinyone"], "waitfor": str(go),
                                         "startfile": str(startfile)})
    wait_file(startfile, 30, "the long execution")

    # ...while sharea is upgraded with a changed requirements.txt.
    make_pack(a, "sharea", requirements="tinyone\ntinytwo\n", version="1.1.0")
    body = register(c.api, a)
    assert body["environment"] == "pending"
    new = c.api.run("sharea.probe", {"imports": ["tinyone", "tinytwo"]}, timeout=90)
    nd = succeeded(new)
    ne = env_of(new)
    assert ne["key"] != old and KEY_RE.match(ne["key"]), ne
    assert nd["modules"]["tinytwo"]["value"] == "tinytwo 2.0", nd
    assert Path(nd["prefix"]) == c.env_dir(ne["key"]).resolve()
    assert sorted(c.env_keys()) == sorted([old, ne["key"]])

    go.touch()  # the long execution imports its module only now
    done = c.api.wait(long["id"], timeout=60)
    ld = succeeded(done)
    assert env_of(done)["key"] == old
    assert Path(ld["prefix"]) == c.env_dir(old).resolve(), ld
    assert ld["ready_at_end"] and ld["modules"]["tinyone"]["value"] == "tinyone 1.0", ld
    assert c.ready(old) is not None, "the old environment was touched"
    # shareb still uses the old one.
    rb2 = c.api.run("shareb.probe", {"imports": ["tinyone"]}, timeout=30)
    succeeded(rb2)
    assert env_of(rb2)["key"] == old and env_of(rb2)["status"] == "ready"


def other_python():
    """A Python 3 (with pip 22.3+ and venv) whose real path is not
    /usr/bin/python3's, or None."""
    base = os.path.realpath("/usr/bin/python3")
    for c in sorted(Path("/root/.pyenv/versions").glob("3.1[0-9]*/bin/python3")) + \
            sorted(Path("/usr/local/bin").glob("python3.1[0-9]")):
        if os.path.realpath(c) == base or not os.access(c, os.X_OK):
            continue
        r = subprocess.run([str(c), "-c", "import venv, pip, sys; "
                            "print(pip.__version__, '%d.%d.%d' % sys.version_info[:3])"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            pip_version, version = r.stdout.split()
            if tuple(int(x) for x in pip_version.split(".")[:2]) >= (22, 3):
                return str(c), version
    return None


def test_key_covers_interpreter_and_index_settings(cluster, tmp_path, wheelhouse):
    """The key covers the interpreter's real path and version (not the name
    it was configured by) and the pip index settings."""
    c = cluster
    register(c.api, make_pack(tmp_path / "keyed", "keyed", requirements="tinyone\n"))
    k0 = env_of(succeeded_rec(c.api.run("keyed.probe", timeout=90)))["key"]

    def on_worker(name, **env):
        for w in c.workers:
            if w.proc.poll() is None:
                w.stop_and_check()
        c.start_worker(name, env=daemon_env(wheelhouse, tmp_path, **env))
        rec = c.api.run("keyed.probe", {"imports": ["tinyone"]}, timeout=90)
        data = succeeded(rec)
        assert rec["worker"] == name
        assert data["modules"]["tinyone"]["value"] == "tinyone 1.0", data
        return env_of(rec), data

    # Another name for the same interpreter: the same environment.
    alias = tmp_path / "bin" / "py"
    alias.parent.mkdir()
    alias.symlink_to("/usr/bin/python3")
    env, _ = on_worker("w-alias", PACKRUN_RUNTIMES_PYTHON_INTERPRETER=str(alias))
    assert env["key"] == k0 and env["status"] == "ready", env

    # The same wheels, found through another PIP_FIND_LINKS: another key.
    links = tmp_path / "links"
    links.symlink_to(wheelhouse)
    env, data = on_worker("w-links", PIP_FIND_LINKS=str(links))
    k1 = env["key"]
    assert k1 != k0 and env["status"] == "created", env
    assert Path(data["prefix"]) == c.env_dir(k1).resolve()

    # Another interpreter: another key, built with that interpreter.
    other = other_python()
    if other is None:
        pytest.skip("no second Python 3 with pip 22.3+ on this machine")
    path, version = other
    env, data = on_worker("w-other", PACKRUN_RUNTIMES_PYTHON_INTERPRETER=path)
    assert env["key"] not in (k0, k1) and env["status"] == "created", env
    assert c.ready(env["key"])["interpreter_version"] == version, c.ready(env["key"])
    assert c.ready(k0)["interpreter_version"] != version
    assert Path(data["prefix"]) == c.env_dir(env["key"]).resolve()


def test_pip_options_from_config(launcher, tmp_path, wheelhouse):
    """docs/environments.md: `environments.pip_options` (a list, one argument
    per item) is added to `pip install` and is part of the key."""
    c = Cluster(launcher, tmp_path / "data", daemon_env(wheelhouse, tmp_path))
    c.start_server()
    c.start_worker("w1")
    register(c.api, make_pack(tmp_path / "opts", "opts", requirements="tinyone\n"))
    k0 = env_of(succeeded_rec(c.api.run("opts.probe", timeout=90)))["key"]
    c.workers[0].stop_and_check()

    config = tmp_path / "worker.yaml"
    config.write_text('environments:\n  pip_options: ["--no-deps"]\n')
    w = c.launcher.daemon("worker", c.data, env=c.env, name="w-opts",
                          args=["--api", c.api.url, "--name", "w-opts", "--config", str(config)])
    deadline = time.monotonic() + 10
    while True:
        assert w.proc.poll() is None, \
            f"packrun worker --config {config} ({config.read_text()!r}) exited " \
            f"{w.proc.returncode}:\n{w.log()}"
        status, body = c.api.get("/api/v1/workers")
        if "w-opts" in [x["name"] for x in body.get("workers", [])]:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    rec = c.api.run("opts.probe", {"imports": ["tinyone"]}, timeout=90)
    assert succeeded(rec)["modules"]["tinyone"]["value"] == "tinyone 1.0"
    key = env_of(rec)["key"]
    assert key != k0, "the pip options are not part of the key"
    log = (c.data / "envs" / "python" / f"{key}.log").read_text()
    assert "--no-deps" in log, log


# --- 4. the race ------------------------------------------------------------

def test_race_4_workers_32_executions_one_build(launcher, tmp_path, wheelhouse):
    # tinyslow's build sleeps 2 s: every execution arrives while it runs.
    c = Cluster(launcher, tmp_path / "data", daemon_env(wheelhouse, tmp_path, TINYSLOW_SLEEP="2"))
    c.start_server()
    pack = make_pack(tmp_path / "race", "race", requirements="tinyone\ntinytwo\ntinyslow\n")
    assert register(c.api, pack)["environment"] == "pending"
    # The setup job and 32 executions are queued before any worker runs:
    # then 4 workers start together and race for all of them.
    ids = [c.api.submit("race.probe", {"imports": ["tinyone", "tinytwo", "tinyslow"]})["id"]
           for _ in range(32)]
    names = [f"race-{i}" for i in range(4)]
    for n in names:
        c.start_worker(n, slots=2, wait=False)
    recs = [c.api.wait(i, timeout=120) for i in ids]

    bad = [r for r in recs if r["status"] != "succeeded"]
    assert not bad, json.dumps(bad[:3], indent=1)
    keys = {env_of(r)["key"] for r in recs}
    assert len(keys) == 1, keys
    key = keys.pop()
    for r in recs:
        d = r["result"]["data"]
        assert env_of(r)["status"] in ("created", "ready"), env_of(r)
        assert d["in_venv"] and d["ready_at_start"], d
        assert d["modules"]["tinyslow"]["value"] == "tinyslow 1.0", d
    assert len({r["worker"] for r in recs}) >= 2, "the executions did not spread over workers"
    assert c.env_keys() == [key]

    builds = c.builds()
    assert builds == [(key[:12], "python", "race")], \
        f"expected exactly one build, the workers logged {builds}:\n{c.worker_logs()}"
    # An execution that found the environment ready reports "ready"; one that
    # had it built, or waited for another worker's build, reports "created".
    for r in recs:
        if env_of(r)["status"] == "ready":
            assert env_of(r)["seconds"] < 0.5, env_of(r)
    log = (c.data / "envs" / "python" / f"{key}.log").read_text()
    assert log.count("# packrun environment") == 1, log
    assert "incomplete folder" not in log, log
    assert c.ready(key) is not None

    # docs/environments.md: "ready: it existed; seconds 0", "created: built
    # for this execution (or waited for while another built it)".
    waited = [env_of(r) for r in recs if env_of(r)["status"] == "ready"
              and env_of(r)["seconds"] > 0.5]
    assert not waited, f"executions that waited for the build report status ready: {waited}"


# --- 5. crash safety ----------------------------------------------------------

def test_kill_9_during_build(launcher, tmp_path, wheelhouse):
    mark = tmp_path / "build.mark"
    c = Cluster(launcher, tmp_path / "data",
                daemon_env(wheelhouse, tmp_path, TINYSLOW_SLEEP="4", TINYSLOW_MARK=str(mark)))
    c.start_server()
    w1 = c.start_worker("crash", slots=2)
    pack = make_pack(tmp_path / "crash", "crash", requirements="tinyslow\n")
    register(c.api, pack)
    e1 = c.api.submit("crash.probe", {"imports": ["tinyslow"]})

    # pip is in the middle of the build: tinyslow's backend sleeps (4 s).
    wait_file(mark, 60, "the slow build")
    keys = c.env_keys()
    assert len(keys) == 1, keys
    key = keys[0]
    assert c.env_dir(key).is_dir() and c.ready(key) is None
    c.api.wait_status(e1["id"], {"scheduled", "running"}, timeout=30)  # w1 claimed it
    below = descendants(w1.proc.pid)
    assert below, "no build process below the worker"
    w1.proc.send_signal(signal.SIGKILL)
    w1.proc.wait(10)
    # The worker's direct children (pip) get SIGKILL with it; what they
    # started (the build backend) may live on for a while: the next build
    # must cope with that too.

    assert c.ready(key) is None, "a killed build left a .ready"
    assert c.env_dir(key).is_dir(), "expected the partial folder of the killed build"
    status, body = c.api.get("/api/v1/executions/" + str(e1["id"]))
    assert body["status"] not in ("succeeded", "failed"), body

    # A new worker under the same name: e1 is abandoned; the next execution
    # removes the partial folder, builds again and succeeds.
    c.env = daemon_env(wheelhouse, tmp_path, TINYSLOW_SLEEP="1")
    w2 = c.start_worker("crash", slots=2)
    r1 = c.api.wait(e1["id"], timeout=30)
    assert r1["status"] == "abandoned", r1
    e2 = c.api.run("crash.probe", {"imports": ["tinyslow"]}, timeout=90)
    d2 = succeeded(e2)
    assert env_of(e2)["key"] == key and env_of(e2)["status"] in ("created", "ready"), env_of(e2)
    assert d2["ready_at_start"] and d2["modules"]["tinyslow"]["value"] == "tinyslow 1.0", d2
    ready = c.ready(key)
    assert ready is not None
    log = (c.data / "envs" / "python" / f"{key}.log").read_text()
    assert "removing an incomplete folder left by an earlier build" in log, log
    assert "# ready after" in log, log
    assert BUILT_RE.findall(w2.log()) == [(key[:12], "python", "crash")], w2.log()

    # Once the killed build's processes are gone, the environment is still
    # the one that was built, untouched since its .ready was written.
    deadline = time.monotonic() + 15
    while any(alive(p) for p in below):
        assert time.monotonic() < deadline, "the killed build's processes still run"
        time.sleep(0.05)
    ready_mtime = (c.env_dir(key) / ".ready").stat().st_mtime
    site = c.env_dir(key) / "lib"
    late = [str(p) for p in site.rglob("*")  # (an import adds __pycache__: not a change)
            if p.is_file() and p.stat().st_mtime > ready_mtime and "__pycache__" not in p.parts]
    assert not late, f"files changed after .ready was written: {late}"
    assert c.ready(key) == ready
    e3 = c.api.run("crash.probe", {"imports": ["tinyslow"]}, timeout=30)
    assert succeeded(e3)["modules"]["tinyslow"]["value"] == "tinyslow 1.0"
    assert env_of(e3)["status"] == "ready"

    # No execution of the pack ever ran on a half-built environment.
    status, body = c.api.get("/api/v1/executions?pack=crash")
    assert status == 200, body
    assert len(body["executions"]) == 3, body
    for rec in body["executions"]:
        data = (rec.get("result") or {}).get("data")
        if rec["id"] == e1["id"]:
            assert not data, rec
        else:
            assert data["ready_at_start"] and data["ready_at_end"], rec


# --- 6. failure is visible ----------------------------------------------------

def test_build_failure_fallback_and_fail(cluster, tmp_path, wheelhouse):
    c = cluster
    pack = make_pack(tmp_path / "broken", "broken", requirements=f"tinyone\n{MISSING}\n")
    register(c.api, pack)

    # Default (on_failure: fallback): runs on the system interpreter.
    rec = c.api.run("broken.probe", {"imports": ["json"]}, timeout=90)
    data = succeeded(rec)
    env = env_of(rec)
    assert env["status"] == "fallback", env
    key = env["key"]
    assert KEY_RE.match(key or ""), env
    assert "No matching distribution" in (env["error"] or ""), env
    assert MISSING in env["error"], env
    assert not data["in_venv"], f"a fallback ran in a virtualenv: {data}"
    assert data["modules"]["json"].get("file"), data
    assert c.ready(key) is None and not c.env_dir(key).exists(), "partial folder kept"
    log_path = c.data / "envs" / "python" / f"{key}.log"
    assert "No matching distribution" in log_path.read_text()

    r = c.api.cli("run", "broken.probe", timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    warnings = [l for l in r.stderr.splitlines() if l.startswith("warning: environment")]
    assert warnings, f"no warning line on stderr: {r.stderr!r}"

    r = c.api.cli("env", "show", key[:12])
    assert r.returncode == 0, r.stderr
    assert key in r.stdout and "failed" in r.stdout, r.stdout
    assert "No matching distribution" in r.stdout, r.stdout

    # on_failure: fail: the action does not run.
    c.workers[0].stop_and_check()
    c.start_worker("w-fail", env=daemon_env(wheelhouse, tmp_path,
                                            PACKRUN_ENVIRONMENTS_ON_FAILURE="fail"))
    startfile = tmp_path / "must-not-run"
    rec = c.api.run("broken.probe", {"startfile": str(startfile)}, timeout=90)
    assert rec["status"] == "failed", rec
    assert rec["worker"] == "w-fail"
    env = env_of(rec)
    assert env["status"] == "failed" and env["key"] == key, env
    assert "No matching distribution" in (env["error"] or ""), env
    assert "environment" in (rec["result"]["error"] or "") and key[:12] in rec["result"]["error"], \
        rec["result"]
    assert not startfile.exists(), "the action ran although on_failure is fail"
    assert log_path.exists(), "the build log was not kept"

    r = c.api.cli("run", "broken.probe", timeout=120)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert any(l.startswith("warning: environment") for l in r.stderr.splitlines()), r.stderr


# --- 7. operable -------------------------------------------------------------

def cli_ok(api, *args, timeout=120):
    r = api.cli(*args, timeout=timeout)
    assert r.returncode == 0, f"packrun {' '.join(map(str, args))}: {r.returncode}\n" \
                              f"{r.stdout}\n{r.stderr}"
    return r.stdout


def env_row(api, key):
    status, body = api.get(f"/api/v1/environments/{key}")
    assert status == 200, body
    return body["environments"][0]


def brief(row):
    """An environment row without its build log, for messages."""
    return {k: v for k, v in row.items() if k != "log"}


def test_env_list_show_rebuild_gc(cluster, tmp_path):
    c = cluster
    ops = make_pack(tmp_path / "ops", "ops", requirements="tinyone\n")
    register(c.api, ops)
    rec = c.api.run("ops.probe", {"imports": ["tinyone"]}, timeout=90)
    succeeded(rec)
    x = env_of(rec)["key"]

    # list: key prefix, runtime, packs, size, status, built, build time.
    out = cli_ok(c.api, "env", "list")
    line = next((l for l in out.splitlines() if l.startswith(x[:12])), None)
    assert line, out
    assert "python" in line and "ops" in line and "ready" in line, line
    assert re.search(r"\d+(\.\d)? (KiB|MiB)", line), line
    listed = json.loads(cli_ok(c.api, "env", "list", "--json"))["environments"]
    row = next(r for r in listed if r["key"] == x)
    assert row["packs"] == ["ops"] and row["runtime"] == "python" and row["status"] == "ready"
    assert row["size_bytes"] > 0 and row["built_at"] and row["build_ms"] >= 0, row

    # show, with the build log; an 8-digit prefix works.
    out = cli_ok(c.api, "env", "show", x[:8])
    assert x in out and "--- build log ---" in out and "# packrun environment" in out, out
    status, body = c.api.get(f"/api/v1/environments/{x[:8]}")
    assert status == 200 and "# ready after" in body["environments"][0]["log"], body

    # rebuild: a new build, and executions still work.
    built = c.ready(x)["built_at"]
    time.sleep(0.01)
    out = cli_ok(c.api, "env", "rebuild", "ops")
    assert x[:12] in out and "created" in out, out
    assert c.ready(x) is not None and c.ready(x)["built_at"] != built, (built, c.ready(x))
    rec = c.api.run("ops.probe", {"imports": ["tinyone"]}, timeout=30)
    assert succeeded(rec)["modules"]["tinyone"]["value"] == "tinyone 1.0"
    assert env_of(rec)["key"] == x and env_of(rec)["status"] == "ready", env_of(rec)

    # gc: w is unused (its pack was upgraded) and removed; x is unused too
    # but held by a running execution, and kept.
    gcp = make_pack(tmp_path / "gcp", "gcp", requirements="tinyone\ntinytwo\n")
    register(c.api, gcp)
    w = env_of(succeeded_rec(c.api.run("gcp.probe", timeout=90)))["key"]
    make_pack(gcp, "gcp", requirements="tinytwo\n", version="2.0.0")
    register(c.api, gcp)
    v = env_of(succeeded_rec(c.api.run("gcp.probe", {"imports": ["tinytwo"]}, timeout=90)))["key"]
    assert len({x, w, v}) == 3

    startfile, go = tmp_path / "held.pid", tmp_path / "held.go"
    held = c.api.submit("ops.probe", {"imports": ["tinyone"], "waitfor": str(go),
                                      "startfile": str(startfile)})
    wait_file(startfile, 30, "the execution holding x")
    # A rebuild is refused while an execution runs on the environment.
    before = c.ready(x)
    r = c.api.cli("env", "rebuild", "ops")
    assert r.returncode != 0, f"rebuild of an environment in use succeeded:\n{r.stdout}{r.stderr}"
    assert "in use" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert c.ready(x) == before, "the environment in use was rebuilt"
    make_pack(ops, "ops", requirements="tinytwo\n", version="2.0.0")
    register(c.api, ops)
    wait_env_ready(c.api, "ops", not_key=x)

    out = cli_ok(c.api, "env", "gc", "--json")
    jobs = [json.loads(doc) for doc in split_json_docs(out)]
    removed = [k for j in jobs for k in (j.get("result") or {}).get("removed", [])]
    assert w in removed and x not in removed and v not in removed, (removed, out)
    for suffix in ("", ".log", ".lock"):
        assert not (c.data / "envs" / "python" / (w + suffix)).exists(), f"{w}{suffix} left"
    assert c.ready(x) is not None, "gc removed an environment an execution holds"
    assert c.ready(v) is not None

    go.touch()
    done = c.api.wait(held["id"], timeout=30)
    hd = succeeded(done)
    assert hd["ready_at_end"] and hd["modules"]["tinyone"]["value"] == "tinyone 1.0", hd
    assert Path(hd["prefix"]) == c.env_dir(x).resolve()

    # Nothing holds x any more: the next gc removes it.
    out = cli_ok(c.api, "env", "gc")
    assert "removed 1 environments" in out, out
    assert not c.env_dir(x).exists() and c.env_keys() == [v]
    status, body = c.api.get(f"/api/v1/environments/{x}")
    assert status == 404, body
    rec = c.api.run("ops.probe", {"imports": ["tinytwo"]}, timeout=30)
    assert succeeded(rec)["modules"]["tinytwo"]["value"] == "tinytwo 2.0"
    assert env_of(rec)["key"] == v and env_of(rec)["status"] == "ready"


def succeeded_rec(rec):
    succeeded(rec)
    return rec


def split_json_docs(text):
    """`env gc --json` prints one JSON document per job."""
    dec, i, docs = json.JSONDecoder(), 0, []
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        _, end = dec.raw_decode(text, i)
        docs.append(text[i:end])
        i = end
    return docs


def test_env_list_shows_building(launcher, tmp_path, wheelhouse):
    """docs/environments.md, Operating: `env list` says `building` while a
    worker builds an environment, then `ready`."""
    mark = tmp_path / "build.mark"
    c = Cluster(launcher, tmp_path / "data",
                daemon_env(wheelhouse, tmp_path, TINYSLOW_SLEEP="3", TINYSLOW_MARK=str(mark)))
    c.start_server()
    c.start_worker("w1")
    register(c.api, make_pack(tmp_path / "live", "live", requirements="tinyslow\n"))
    wait_file(mark, 60, "the setup job's build")
    [key] = c.env_keys()
    assert c.ready(key) is None
    status, body = c.api.get("/api/v1/environments")
    assert status == 200, body
    rows = [r for r in body["environments"] if r["key"] == key]
    assert [r["status"] for r in rows] == ["building"], body
    out = c.api.cli("env", "list")
    assert out.returncode == 0 and "building" in out.stdout, out
    wait_env_ready(c.api, "live", timeout=60)
    assert env_row(c.api, key)["status"] == "ready"


# --- 8. node -----------------------------------------------------------------

def test_node_pack_with_file_dependency(cluster, tmp_path):
    c = cluster
    pack = make_pack(tmp_path / "nodey", "nodey", node=True)
    body = register(c.api, pack)
    assert body.get("environment") == "pending", body
    rec = c.api.run("nodey.probe_js", timeout=120)
    data = succeeded(rec)
    env = env_of(rec)
    assert env["status"] in ("created", "ready") and KEY_RE.match(env["key"]), env
    key = env["key"]
    assert data["error"] is None and data["value"] == "tiny 1.0.0", data
    node_modules = c.env_dir(key, "node") / "node_modules"
    assert data["node_path"] and Path(data["node_path"]).resolve() == node_modules.resolve(), data
    assert c.ready(key, "node") is not None
    again = c.api.run("nodey.probe_js", timeout=30)
    assert succeeded(again)["value"] == "tiny 1.0.0"
    assert env_of(again)["status"] == "ready" and env_of(again)["key"] == key
    # The python action of the same pack has no requirements.txt: no environment.
    py = c.api.run("nodey.probe", timeout=30)
    assert env_of(py)["status"] == "none" and env_of(py)["key"] is None, env_of(py)


# --- 9. progress on a terminal ------------------------------------------------

def test_run_shows_progress_while_the_environment_builds(launcher, tmp_path, wheelhouse):
    """`packrun run` on a terminal says that the environment is being
    prepared while the first execution waits for the build."""
    import pty
    import select

    mark = tmp_path / "build.mark"
    c = Cluster(launcher, tmp_path / "data",
                daemon_env(wheelhouse, tmp_path, TINYSLOW_SLEEP="4", TINYSLOW_MARK=str(mark)))
    c.start_server()
    c.start_worker("w1")
    register(c.api, make_pack(tmp_path / "slow", "slow", requirements="tinyslow\n"))
    wait_file(mark, 60, "the setup job's build")

    master, slave = pty.openpty()
    env = clean_env({"PACKRUN_API_URL": c.api.url, "PACKRUN_CLI_CONFIG": str(c.api.cli_config)})
    proc = subprocess.Popen([BIN, "run", "slow.probe"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, seen
    assert b"preparing the python environment" in seen, seen
