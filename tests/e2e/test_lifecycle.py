"""Stopping the daemon: running executions get stop_grace_seconds to
finish, then end as abandoned; every execution ends in a terminal status."""

import signal
import time


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


def test_sigterm_abandons_long_execution(start_up, tmp_path):
    d = start_up(env={"PACKRUN_STOP_GRACE_SECONDS": "1", "PACKRUN_KILL_GRACE_SECONDS": "1"})
    rec, pid = d.api.start_sleep(tmp_path, 30)

    d.signal(signal.SIGTERM)
    t0 = time.monotonic()
    rc, _ = d.stop(timeout=15)
    took = time.monotonic() - t0
    assert rc == 0, d.log()
    assert took < 6, f"stopping took {took:.1f}s with stop_grace_seconds=1"
    assert wait_gone(pid), "the action's process outlived the daemon"

    d2 = start_up(data=d.data_dir, packs=None, register_e2e=False)
    status, after = d2.api.get(f"/api/v1/executions/{rec['id']}")
    assert status == 200
    assert after["status"] == "abandoned", after
    assert after["finished_at"], after


def test_sigterm_lets_short_execution_finish(start_up, tmp_path):
    d = start_up(env={"PACKRUN_STOP_GRACE_SECONDS": "10"})
    rec, pid = d.api.start_sleep(tmp_path, 1.5)

    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc, _ = d.stop(timeout=15)
    took = time.monotonic() - t0
    assert rc == 0, d.log()
    assert took < 8, f"stopping took {took:.1f}s"

    d2 = start_up(data=d.data_dir, packs=None, register_e2e=False)
    status, after = d2.api.get(f"/api/v1/executions/{rec['id']}")
    assert after["status"] == "succeeded", after
    assert after["result"]["stdout"].endswith("done\n"), after


def test_sigint_stops_cleanly(start_up):
    d = start_up(register_e2e=False)
    d.signal(signal.SIGINT)
    rc, _ = d.stop(timeout=15)
    assert rc == 0, d.log()


def test_idle_daemon_stops_quickly(start_up):
    d = start_up(register_e2e=False)
    t0 = time.monotonic()
    rc, _ = d.stop(timeout=15)
    assert rc == 0, d.log()
    assert time.monotonic() - t0 < 3


def test_data_survives_restart(start_up):
    d = start_up()
    rec = d.api.run("hello.greet", {"name": "Again"})
    rc, _ = d.stop()
    assert rc == 0, d.log()

    d2 = start_up(data=d.data_dir, packs=None, register_e2e=False)
    assert {"hello", "sysinfo", "e2e"} <= set(d2.api.pack_refs())
    status, again = d2.api.get(f"/api/v1/executions/{rec['id']}")
    assert again["result"]["data"] == {"greeting": "Hello, Again"}
    # and new executions get new ids
    rec2 = d2.api.run("hello.noop")
    assert rec2["id"] > rec["id"]
    assert rec2["status"] == "succeeded"


def test_worker_sigterm_abandons(launcher, tmp_path):
    """A separate worker, stopped while its execution runs past the grace,
    leaves it abandoned; the server keeps answering."""
    from conftest import E2E_PACK, EXAMPLES, free_port
    data = tmp_path / "data"
    server = launcher.daemon("server", data, args=["--packs", str(EXAMPLES)], port=free_port())
    server.wait_healthy()
    status, body = server.api.post("/api/v1/packs/register", {"path": str(E2E_PACK)})
    assert status == 201, body
    worker = launcher.daemon("worker", data, name="worker", args=["--name", "w-stop"],
                             env={"PACKRUN_STOP_GRACE_SECONDS": "1",
                                  "PACKRUN_KILL_GRACE_SECONDS": "1"})
    rec, pid = server.api.start_sleep(tmp_path, 30)

    t0 = time.monotonic()
    rc, _ = worker.stop(timeout=15)
    assert rc == 0, worker.log()
    assert time.monotonic() - t0 < 6
    assert wait_gone(pid)
    done = server.api.wait(rec["id"], timeout=10)
    assert done["status"] == "abandoned", done


def test_log_lines_are_logfmt_or_json_at_the_chosen_level(start_up):
    import json as _json
    d = start_up(args=["--log-format", "json", "--log-level", "debug"])
    assert d.api.run("hello.noop")["status"] == "succeeded"
    lines = [l for l in d.log().splitlines() if l.startswith("{")]
    assert lines, d.log()
    events = [_json.loads(l) for l in lines]
    assert all({"ts", "level", "component", "msg"} <= set(e) for e in events), events[:3]
    assert any(e["level"] == "debug" for e in events), "debug lines missing at --log-level debug"

    quiet = start_up(args=["--log-level", "warn"])
    assert quiet.api.run("hello.noop")["status"] == "succeeded"
    text = quiet.log()
    assert "level=info" not in text and "level=debug" not in text, text


def test_an_action_dies_with_a_killed_worker(start_up, tmp_path):
    """A worker killed with SIGKILL takes its running actions with it, and
    the execution ends as abandoned once it restarts."""
    import os as _os
    import signal as _signal
    import time as _time

    data = tmp_path / "data"
    d = start_up(data=data)
    rec, pid = d.api.start_sleep(tmp_path, 60)
    d.signal(_signal.SIGKILL)
    d.proc.wait(10)
    deadline = _time.monotonic() + 10
    while True:
        try:
            _os.kill(pid, 0)
        except ProcessLookupError:
            break
        assert _time.monotonic() < deadline, f"action {pid} outlived its killed worker"
        _time.sleep(0.05)
    again = start_up(data=data, register_e2e=False)
    assert again.api.wait(rec["id"], timeout=20)["status"] == "abandoned"
