"""Authentication and roles (issue 5): bearer tokens on every route but
/health, viewer < operator < admin, revocation at once, the CLI config that
`packrun up` writes, `packrun token`, the limit on failed attempts, and the
refusal to listen off loopback over plain HTTP."""

import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, EXAMPLES, E2E_PACK, clean_env, free_port, make_token, read_cli_config

# Every route of the API, with dummy ids, and the least role it needs.
ROUTES = [
    ("POST", "/api/v1/packs/register", "admin"),
    ("GET", "/api/v1/packs", "viewer"),
    ("GET", "/api/v1/packs/nope", "viewer"),
    ("DELETE", "/api/v1/packs/nope", "admin"),
    ("GET", "/api/v1/actions", "viewer"),
    ("GET", "/api/v1/actions/nope.nope", "viewer"),
    ("POST", "/api/v1/executions", "operator"),
    ("GET", "/api/v1/executions", "viewer"),
    ("GET", "/api/v1/executions/999999", "viewer"),
    ("POST", "/api/v1/executions/999999/cancel", "operator"),
    ("GET", "/api/v1/executions/999999/logs/stdout", "viewer"),
    ("GET", "/api/v1/workers", "viewer"),
    ("GET", "/api/v1/environments", "viewer"),
    ("POST", "/api/v1/environments/gc", "admin"),
    ("GET", "/api/v1/environments/deadbeef00", "viewer"),
    ("POST", "/api/v1/environments/deadbeef00/rebuild", "admin"),
    ("GET", "/api/v1/jobs/999999", "viewer"),
]
PATHS = sorted({path for _, path, _ in ROUTES} | {"/api/v1/nope", "/api/v1", "/metrics"})
RANK = {"viewer": 1, "operator": 2, "admin": 3}


def assert_401(status, body, headers):
    assert status == 401, body
    assert body["error"]["code"] == "unauthorized", body
    assert headers.get("WWW-Authenticate", "").startswith("Bearer"), dict(headers)


