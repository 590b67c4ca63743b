"""Running actions with `packrun run` and the API, and listing executions."""

import json
import re
from pathlib import Path


# --- packrun run ---------------------------------------------------------------

def test_run_greet_prints_greeting(up):
    r = up.cli("run", "hello.greet", "name=Ada")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Hello, Ada" in r.stdout


def test_run_greet_default_parameter(up):
    r = up.cli("run", "hello.greet", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rec = json.loads(r.stdout)
    assert rec["parameters"] == {"name": "world"}
    assert rec["result"]["data"] == {"greeting": "Hello, world"}


def test_run_json_gives_the_record(up):
    r = up.cli("run", "hello.greet", "name=Ada", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rec = json.loads(r.stdout)
    assert rec["action"] == "hello.greet"
    assert rec["pack"] == "hello"
    assert rec["status"] == "succeeded"
    assert rec["parameters"] == {"name": "Ada"}
    assert isinstance(rec["id"], int)
    assert rec["worker"]
    for k in ("created_at", "started_at", "finished_at"):
        assert rec[k], k
    res = rec["result"]
    assert res["exit_code"] == 0
    assert res["data"]["greeting"] == "Hello, Ada"
    assert res["error"] is None
    assert json.loads(res["stdout"]) == {"greeting": "Hello, Ada"}
    assert isinstance(res["duration_ms"], int)

    # The same record through the API.
    status, again = up.get(f"/api/v1/executions/{rec['id']}")
    assert status == 200
    assert again["result"]["data"] == res["data"]


def test_run_failing_action(up):
    r = up.cli("run", "hello.fail")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failing on purpose" in r.stdout + r.stderr

    r = up.cli("run", "hello.fail", "--json")
    assert r.returncode == 1
    rec = json.loads(r.stdout)
    assert rec["status"] == "failed"
    assert rec["result"]["exit_code"] == 3
    assert rec["result"]["error"] == "hello.fail: failing on purpose"
    assert "hello.fail: failing on purpose" in rec["result"]["stderr"]


def test_run_unknown_action(up):
    r = up.cli("run", "hello.nope")
    assert r.returncode == 4, r.stdout + r.stderr
    assert "hello.nope" in r.stderr


def test_run_bad_parameter_value(up):
    r = up.cli("run", "e2e.validate", "title=x", "count=notanumber")
    assert r.returncode == 4, r.stdout + r.stderr
    assert "count" in r.stderr


def test_run_no_wait_prints_id(up):
    r = up.cli("run", "hello.noop", "--no-wait")
    assert r.returncode == 0, r.stderr
    m = re.search(r"\d+", r.stdout)
    assert m, r.stdout
    rec = up.wait(int(m.group()))
    assert rec["action"] == "hello.noop"
    assert rec["status"] == "succeeded"


def test_shell_output_captured(up):
    r = up.cli("run", "hello.shout", "text=hi there", "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["result"]["stdout"] == "HI THERE\n"
    assert rec["result"]["stdout_bytes"] == len("HI THERE\n")
    assert rec["result"]["data"] is None   # output_format text: nothing parsed

    status, log = up.get(f"/api/v1/executions/{rec['id']}/logs/stdout")
    assert status == 200
    assert log == "HI THERE\n"


def test_stderr_captured(up):
    rec = up.run("hello.fail")
    status, log = up.get(f"/api/v1/executions/{rec['id']}/logs/stderr")
    assert status == 200
    assert log == "hello.fail: failing on purpose\n"
    assert rec["result"]["stderr_bytes"] == len(log)


def test_cwd_is_pack_folder(up):
    rec = up.run("e2e.pwd")
    assert rec["status"] == "succeeded", rec
    status, pack = up.get("/api/v1/packs/e2e")
    assert rec["result"]["stdout"].strip() == str(Path(pack["dir"]).resolve())


def test_parameters_on_stdin_as_one_json_line(up):
    params = {"message": "it's \"quoted\"\nand multi-line ✓", "count": 7,
              "data": {"list": [1, 2.5, None, True], "nested": {"k": "v"}}}
    rec = up.run("e2e.stdin", params)
    assert rec["status"] == "succeeded", rec
    out = rec["result"]["stdout"]
    assert out.endswith("\n") and out.count("\n") == 1, f"expected one line: {out!r}"
    assert json.loads(out) == params


def test_json_output_last_line(up):
    rec = up.run("e2e.json_log_first")
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["data"] == {"answer": 42, "items": ["a", "b"]}
    assert rec["result"]["stdout"].startswith("starting up")


def test_json_output_whole_stdout(up):
    rec = up.run("e2e.json_whole")
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["data"] == {"answer": 42, "nested": {"ok": True}}


def test_python_lib_on_pythonpath(up):
    # hello.greet imports lib/greeting.py
    rec = up.run("hello.greet", {"name": "Lib"})
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["data"] == {"greeting": "Hello, Lib"}


# --- listing executions ----------------------------------------------------------

def ids_in_table(text):
    ids = []
    for line in text.splitlines():
        tok = line.split()
        if tok and tok[0].isdigit():
            ids.append(int(tok[0]))
    return ids


def test_execution_list_newest_first(up):
    mine = [up.run(a)["id"] for a in ("hello.noop", "hello.fail", "hello.greet")]

    status, body = up.get("/api/v1/executions")
    assert status == 200
    ids = [e["id"] for e in body["executions"]]
    assert ids == sorted(ids, reverse=True), ids
    assert ids[:3] == mine[::-1]

    r = up.cli("execution", "list")
    assert r.returncode == 0, r.stderr
    shown = ids_in_table(r.stdout)
    assert shown == sorted(shown, reverse=True), r.stdout
    assert shown[:3] == mine[::-1], r.stdout
    assert "hello.fail" in r.stdout and "failed" in r.stdout

    r = up.cli("execution", "list", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    execs = doc["executions"] if isinstance(doc, dict) else doc
    assert [e["id"] for e in execs][:3] == mine[::-1]


def test_execution_list_filters(up):
    failed = up.run("hello.fail")["id"]
    ok = up.run("hello.noop")["id"]

    status, body = up.get("/api/v1/executions?status=failed")
    assert status == 200
    assert body["executions"], body
    assert {e["status"] for e in body["executions"]} == {"failed"}
    assert failed in [e["id"] for e in body["executions"]]
    assert ok not in [e["id"] for e in body["executions"]]

    status, body = up.get("/api/v1/executions?action=hello.noop")
    assert status == 200
    assert {e["action"] for e in body["executions"]} == {"hello.noop"}
    assert ok in [e["id"] for e in body["executions"]]

    status, body = up.get("/api/v1/executions?status=succeeded&action=hello.fail")
    assert status == 200
    assert body["executions"] == []

    status, body = up.get("/api/v1/executions?pack=hello")
    assert status == 200
    assert {e["pack"] for e in body["executions"]} == {"hello"}

    status, body = up.get("/api/v1/executions?status=bogus")
    assert status == 400, body
    assert body["error"]["code"] == "invalid"

    r = up.cli("execution", "list", "--status", "failed")
    assert r.returncode == 0, r.stderr
    assert failed in ids_in_table(r.stdout)
    assert ok not in ids_in_table(r.stdout)

    r = up.cli("execution", "list", "--action", "hello.noop")
    assert r.returncode == 0, r.stderr
    assert ok in ids_in_table(r.stdout)
    assert failed not in ids_in_table(r.stdout)


def test_execution_list_paging(up):
    mine = [up.run("hello.noop")["id"] for _ in range(3)]
    status, body = up.get("/api/v1/executions?limit=2")
    assert [e["id"] for e in body["executions"]] == [mine[2], mine[1]]
    status, body = up.get(f"/api/v1/executions?limit=2&before={mine[1]}")
    assert [e["id"] for e in body["executions"]][0] == mine[0]


def test_execution_show(up):
    rec = up.run("hello.greet", {"name": "Show"})
    r = up.cli("execution", "show", rec["id"])
    assert r.returncode == 0, r.stderr
    assert "hello.greet" in r.stdout
    assert "succeeded" in r.stdout
    assert "Hello, Show" in r.stdout

    r = up.cli("execution", "show", rec["id"], "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["id"] == rec["id"]
    assert shown["result"]["data"] == {"greeting": "Hello, Show"}

    r = up.cli("execution", "show", "99999999")
    assert r.returncode != 0
    assert "99999999" in r.stderr


def test_execution_logs_cli(up):
    rec = up.run("hello.shout", {"text": "log me"})
    r = up.cli("execution", "logs", rec["id"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "LOG ME\n"
    rec = up.run("hello.fail")
    r = up.cli("execution", "logs", rec["id"], "stderr")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello.fail: failing on purpose\n"
