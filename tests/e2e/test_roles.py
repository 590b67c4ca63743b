"""`packrun server` and `packrun worker` as separate processes on one
SQLite database."""

import json
import statistics
from datetime import datetime


def ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_worker_process_runs_executions(roles):
    api, server, worker = roles
    rec = api.submit("hello.greet", {"name": "Worker"})
    done = api.wait(rec["id"], timeout=30)
    assert done["status"] == "succeeded", done
    assert done["result"]["data"] == {"greeting": "Hello, Worker"}
    assert done["worker"] == "e2e-worker-1"
    assert worker.proc.poll() is None, "the worker exited"


def test_worker_listed(roles):
    api, server, worker = roles
    # The worker registers itself when it starts; an execution it ran proves it is up.
    api.run("hello.noop", timeout=30)

    status, body = api.get("/api/v1/workers")
    assert status == 200
    names = [w["name"] for w in body["workers"]]
    assert names == ["e2e-worker-1"], f"expected only the separate worker: {body}"
    w = body["workers"][0]
    assert w["pid"] == worker.proc.pid
    assert w["slots"] == 2
    assert "shell" in json.dumps(w["runtimes"])

    r = api.cli("worker", "list")
    assert r.returncode == 0, r.stderr
    assert "e2e-worker-1" in r.stdout

    r = api.cli("worker", "list", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    workers = doc["workers"] if isinstance(doc, dict) else doc
    assert [w["name"] for w in workers] == ["e2e-worker-1"]


def test_server_alone_does_not_run(roles):
    """With the worker stopped, an execution stays queued; a worker started
    later picks it up."""
    api, server, worker = roles
    rc, took = worker.stop()
    assert rc == 0, worker.log()

    rec = api.submit("hello.noop")
    status, cur = api.get(f"/api/v1/executions/{rec['id']}?wait=1")
    assert cur["status"] == "requested", cur

    from conftest import Daemon
    w2 = Daemon("worker", server.data_dir, server.log_path.parent, name="worker2",
                args=["--api", api.url, "--name", "e2e-worker-2"]).start()
    try:
        api.wait_worker("e2e-worker-2")
        done = api.wait(rec["id"], timeout=30)
        assert done["status"] == "succeeded", done
        assert done["worker"] == "e2e-worker-2"
    finally:
        w2.stop_and_check()


def test_worker_wakes_quickly(roles):
    """A worker in another process picks up new work within milliseconds,
    not after a polling interval."""
    api, server, worker = roles
    api.run("hello.noop", timeout=30)  # the worker is up
    delays = []
    for _ in range(7):
        rec = api.run("hello.noop", timeout=30)
        assert rec["status"] == "succeeded"
        delays.append((ts(rec["scheduled_at"]) - ts(rec["created_at"])).total_seconds())
    assert statistics.median(delays) < 0.1, f"claim delays (s): {delays}"


def test_two_workers_never_run_one_execution_twice(roles, tmp_path):
    api, server, worker = roles
    from conftest import Daemon, E2E_PACK
    status, body = api.post("/api/v1/packs/register", {"path": str(E2E_PACK)})
    assert status == 201, body
    w2 = Daemon("worker", server.data_dir, server.log_path.parent, name="worker2b",
                args=["--api", api.url, "--name", "e2e-worker-2", "--slots", "2"]).start()
    marks = tmp_path / "marks"
    try:
        ids = [api.submit("e2e.mark", {"file": str(marks)})["id"] for _ in range(40)]
        recs = [api.wait(i, timeout=60) for i in ids]
    finally:
        w2.stop_and_check()
    bad = [r for r in recs if r["status"] != "succeeded"]
    assert not bad, bad
    assert {r["worker"] for r in recs} <= {"e2e-worker-1", "e2e-worker-2"}
    ran = sorted(int(x) for x in marks.read_text().split())
    assert ran == sorted(ids), "some execution ran twice or not at all"