def token_cli(data_dir, *args):
    return subprocess.run([BIN, "token", *args, "--data", str(data_dir)], env=clean_env(),
                          capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def tokens(up):
    """A viewer and an operator token on the module's `packrun up`."""
    n = time.monotonic_ns()
    return {
        "viewer": (f"viewer-{n}", make_token(up.data_dir, f"viewer-{n}", "viewer")),
        "operator": (f"operator-{n}", make_token(up.data_dir, f"operator-{n}", "operator")),
    }


# --- every route needs a token ----------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_every_route_without_a_token_is_401(up, method, path):
    anon = up.without_token()
    status, body = anon.request(method, path, body={} if method == "POST" else None)
    assert_401(status, body, anon.last_headers)
    assert "Authorization: Bearer" in body["error"]["message"], body


def test_health_needs_no_token(up):
    status, body = up.without_token().get("/health")
    assert status == 200 and body["status"] == "ok", body


def test_refused_request_body_is_not_read(up):
    """A POST without a token is answered from its headers: the server does
    not wait for a body it would not use."""
    port = int(up.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /api/v1/executions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
        head = s.recv(65536)
    assert head.split()[1] == b"401", head


def test_admin_token_of_up_reaches_every_route(up):
    for method, path, _ in ROUTES:
        status, body = up.request(method, path, body={} if method == "POST" else None)
        assert status not in (401, 403, 429), (method, path, status, body)


# --- roles ------------------------------------------------------------------------

def test_viewer_reads_and_is_refused_the_rest(up, tokens):
    name, token = tokens["viewer"]
    viewer = up.with_token(token)
    for method, path, need in ROUTES:
        status, body = viewer.request(method, path, body={} if method == "POST" else None)
        if need == "viewer":
            assert status not in (401, 403), (method, path, status, body)
            continue
        assert status == 403, (method, path, status, body)
        assert body["error"]["code"] == "forbidden", body
        assert body["error"]["message"] == \
            f"token '{name}' (viewer) may not {method} {path}: {need} role needed", body
    status, body = viewer.get("/api/v1/packs")
    assert status == 200 and "hello" in [p["ref"] for p in body["packs"]], body


def test_operator_runs_and_cancels_but_does_not_install(up, tokens, tmp_path):
    name, token = tokens["operator"]
    op = up.with_token(token)
    rec = op.run("hello.greet", {"name": "Op"})
    assert rec["status"] == "succeeded", rec

    running, _ = op.start_sleep(tmp_path, 30)
    status, body = op.post(f"/api/v1/executions/{running['id']}/cancel")
    assert status == 200, body
    assert op.wait(running["id"])["status"] == "canceled"

    status, body = op.post("/api/v1/packs/register", {"path": str(E2E_PACK)})
    assert status == 403, body
    assert body["error"]["message"] == (f"token '{name}' (operator) may not POST "
                                        "/api/v1/packs/register: admin role needed"), body
    for method, path in [("DELETE", "/api/v1/packs/hello"), ("POST", "/api/v1/environments/gc"),
                         ("POST", "/api/v1/environments/hello/rebuild")]:
        status, body = op.request(method, path)
        assert status == 403, (method, path, body)
    assert "hello" in up.pack_refs()


def test_cli_with_a_viewer_token(up, tokens):
    name, token = tokens["viewer"]
    r = up.cli("pack", "list", env={"PACKRUN_TOKEN": token})
    assert r.returncode == 0, r.stderr
    assert "hello" in r.stdout
    r = up.cli("run", "hello.greet", env={"PACKRUN_TOKEN": token})
    assert r.returncode != 0
    assert "operator role needed" in r.stderr, r.stderr


def test_cli_without_a_token(up):
    r = up.cli("pack", "list", env={"PACKRUN_CLI_CONFIG": "/nonexistent/cli.yaml"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "token" in r.stderr, r.stderr


# --- tokens -----------------------------------------------------------------------

def test_revoke_takes_effect_at_once(up):
    name = f"short-lived-{time.monotonic_ns()}"
    token = make_token(up.data_dir, name, "operator")
    api = up.with_token(token)
    status, body = api.get("/api/v1/packs")
    assert status == 200, body
    r = api.cli("execution", "list", env={"PACKRUN_TOKEN": token})
    assert r.returncode == 0, r.stderr

    r = token_cli(up.data_dir, "revoke", name)
    assert r.returncode == 0, r.stderr
    assert name in r.stdout

    status, body = api.get("/api/v1/packs")
    assert_401(status, body, api.last_headers)
    assert "revoked" in body["error"]["message"], body
    r = api.cli("execution", "list", env={"PACKRUN_TOKEN": token})
    assert r.returncode == 1
    assert "revoked" in r.stderr, r.stderr

    # Revoking again, or a name that does not exist, is an error.
    r = token_cli(up.data_dir, "revoke", name)
    assert r.returncode == 1 and "already" in r.stderr, r.stderr
    r = token_cli(up.data_dir, "revoke", "no-such-token")
    assert r.returncode == 1 and "not found" in r.stderr, r.stderr


def test_token_create_prints_the_token_once(up):
    name = f"ci-{time.monotonic_ns()}"
    r = token_cli(up.data_dir, "create", name, "--role", "viewer")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert re.fullmatch(r"pkr_[A-Za-z0-9_-]{43}", token), r.stdout
    assert "only" in r.stderr and name in r.stderr, r.stderr
    status, _ = up.with_token(token).get("/api/v1/workers")
    assert status == 200

    r = token_cli(up.data_dir, "create", name, "--role", "viewer")
    assert r.returncode == 1 and "exists" in r.stderr, r.stderr
    r = token_cli(up.data_dir, "create", "x", "--role", "root")
    assert r.returncode == 4 and "admin, operator or viewer" in r.stderr, r.stderr
    r = token_cli(up.data_dir, "create", "x")
    assert r.returncode == 4 and "--role" in r.stderr, r.stderr


def test_token_list_shows_no_secret(up, tokens):
    secrets = [read_cli_config(up.cli_config)["token"]] + [t for _, t in tokens.values()]
    hashes = [hashlib.sha256(t.encode()).hexdigest() for t in secrets]
    up.get("/api/v1/packs")  # the admin token has been used

    r = token_cli(up.data_dir, "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "CREATED", "LAST", "USED", "REVOKED"], r.stdout
    assert any(line.split()[:2] == ["local-cli", "admin"] for line in lines), r.stdout
    r2 = token_cli(up.data_dir, "list", "--json")
    assert r2.returncode == 0, r2.stderr
    rows = json.loads(r2.stdout)
    assert {"name", "role", "created_at", "last_used_at", "revoked_at"} == set(rows[0])
    local = [row for row in rows if row["name"] == "local-cli"][0]
    assert local["role"] == "admin" and local["last_used_at"], local
    for out in (r.stdout + r.stderr, r2.stdout + r2.stderr):
        for s in secrets + hashes:
            assert s not in out
        assert "pkr_" not in out
        assert not re.search(r"[0-9a-f]{64}", out), out


def test_last_use_is_recorded_at_most_once_a_minute(up):
    name = f"used-{time.monotonic_ns()}"
    api = up.with_token(make_token(up.data_dir, name, "viewer"))

    def last_used():
        rows = json.loads(token_cli(up.data_dir, "list", "--json").stdout)
        return [row for row in rows if row["name"] == name][0]["last_used_at"]

    assert last_used() is None
    assert api.get("/api/v1/packs")[0] == 200
    first = last_used()
    assert first
    time.sleep(0.05)
    assert api.get("/api/v1/packs")[0] == 200
    assert last_used() == first


def test_malformed_authorization_is_401(up):
    anon = up.without_token()
    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "pkr_x"]:
        status, body = anon.get("/api/v1/packs", headers={"Authorization": value})
        assert_401(status, body, anon.last_headers)


# --- the CLI config that `packrun up` writes --------------------------------------

def test_up_writes_cli_config_for_the_local_cli(start_up, tmp_path):
    xdg = tmp_path / "xdg"
    cfg = xdg / "packrun" / "cli.yaml"
    env = {"XDG_CONFIG_HOME": str(xdg), "PACKRUN_CLI_CONFIG": ""}
    d = start_up(env=env, cli_config=cfg, register_e2e=False)

    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.parent.stat().st_mode) == 0o700
    doc = read_cli_config(cfg)
    assert doc["api_url"] == d.api.url, doc
    assert doc["token"].startswith("pkr_"), doc
    assert str(cfg) in d.log(), d.log()
    assert doc["token"] not in d.log()

    # The local CLI works with no flags and no PACKRUN_* variable at all.
    r = subprocess.run([BIN, "pack", "list"], env=clean_env({"XDG_CONFIG_HOME": str(xdg)}),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "hello" in r.stdout

    # A restart on the same data leaves a file whose token works alone.
    before = cfg.read_bytes()
    rc, _ = d.stop()
    assert rc == 0, d.log()
    d2 = start_up(data=d.data_dir, env=env, cli_config=cfg, packs=None, register_e2e=False)
    assert cfg.read_bytes() == before
    assert "left as it is" in d2.log(), d2.log()
    r = token_cli(d.data_dir, "list")
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["local-cli"], r.stdout


def test_up_leaves_a_cli_config_that_points_elsewhere(start_up, tmp_path):
    cfg = tmp_path / "cli.yaml"
    cfg.write_text('api_url: "http://elsewhere:1"\ntoken: "pkr_stale"\n')
    data = tmp_path / "data"
    d = start_up(cli_config=data / "cli.yaml", data=data, register_e2e=False, packs=None,
                 env={"PACKRUN_CLI_CONFIG": str(cfg)})
    assert read_cli_config(cfg) == {"api_url": "http://elsewhere:1", "token": "pkr_stale"}
    doc = read_cli_config(data / "cli.yaml")
    assert doc["api_url"] == d.api.url and doc["token"].startswith("pkr_"), doc
    assert stat.S_IMODE((data / "cli.yaml").stat().st_mode) == 0o600
    assert f"PACKRUN_CLI_CONFIG={data / 'cli.yaml'}" in d.log()
    assert d.api.get("/api/v1/packs")[0] == 200


def test_up_makes_no_token_once_tokens_exist(start_up, tmp_path):
    """Only the first start makes a token: with tokens in the database and
    none that works in the file, `up` says what to do and writes nothing."""
    data = tmp_path / "data"
    token = make_token(data, "mine", "admin")
    cfg = tmp_path / "cli.yaml"
    d = start_up(data=data, cli_config=cfg, register_e2e=False, packs=None)
    assert not cfg.exists()
    assert "packrun token create" in d.log(), d.log()
    assert d.api.with_token(token).get("/api/v1/packs")[0] == 200


# --- failed attempts --------------------------------------------------------------

def test_failed_attempts_are_limited_and_logged_without_the_token(start_up):
    d = start_up(register_e2e=False, packs=None)
    good = d.api
    bogus = [f"pkr_guess{i:02d}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" for i in range(12)]

    for token in bogus[:10]:
        guess = good.with_token(token)
        status, body = guess.get("/api/v1/packs")
        assert_401(status, body, guess.last_headers)
    # A request with no token is no attempt: still 401, not counted.
    status, body = good.without_token().get("/api/v1/packs")
    assert status == 401, body

    guess = good.with_token(bogus[10])
    status, body = guess.get("/api/v1/packs")
    assert status == 429, body
    assert body["error"]["code"] == "rate_limited", body
    retry = int(guess.last_headers["Retry-After"])
    assert 1 <= retry <= 60, retry
    # While the address is limited, no token is even looked at.
    status, body = good.get("/api/v1/packs")
    assert status == 429, body
    assert good.get("/health")[0] == 200

    log = d.log()
    assert re.search(r"level=warn component=auth msg=\"127\.0\.0\.1: GET /api/v1/packs: "
                     r"refused: the token is not known", log), log
    assert "too many failed token attempts" in log, log
    for token in bogus + [read_cli_config(d.cli_config)["token"]]:
        assert token not in log
    assert "pkr_" not in log

    time.sleep(retry + 0.2)
    assert good.get("/api/v1/packs")[0] == 200


# --- where the API listens --------------------------------------------------------

def wait_exit(daemon, timeout=10):
    try:
        return daemon.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"packrun {daemon.role} still runs:\n{daemon.log()}")


@pytest.mark.parametrize("role", ["server", "up"])
def test_non_loopback_listen_is_refused(launcher, tmp_path, role):
    port = free_port()
    cfg = tmp_path / "cli.yaml"
    d = launcher.daemon(role, tmp_path / "data", args=["--listen", f"0.0.0.0:{port}"],
                        cli_config=cfg, name=f"{role}-refused")
    assert wait_exit(d) != 0
    assert "--insecure-listen" in d.log() and "0.0.0.0" in d.log(), d.log()
    if role == "up":
        assert not cfg.exists(), "a refused `up` wrote a token"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.parametrize("how", ["flag", "config", "env"])
def test_non_loopback_listen_with_explicit_consent(launcher, tmp_path, how):
    port = free_port()
    args, env = ["--listen", f"0.0.0.0:{port}"], {}
    if how == "flag":
        args.append("--insecure-listen")
    elif how == "config":
        conf = tmp_path / "packrun.yaml"
        conf.write_text("allow_insecure_listen: true\nmetrics_public: false\n")
        args += ["--config", str(conf)]
    else:
        env["PACKRUN_ALLOW_INSECURE_LISTEN"] = "true"
    d = launcher.daemon("server", tmp_path / "data", args=args, env=env, name=f"server-{how}",
                        cli_config=tmp_path / "cli.yaml")
    from conftest import Api
    d.api = Api(f"http://127.0.0.1:{port}", d.data_dir, d.cli_config)
    d.wait_healthy()
    assert "without TLS" in d.log(), d.log()
    # Tokens are still required.
    assert d.api.without_token().get("/api/v1/packs")[0] == 401
    assert d.api.get("/api/v1/packs")[0] == 200


def test_bad_boolean_setting_is_refused(launcher, tmp_path):
    d = launcher.daemon("server", tmp_path / "data", port=free_port(),
                        env={"PACKRUN_METRICS_PUBLIC": "maybe"}, name="server-badbool")
    assert wait_exit(d) == 2
    assert "PACKRUN_METRICS_PUBLIC" in d.log() and "true or false" in d.log(), d.log()
