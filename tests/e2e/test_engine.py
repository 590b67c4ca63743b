"""The execution engine (issue 3): parameter validation and delivery,
environment variables, timeouts, cancellation, logs, output caps and
formats, hostile actions, secrets."""

import base64
import hashlib
import json
import os
import re
import signal
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from conftest import Launcher, _check_binary

OUTPUT_CAP = 100000


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    """packrun up with a 100000-byte output cap and a 1 s kill grace."""
    _check_binary()
    la = Launcher(tmp_path_factory.mktemp("engine"))
    try:
        d = la.up(env={"PACKRUN_OUTPUT_CAP_BYTES": str(OUTPUT_CAP),
                       "PACKRUN_KILL_GRACE_SECONDS": "1"})
        yield d.api
    finally:
        la.close()


def ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid, timeout=5):
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def get_bytes(api, path, timeout=60):
    with urllib.request.urlopen(api.url + path, timeout=timeout) as resp:
        return resp.status, resp.read()


def pack_dir(api, ref="e2e"):
    status, pack = api.get(f"/api/v1/packs/{ref}")
    assert status == 200, pack
    return Path(pack["dir"]).resolve()


# --- parameter validation ------------------------------------------------------

BAD_PARAMS = [
    ("count", {"title": "t", "count": "3"}),        # string for integer
    ("count", {"title": "t", "count": 3.5}),        # real for integer
    ("ratio", {"title": "t", "ratio": "x"}),        # string for number
    ("flag", {"title": "t", "flag": "yes"}),        # string for boolean
    ("flag", {"title": "t", "flag": 1}),            # integer for boolean
    ("items", {"title": "t", "items": {"a": 1}}),   # object for array
    ("opts", {"title": "t", "opts": [1]}),          # array for object
    ("title", {"title": 5}),                        # integer for string
    ("title", {"count": 1}),                        # required, missing
    ("bogus", {"title": "t", "bogus": 1}),          # unknown name
    ("color", {"title": "t", "color": "blue"}),     # not in enum
    ("level", {"title": "t", "level": 0}),          # below minimum
    ("level", {"title": "t", "level": 11}),         # above maximum
]


@pytest.mark.parametrize("name,params", BAD_PARAMS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_PARAMS)])
def test_parameter_validation_rejects(eng, name, params):
    status, before = eng.get("/api/v1/executions?action=e2e.validate")
    status, body = eng.post("/api/v1/executions", {"action": "e2e.validate",
                                                   "parameters": params})
    assert status == 400, body
    assert body["error"]["code"] == "invalid", body
    assert re.search(rf"\b{name}\b", body["error"]["message"]), body
    status, after = eng.get("/api/v1/executions?action=e2e.validate")
    assert after == before, "a rejected submission was stored"


