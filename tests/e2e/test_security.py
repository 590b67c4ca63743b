"""Execution hardening and operations (issue 5): who actions run as, what
they inherit, their limits; /metrics, the OpenAPI document, pack upload and
`packrun config show`."""
import io
import json
import os
import pwd
import re
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, E2E_PACK, EXAMPLES, clean_env


def _open_data_dir():
    """A data folder that an unprivileged user can pass through: pytest's
    own temporary folders are private to root."""
    d = Path(tempfile.mkdtemp(prefix="packrun-e2e-", dir="/tmp"))
    d.chmod(0o711)
    return d / "data"


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.mark.skipif(os.geteuid() != 0 or not _user_exists("packrun"),
                    reason="needs root and the packrun system user (scripts/install-deps.sh)")
def test_root_worker_runs_actions_as_the_packrun_user(start_up):
    d = start_up(data=_open_data_dir(), env={"PACKRUN_RUN_AS": "packrun"})
    rec = d.api.run("hello.greet", {"name": "Ada"})
    assert rec["status"] == "succeeded", rec
    rec = d.api.run("e2e.identity")
    assert rec["status"] == "succeeded", rec
    data = rec["result"]["data"]
    assert data["user"] == "packrun" and data["uid"] != 0, data
    assert data["env"]["HOME"] != "/root" and data["env"]["USER"] == "packrun", data


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_run_as_an_unknown_user_stops_the_worker_with_a_clear_error(tmp_path):
    env = clean_env({"PACKRUN_RUN_AS": "no-such-user-packrun",
                     "PACKRUN_CLI_CONFIG": str(tmp_path / "cli.yaml")})
    proc = subprocess.run([BIN, "worker", "--data", str(tmp_path / "data")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "no-such-user-packrun" in proc.stderr and "run_as" in proc.stderr, proc.stderr


def test_an_action_inherits_none_of_the_workers_secrets(start_up):
    secrets = {"PACKRUN_TOKEN": "pkr_worker_secret_token", "AWS_SECRET_ACCESS_KEY": "aws-xyz",
               "DATABASE_PASSWORD": "db-xyz", "PACKRUN_DB_PASSWORD_HINT": "hint-xyz"}
    d = start_up(env=secrets)
    rec = d.api.run("e2e.identity")
    assert rec["status"] == "succeeded", rec
    env = rec["result"]["data"]["env"]
    dump = json.dumps(env)
    for value in secrets.values():
        assert value not in dump, env
    token = d.api.token
    assert token and token not in dump, "the admin token reached the action"
    assert str(d.data_dir / "packrun.db") not in dump
    assert not [k for k in env if k.startswith("PACKRUN_") and k not in {
        "PACKRUN_EXECUTION_ID", "PACKRUN_ACTION", "PACKRUN_PACK", "PACKRUN_PACK_DIR",
        "PACKRUN_API_URL", "PACKRUN_PARAMETER_FILE", "PACKRUN_PARAMETER_FORMAT"}], env


def test_resource_limits_come_from_the_config(start_up):
    d = start_up(env={"PACKRUN_LIMITS_OPEN_FILES": "256", "PACKRUN_LIMITS_PROCESSES": "3000"})
    data = d.api.run("e2e.identity")["result"]["data"]
    assert data["open_files"] == "256" and data["processes"] == "3000", data


def _metrics(api):
    req = urllib.request.Request(api.url + "/metrics",
                                 headers={"Authorization": f"Bearer {api.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def _value(text, name, labels=""):
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_move_as_executions_run(up):
    before = _metrics(up)
    assert up.run("hello.noop")["status"] == "succeeded"
    assert up.run("hello.fail")["status"] == "failed"
    after = _metrics(up)
    ok = '{action="hello.noop",status="succeeded"}'
    bad = '{action="hello.fail",status="failed"}'
    assert _value(after, "packrun_executions", ok) == _value(before, "packrun_executions", ok) + 1
    assert _value(after, "packrun_executions", bad) == _value(before, "packrun_executions", bad) + 1
    assert (_value(after, "packrun_execution_duration_seconds_count")
            >= _value(before, "packrun_execution_duration_seconds_count") + 2)
    assert "packrun_queue_depth 0" in after
    assert re.search(r'^packrun_worker_slots\{worker="[^"]+"\} \d+$', after, re.M), after
    assert "packrun_environment_builds_total" in after


def test_metrics_need_a_token_unless_public(start_up):
    d = start_up()
    bare = urllib.request.build_opener()  # without conftest's token handler
    try:
        bare.open(d.api.url + "/metrics", timeout=10)
        raise AssertionError("/metrics answered without a token")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    pub = start_up(env={"PACKRUN_METRICS_PUBLIC": "true"})
    with urllib.request.build_opener().open(pub.api.url + "/metrics", timeout=10) as r:
        assert b"packrun_queue_depth" in r.read()


def test_openapi_lists_every_route_and_each_answers(up):
    status, doc = up.get("/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3."), doc
    assert len(doc["paths"]) >= 15
    for path, item in doc["paths"].items():
        for method in item:
            concrete = re.sub(r"\{[^}]+\}", "0", path)
            if method == "get":
                status, body = up.get(concrete)
            elif method == "delete":
                status, body = up.delete(concrete)
            else:
                status, body = up.post(concrete, {})
            message = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
            assert not message.startswith("no route"), (method, path, status, body)
            assert status != 405 and status < 500, (method, path, status, body)


def _tar_gz(entries):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _upload(api, body):
    req = urllib.request.Request(api.url + "/api/v1/packs", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {api.token}",
                                          "Content-Type": "application/gzip"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_pack_upload_installs_and_refuses_hostile_archives(up):
    pack = (b"ref: uploaded\nlabel: Up\ndescription: uploaded\nversion: '1'\n")
    action = b"ref: uploaded.hi\nrunner_type: shell\nentry_point: hi.sh\n"
    status, body = _upload(up, _tar_gz([("uploaded/pack.yaml", pack),
                                        ("uploaded/actions/hi.yaml", action),
                                        ("uploaded/actions/hi.sh", b"echo uploaded\n")]))
    assert status == 201, body
    rec = up.run("uploaded.hi")
    assert rec["status"] == "succeeded" and rec["result"]["stdout"] == "uploaded\n", rec

    status, body = _upload(up, _tar_gz([("pack.yaml", pack), ("../escape", b"x")]))
    assert status == 400 and "escape" in body["error"]["message"], body
    status, body = _upload(up, b"definitely not a tarball")
    assert status == 400, body
    refs = [p["ref"] for p in up.get("/api/v1/packs")[1]["packs"]]
    assert refs.count("uploaded") == 1


def test_config_show_masks_passwords(tmp_path):
    cfg = tmp_path / "packrun.yaml"
    cfg.write_text("db: postgresql://ops:hunter2@db.example/packrun\nslots: 3\n")
    proc = subprocess.run([BIN, "config", "show", "--config", str(cfg), "--json"],
                          env=clean_env({"PACKRUN_LISTEN": "127.0.0.1:9999"}),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["slots"] == 3 and shown["listen"] == "127.0.0.1:9999", shown
    assert "hunter2" not in proc.stdout and shown["db"] == "postgresql://ops:****@db.example/packrun"


def test_an_action_with_api_access_gets_a_token_that_ends_with_it(up):
    rec = up.run("e2e.api_client")
    assert rec["status"] == "succeeded", rec
    data = rec["result"]["data"]
    assert data["status_seen"] == "running" and data["token"].startswith("pkr_"), data
    # It stops working once the execution has ended.
    bare = urllib.request.build_opener()
    req = urllib.request.Request(up.url + "/api/v1/packs",
                                 headers={"Authorization": f"Bearer {data['token']}"})
    try:
        bare.open(req, timeout=10)
        raise AssertionError("an ended execution's token still works")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    # Actions that do not ask for API access get no token.
    env = up.run("e2e.identity")["result"]["data"]["env"]
    assert "PACKRUN_API_TOKEN" not in env


def test_interpreters_can_be_set_in_the_config(start_up, tmp_path):
    cfg = tmp_path / "packrun.yaml"
    cfg.write_text("runtimes:\n  python:\n    interpreter: /usr/bin/python3\n")
    d = start_up(args=["--config", str(cfg)])
    # The worker resolves its runtimes after the API answers: run first.
    rec = d.api.run("hello.greet", {"name": "Cfg"})
    assert rec["status"] == "succeeded", rec
    assert "runtime python: /usr/bin/python3" in d.log(), d.log()
    status, workers = d.api.get("/api/v1/workers")
    assert "python" in workers["workers"][0]["runtimes"], workers
