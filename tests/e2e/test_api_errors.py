"""Bad requests get JSON errors with fitting status codes."""

import json
import socket

import pytest


def assert_error(status, body, want_status, want_code, mention=None):
    assert status == want_status, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == want_code, body
    assert isinstance(err["message"], str) and err["message"], body
    if mention:
        assert mention in err["message"], body


def test_unknown_action_on_submit(up):
    status, body = up.post("/api/v1/executions", {"action": "hello.nope", "parameters": {}})
    assert_error(status, body, 404, "not_found", "hello.nope")


def test_unknown_pack_action_on_submit(up):
    status, body = up.post("/api/v1/executions", {"action": "nopack.x"})
    assert_error(status, body, 404, "not_found", "nopack.x")


def test_malformed_json(up):
    status, body = up.request("POST", "/api/v1/executions", raw=b'{"action": "hello.noop",',
                              headers={"Content-Type": "application/json"})
    assert_error(status, body, 400, "invalid")


def test_body_not_an_object(up):
    status, body = up.post("/api/v1/executions", ["hello.noop"])
    assert_error(status, body, 400, "invalid")


def test_missing_action_field(up):
    status, body = up.post("/api/v1/executions", {"parameters": {}})
    assert_error(status, body, 400, "invalid", "action")


def test_parameters_not_an_object(up):
    status, body = up.post("/api/v1/executions", {"action": "hello.greet", "parameters": "x"})
    assert_error(status, body, 400, "invalid", "parameters")


@pytest.mark.parametrize("timeout", [0, -1, "10", 1.5])
def test_bad_timeout(up, timeout):
    status, body = up.post("/api/v1/executions",
                           {"action": "hello.noop", "timeout_seconds": timeout})
    assert_error(status, body, 400, "invalid", "timeout_seconds")


@pytest.mark.parametrize("method,path", [
    ("GET", "/nope"),
    ("GET", "/api/v1/nope"),
    ("GET", "/api/v2/packs"),
    ("POST", "/api/v1/packs/hello/whatever"),
])
def test_unknown_route(up, method, path):
    status, body = up.request(method, path)
    assert_error(status, body, 404, "not_found")


def test_unknown_ids(up):
    assert_error(*up.get("/api/v1/executions/99999999"), 404, "not_found")
    assert_error(*up.get("/api/v1/executions/abc"), 404, "not_found")
    assert_error(*up.post("/api/v1/executions/99999999/cancel"), 404, "not_found")
    assert_error(*up.get("/api/v1/executions/99999999/logs/stdout"), 404, "not_found")
    assert_error(*up.get("/api/v1/packs/nopack"), 404, "not_found", "nopack")
    assert_error(*up.delete("/api/v1/packs/nopack"), 404, "not_found", "nopack")
    assert_error(*up.get("/api/v1/actions/hello.nope"), 404, "not_found", "hello.nope")


def test_cancel_finished_execution_conflicts(up):
    rec = up.run("hello.noop")
    status, body = up.post(f"/api/v1/executions/{rec['id']}/cancel")
    assert_error(status, body, 409, "conflict")
    status, again = up.get(f"/api/v1/executions/{rec['id']}")
    assert again["status"] == "succeeded"


def test_register_relative_path(up):
    status, body = up.post("/api/v1/packs/register", {"path": "examples/packs/hello"})
    assert_error(status, body, 400, "invalid", "path")


def test_bad_query_parameters(up):
    assert_error(*up.get("/api/v1/executions?limit=0"), 400, "invalid", "limit")
    assert_error(*up.get("/api/v1/executions?limit=x"), 400, "invalid", "limit")
    assert_error(*up.get("/api/v1/executions/1?wait=-1"), 400, "invalid", "wait")


def test_wait_returns_early_when_done(up):
    import time
    rec = up.submit("hello.noop")
    t0 = time.monotonic()
    status, done = up.get(f"/api/v1/executions/{rec['id']}?wait=30")
    assert status == 200
    assert done["status"] == "succeeded"
    assert time.monotonic() - t0 < 5


def test_wait_times_out_with_current_state(up):
    import time
    rec = up.submit("e2e.sleep", {"seconds": 10})
    try:
        t0 = time.monotonic()
        status, cur = up.get(f"/api/v1/executions/{rec['id']}?wait=1")
        took = time.monotonic() - t0
        assert status == 200
        assert cur["status"] in ("requested", "scheduled", "running"), cur
        assert cur["result"] is None
        assert 0.8 < took < 4, took
    finally:
        up.post(f"/api/v1/executions/{rec['id']}/cancel")
        up.wait(rec["id"])


# --- request body limit ---------------------------------------------------------

def raw_post(port, path, body, content_length=None):
    """Send a POST by hand (so a lying or huge Content-Length can be sent);
    returns (status, parsed JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {content_length if content_length is not None else len(body)}\r\n"
                f"Connection: close\r\n\r\n").encode()
        s.sendall(head)
        try:
            s.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"chunked" in head.lower():
        out = b""
        while payload:
            size_line, _, rest = payload.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out += rest[:size]
            payload = rest[size + 2:]
        payload = out
    return status, json.loads(payload)


@pytest.mark.parametrize("how", ["env", "config"])
def test_oversize_body(start_up, tmp_path, how):
    if how == "env":
        d = start_up(env={"PACKRUN_MAX_BODY_BYTES": "1000"}, register_e2e=False)
    else:
        cfg = tmp_path / "packrun.yaml"
        cfg.write_text("max_body_bytes: 1000\n")
        d = start_up(args=["--config", str(cfg)], register_e2e=False)
    api = d.api

    small = {"action": "hello.greet", "parameters": {"name": "x" * 800}}
    assert len(json.dumps(small)) < 1000
    rec = api.submit("hello.greet", small["parameters"])
    assert api.wait(rec["id"])["status"] == "succeeded"

    big = {"action": "hello.greet", "parameters": {"name": "x" * 2000}}
    status, body = api.post("/api/v1/executions", big)
    assert_error(status, body, 413, "too_large")

    # A large body sent without waiting for the answer, and a Content-Length
    # far over the limit, are refused the same way.
    status, body = raw_post(d.port, "/api/v1/executions", json.dumps(big).encode())
    assert_error(status, body, 413, "too_large")
    status, body = raw_post(d.port, "/api/v1/executions", b"{}", content_length=10**12)
    assert_error(status, body, 413, "too_large")

    # Nothing was stored for them, and the server is still fine.
    status, body = api.get("/api/v1/executions")
    assert [e["id"] for e in body["executions"]] == [rec["id"]]
    status, body = api.get("/health")
    assert status == 200