def test_parameter_defaults_filled_in(eng):
    rec = eng.submit("e2e.validate", {"title": "t"})
    assert rec["parameters"] == {"title": "t", "greeting": "hi"}
    done = eng.wait(rec["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["data"] == {"title": "t", "greeting": "hi"}   # what the action got


def test_parameter_validation_accepts_valid(eng):
    params = {"title": "t", "count": 3, "ratio": 2, "flag": False, "items": [1, "a", None],
              "opts": {"k": [1]}, "color": "green", "level": 10, "greeting": "hey"}
    done = eng.run("e2e.validate", params)
    assert done["status"] == "succeeded", done
    assert done["result"]["data"] == params
    done = eng.run("e2e.validate", {"title": "t", "level": 1, "ratio": 0.25})
    assert done["status"] == "succeeded", done


def test_no_parameters_for_required(eng):
    status, body = eng.post("/api/v1/executions", {"action": "e2e.validate"})
    assert status == 400, body
    assert "title" in body["error"]["message"]


# --- parameter delivery --------------------------------------------------------

def test_parameter_file_json(eng):
    params = {"message": "hello file ✓"}
    rec = eng.run("e2e.file_params", params)
    assert rec["status"] == "succeeded", rec
    data = rec["result"]["data"]
    assert data["mode"] == "400", data
    assert data["format"] == "json"
    assert json.loads(base64.b64decode(data["content_b64"])) == params
    assert not os.path.exists(data["path"]), "the parameter file was left behind"


def run_dotenv(api, params):
    rec = api.run("e2e.dotenv", params)
    assert rec["status"] == "succeeded", rec
    value, sep, file_text = rec["result"]["stdout"].partition("\n--FILE--\n")
    assert sep, rec["result"]["stdout"]
    return rec, value, file_text


def test_dotenv_quotes_and_newlines_are_safe_to_source(eng, tmp_path):
    pwned = tmp_path / "pwned"
    value = (f"it's \"double\" and 'single' $HOME `id` $(touch {pwned}1) \\ back\\slash\n"
             f"second line\n'; touch {pwned}2; echo '\n\"; touch {pwned}3; \"\ttab end")
    rec, got, file_text = run_dotenv(eng, {"value": value})
    assert got == value
    for i in (1, 2, 3):
        assert not Path(f"{pwned}{i}").exists(), f"sourcing the dotenv file ran code:\n{file_text}"


def test_dotenv_nested_keys_and_arrays(eng):
    rec, got, file_text = run_dotenv(eng, {"value": "v", "number": 5,
                                            "nested": {"a": {"b": "deep"}, "x": "y"},
                                            "list": [1, "two"]})
    lines = dict(line.split("=", 1) for line in file_text.splitlines() if "=" in line)
    unq = {k: v[1:-1] if v[:1] == v[-1:] and v[:1] in "'\"" else v for k, v in lines.items()}
    assert unq["value"] == "v"
    assert unq["number"] == "5"
    assert unq["nested.a.b"] == "deep", file_text
    assert unq["nested.x"] == "y", file_text
    assert json.loads(unq["list"]) == [1, "two"], file_text


def test_dotenv_nul_is_not_an_injection(eng, tmp_path):
    pwned = tmp_path / "pwned-nul"
    value = f"safe\u0000'; touch {pwned}; echo '"
    status, body = eng.post("/api/v1/executions", {"action": "e2e.dotenv",
                                                   "parameters": {"value": value}})
    if status == 201:
        done = eng.wait(body["id"])
        assert done["status"] in ("succeeded", "failed"), done
    else:
        assert status == 400, body
        assert body["error"]["code"] == "invalid"
    assert not pwned.exists(), "a NUL in a dotenv value let the rest run as code"


def test_yaml_parameters_round_trip(eng):
    params = {"name": "Ada", "count": 3, "ratio": 0.5, "flag": True,
              "tricky": "it's: a \"test\" # not a comment\nsecond line - [x]",
              "numeric_string": "0123",
              "items": [1, "two", None, {"k": "v"}],
              "nested": {"yes": "no", "t": "true", "n": "null", "e": "", "deep": {"x": 1}}}
    rec = eng.run("e2e.yaml_echo", params)
    assert rec["status"] == "succeeded", rec
    assert rec["result"].get("parse_error") is None, rec["result"]
    assert rec["result"]["data"] == params, rec["result"]["stdout"]


def test_yaml_parameters_raw(eng):
    rec = eng.run("e2e.yaml_raw", {"name": "Ada", "count": 3})
    out = rec["result"]["stdout"]
    assert re.search(r"^name: ['\"]?Ada['\"]?$", out, re.M), out
    assert re.search(r"^count: 3$", out, re.M), out
    assert "{" not in out, f"this is JSON, not YAML: {out}"


def test_environment_variables(eng):
    rec = eng.run("e2e.env")
    assert rec["status"] == "succeeded", rec
    env = rec["result"]["data"]["env"]
    assert env["PACKRUN_EXECUTION_ID"] == str(rec["id"])
    assert env["PACKRUN_ACTION"] == "e2e.env"
    assert env["PACKRUN_PACK"] == "e2e"
    assert Path(env["PACKRUN_PACK_DIR"]).resolve() == pack_dir(eng)
    assert env["PACKRUN_API_URL"].rstrip("/") == eng.url
    assert rec["result"]["data"]["cwd"] == str(pack_dir(eng))
    assert "PACKRUN_PARAMETER_FILE" not in env   # stdin delivery


# --- timeouts and cancellation ------------------------------------------------

def test_timeout_kills_the_process_group(eng, tmp_path):
    pidfile = tmp_path / "child.pid"
    rec = eng.submit("e2e.timeout_child", {"pidfile": str(pidfile)}, timeout_seconds=1)
    assert rec["timeout_seconds"] == 1
    done = eng.wait(rec["id"], timeout=30)
    assert done["status"] == "timeout", done
    assert "time" in (done["result"]["error"] or "").lower(), done["result"]
    took = (ts(done["finished_at"]) - ts(done["started_at"])).total_seconds()
    assert 0.9 < took < 6, f"ran {took:.1f}s with timeout_seconds=1 and a 1 s kill grace"
    child = int(pidfile.read_text())
    assert wait_gone(child), f"the action's child {child} (ignoring SIGTERM) outlived the timeout"


def test_timeout_from_action_default(eng):
    rec = eng.submit("e2e.short_timeout")
    assert rec["timeout_seconds"] == 1
    done = eng.wait(rec["id"], timeout=30)
    assert done["status"] == "timeout", done


def test_cancel_running(eng, tmp_path):
    rec, pid = eng.start_sleep(tmp_path, 30)

    t0 = time.monotonic()
    status, body = eng.post(f"/api/v1/executions/{rec['id']}/cancel")
    assert status == 200, body
    assert body["status"] in ("canceling", "canceled"), body
    done = eng.wait(rec["id"], timeout=30)
    assert done["status"] == "canceled", done
    assert time.monotonic() - t0 < 5
    assert wait_gone(pid)


def test_cancel_running_cli(eng, tmp_path):
    rec, pid = eng.start_sleep(tmp_path, 30)
    r = eng.cli("execution", "cancel", rec["id"])
    assert r.returncode == 0, r.stdout + r.stderr
    done = eng.wait(rec["id"], timeout=30)
    assert done["status"] == "canceled", done


def test_run_canceled_exit_code(eng):
    """`packrun run` of an execution canceled meanwhile exits 3."""
    import subprocess
    from conftest import BIN, clean_env
    p = subprocess.Popen([BIN, "run", "e2e.sleep", "seconds=30", "--json"],
                         env=clean_env({"PACKRUN_API_URL": eng.url}),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        rec = None
        deadline = time.monotonic() + 10
        while rec is None:
            status, body = eng.get("/api/v1/executions?action=e2e.sleep&status=running&limit=1")
            if body["executions"]:
                rec = body["executions"][0]
            assert time.monotonic() < deadline, "the CLI's execution never ran"
            time.sleep(0.05)
        eng.post(f"/api/v1/executions/{rec['id']}/cancel")
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 3, out + err
    assert json.loads(out)["status"] == "canceled"


def test_run_timeout_exit_code(eng):
    r = eng.cli("run", "e2e.sleep", "seconds=30", "--timeout", "1")
    assert r.returncode == 2, r.stdout + r.stderr


def test_cancel_queued(start_up, tmp_path):
    d = start_up(args=["--slots", "1"], env={"PACKRUN_KILL_GRACE_SECONDS": "1"})
    api = d.api
    busy, _ = api.start_sleep(tmp_path, 30)
    queued = api.submit("hello.noop")
    status, cur = api.get(f"/api/v1/executions/{queued['id']}")
    assert cur["status"] == "requested", cur

    status, body = api.post(f"/api/v1/executions/{queued['id']}/cancel")
    assert status == 200, body
    assert body["status"] == "canceled", body            # at once
    status, body = api.post(f"/api/v1/executions/{busy['id']}/cancel")
    assert status == 200, body
    assert api.wait(busy["id"])["status"] == "canceled"

    # The slot is free again: a new execution runs, the canceled one never did.
    assert api.run("hello.noop")["status"] == "succeeded"
    status, q = api.get(f"/api/v1/executions/{queued['id']}")
    assert q["status"] == "canceled"
    assert q["started_at"] is None, q


def test_slots_limit_concurrency(start_up, tmp_path):
    d = start_up(args=["--slots", "2"], env={"PACKRUN_KILL_GRACE_SECONDS": "1"})
    api = d.api
    recs = [api.start_sleep(tmp_path, 30)[0] for _ in range(2)]
    recs.append(api.submit("e2e.sleep", {"seconds": 30}))
    status, third = api.get(f"/api/v1/executions/{recs[2]['id']}?wait=1")
    assert third["status"] == "requested", third
    for r in recs:
        api.post(f"/api/v1/executions/{r['id']}/cancel")
    for r in recs:
        assert api.wait(r["id"])["status"] == "canceled"


# --- logs -------------------------------------------------------------------------

def test_follow_logs_while_running(eng):
    rec = eng.submit("e2e.ticker", {"lines": 10, "pause": 0.2})
    url = f"{eng.url}/api/v1/executions/{rec['id']}/logs/stdout?follow=1"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        first = resp.readline()
        assert first == b"line 1\n", first
        status, cur = eng.get(f"/api/v1/executions/{rec['id']}")
        assert cur["status"] == "running", "the first line came only after the end"
        rest = resp.read()
    assert (first + rest).decode() == "".join(f"line {i}\n" for i in range(1, 11))
    status, done = eng.get(f"/api/v1/executions/{rec['id']}")
    assert done["status"] == "succeeded", done


def test_output_of_a_quiet_action_is_readable_while_it_runs(eng, tmp_path):
    """An action that prints a line and then goes quiet: the line reaches the
    log store at once, not when the action ends."""
    rec, pid = eng.start_sleep(tmp_path, 30)
    try:
        t0 = time.monotonic()
        deadline = t0 + 3
        log = ""
        while "started" not in log and time.monotonic() < deadline:
            status, log = eng.get(f"/api/v1/executions/{rec['id']}/logs/stdout")
            time.sleep(0.05)
        assert log == f"started {pid}\n", \
            f"stdout log after {time.monotonic() - t0:.1f}s of a running action: {log!r}"
        got = eng.wait_output(rec["id"], "started", timeout=3)
        assert got == f"started {pid}\n"
    finally:
        eng.post(f"/api/v1/executions/{rec['id']}/cancel")
        eng.wait(rec["id"])


def test_follow_logs_cli(eng):
    rec = eng.submit("e2e.ticker", {"lines": 8, "pause": 0.1})
    r = eng.cli("execution", "logs", rec["id"], "-f")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "".join(f"line {i}\n" for i in range(1, 9))


def test_output_cap(eng):
    rec = eng.run("e2e.big", {"bytes": 5_000_000}, timeout=60)
    assert rec["status"] == "succeeded", rec
    res = rec["result"]
    assert res["stdout_bytes"] == 5_000_000
    assert res["truncated"] is True
    assert len(res["stdout"]) <= 64 * 1024

    status, raw = get_bytes(eng, f"/api/v1/executions/{rec['id']}/logs/stdout")
    assert status == 200
    xs = raw.count(b"x")
    assert OUTPUT_CAP - 1000 <= xs <= OUTPUT_CAP, f"{xs} bytes of output kept, cap {OUTPUT_CAP}"
    assert len(raw) <= OUTPUT_CAP + 1000, len(raw)
    assert re.search(rb"truncat", raw[OUTPUT_CAP - 1000:], re.I), raw[-300:]


def test_200mb_output_completes(eng):
    t0 = time.monotonic()
    rec = eng.run("e2e.zeros", timeout=120)
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["stdout_bytes"] == 200_000_000
    print(f"200 MB of output captured in {time.monotonic() - t0:.1f}s")


# --- hostile actions -----------------------------------------------------------------

def test_action_never_reads_stdin(eng):
    rec = eng.run("e2e.noread", {"blob": "y" * 2_000_000}, timeout=30)
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["stdout"] == "did not read stdin\n"


def test_action_closes_stdout_and_keeps_running(eng):
    rec = eng.run("e2e.close_stdout", timeout=30)
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["duration_ms"] >= 900, rec["result"]
    assert "still running after closing stdout" in rec["result"]["stderr"]
    assert rec["result"]["stdout"] == "before close\n"


def test_action_forks_a_daemon(eng):
    t0 = time.monotonic()
    rec = eng.submit("e2e.daemon")
    try:
        done = eng.wait(rec["id"], timeout=20)
        took = time.monotonic() - t0
        assert done["status"] == "succeeded", done
        assert took < 5, f"an action that exits at once took {took:.1f}s (its daemon holds stdout)"
        assert done["result"]["duration_ms"] < 5000
    finally:
        status, out = eng.get(f"/api/v1/executions/{rec['id']}/logs/stdout")
        m = re.search(r"daemon (\d+)", out if isinstance(out, str) else "")
        if m and pid_alive(int(m.group(1))):
            os.kill(int(m.group(1)), signal.SIGKILL)


def test_binary_output(eng):
    rec = eng.run("e2e.binary")
    assert rec["status"] == "succeeded", rec
    # The record and the list are valid JSON and UTF-8 (Api decodes strictly).
    status, again = eng.get(f"/api/v1/executions/{rec['id']}")
    assert status == 200
    assert again["result"]["stdout"].startswith("ok ")
    assert again["result"]["stdout"].rstrip("\n").endswith(" end")
    assert again["result"]["stderr"].startswith("err ")
    status, listing = eng.get("/api/v1/executions?action=e2e.binary")
    assert status == 200 and listing["executions"]
    status, raw = get_bytes(eng, f"/api/v1/executions/{rec['id']}/logs/stdout")
    assert raw.startswith(b"ok ") and raw.endswith(b" end\n"), raw
    r = eng.cli("execution", "show", rec["id"], "--json")
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)


def test_10mb_parameter(eng):
    chunk = hashlib.sha256(b"packrun").hexdigest()         # 64 ASCII characters
    doc = chunk * (10 * 1024 * 1024 // len(chunk))
    assert len(doc) == 10 * 1024 * 1024
    rec = eng.run("e2e.param_len", {"doc": doc}, timeout=60)
    assert rec["status"] == "succeeded", {k: v for k, v in rec.items() if k != "parameters"}
    assert rec["result"]["data"] == {"len": len(doc),
                                     "sha256": hashlib.sha256(doc.encode()).hexdigest()}


def test_killed_by_signal(eng):
    rec = eng.run("e2e.selfkill")
    assert rec["status"] == "failed", rec
    assert "SIGKILL" in rec["result"]["error"], rec["result"]
    assert rec["result"]["exit_code"] != 0


def test_native_entry_point(start_up, tmp_path):
    d = start_up(register_e2e=False)
    root = tmp_path / "nativepack"
    (root / "actions").mkdir(parents=True)
    (root / "pack.yaml").write_text('ref: nativepack\nlabel: N\ndescription: N.\nversion: "1"\n')
    (root / "actions" / "run.yaml").write_text(
        "ref: nativepack.run\nlabel: R\ndescription: R.\nrunner_type: native\n"
        "entry_point: run.sh\n")
    script = root / "actions" / "run.sh"
    script.write_text("#!/bin/sh\necho native ok\n")
    script.chmod(0o755)
    r = d.api.cli("pack", "install", root)
    assert r.returncode == 0, r.stderr
    rec = d.api.run("nativepack.run")
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["stdout"] == "native ok\n"

    # Without the execute bit: refused at install, or a failed execution that says why.
    (root / "pack.yaml").write_text('ref: nativepack\nlabel: N\ndescription: N.\nversion: "2"\n')
    script.chmod(0o644)
    r = d.api.cli("pack", "install", root)
    if r.returncode != 0:
        assert "run.sh" in r.stderr and "entry_point" in r.stderr, r.stderr
    else:
        rec = d.api.run("nativepack.run")
        assert rec["status"] == "failed", rec
        assert re.search(r"permission|execut", rec["result"]["error"], re.I), rec["result"]


# --- secrets ---------------------------------------------------------------------

def test_secret_parameters_redacted(eng, tmp_path):
    secret = "hunter2-" + os.urandom(6).hex()
    outfile = tmp_path / "secret.out"
    rec = eng.submit("e2e.secret", {"user": "ada", "password": secret, "outfile": str(outfile)})
    assert rec["parameters"]["password"] == "********", rec
    done = eng.wait(rec["id"])
    assert done["status"] == "succeeded", done

    assert outfile.read_text() == secret, "the action did not receive the real value"
    assert done["result"]["data"] == {"user": "ada", "secret_in_environ": False,
                                      "secret_in_cmdline": False}
    assert done["parameters"] == {"user": "ada", "password": "********",
                                  "outfile": str(outfile)}

    status, listing = eng.get("/api/v1/executions?action=e2e.secret")
    listed = [e for e in listing["executions"] if e["id"] == rec["id"]][0]
    assert listed["parameters"]["password"] == "********"

    texts = [json.dumps(done), json.dumps(listing)]
    for stream in ("stdout", "stderr"):
        texts.append(get_bytes(eng, f"/api/v1/executions/{rec['id']}/logs/{stream}")[1].decode())
    r = eng.cli("execution", "show", rec["id"], "--json")
    texts.append(r.stdout)
    for t in texts:
        assert secret not in t, "the secret leaked"


# --- output formats ---------------------------------------------------------------

def test_yaml_output(eng):
    rec = eng.run("e2e.yaml_out")
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["data"] == {"name": "Ada", "count": 3, "ratio": 0.5,
                                     "tags": ["a", "b"], "nested": {"ok": True, "none": None}}


def test_jsonl_output(eng):
    rec = eng.run("e2e.jsonl_out")
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["data"] == [{"n": 1}, {"n": 2, "s": "two"}, [3]]


def test_json_output_that_does_not_parse(eng):
    rec = eng.run("e2e.bad_json")
    assert rec["status"] == "succeeded", rec
    res = rec["result"]
    assert res["data"] is None
    assert isinstance(res.get("parse_error"), str) and res["parse_error"], res
    assert "this is not JSON" in res["stdout"]
