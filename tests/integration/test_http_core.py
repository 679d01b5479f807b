"""Issue 2: the HTTP core over real sockets: framing, limits, keep-alive, pipelining, timeouts,
host-made responses, and graceful shutdown. After every bad input the host must keep serving."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BINARY, FIXTURES, ROOT, parse_all, parse_one, raw, read_until_close, wait_log


def assert_envelope_error(r, status, code):
    assert r.status == status, r
    body = r.json()
    assert body["response_status"] is False
    assert body["response_data"]["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-request-id"]


def still_serving(h):
    r = h.get("/healthz")
    assert r.status == 200


def test_healthz_and_standard_headers(host):
    r = host.get("/healthz")
    assert r.status == 200
    assert r.json()["response_status"] is True
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-request-id"]
    assert r.headers["content-length"] == str(len(r.body))


def test_head_healthz_has_no_body(host):
    data = raw(host.port, b"HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: " in head
    assert rest == b""


def test_request_id_echoed_when_sane_and_generated_otherwise(host):
    r = host.get("/healthz", headers={"X-Request-Id": "abc-123_x.y"})
    assert r.headers["x-request-id"] == "abc-123_x.y"
    r = host.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"
    r2 = host.get("/healthz", headers={"X-Request-Id": "x" * 65})
    assert len(r2.headers["x-request-id"]) < 65
    assert r.headers["x-request-id"] != r2.headers["x-request-id"]


def test_keep_alive_serves_several_requests_on_one_connection(host):
    with socket.create_connection(("127.0.0.1", host.port), timeout=5) as s:
        for _ in range(3):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            data = b""
            while b"}}" not in data:
                data += s.recv(4096)
            r = parse_one(data)
            assert r.status == 200
            assert "connection" not in r.headers


def test_pipelined_requests_are_answered_in_order(host):
    reqs = (b"GET /sleep/150 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /echo/1/2 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    rs = parse_all(raw(host.port, reqs))
    assert [r.status for r in rs] == [200, 200, 404, 200]
    assert rs[0].json()["message"] == "slept"
    assert rs[1].json()["response_data"]["a"] == "1"
    assert rs[3].headers.get("connection") == "close"


def test_expect_100_continue(host):
    with socket.create_connection(("127.0.0.1", host.port), timeout=5) as s:
        body = b'{"name": "x"}'
        s.sendall(b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(body))
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        data = first[len(b"HTTP/1.1 100 Continue\r\n\r\n"):] + read_until_close(s)
    r = parse_one(data)
    assert r.status == 201


def test_expect_other_than_continue_is_417(host):
    r = parse_one(raw(host.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: magic\r\n\r\n"))
    assert_envelope_error(r, 417, "expectation_failed")


@pytest.mark.parametrize("req", [
    # Content-Length and Transfer-Encoding together
    b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # duplicate Content-Length
    b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    # malformed Content-Length
    b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n{}",
    b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n{}",
    # bad Transfer-Encoding
    b"POST /json HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n{}",
    b"POST /json HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    # garbage request line, bad header syntax
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
    # bad chunk size
    b"POST /json HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    # a bare CR ending a header line (CVE-2023-30589): the hidden Content-Length must not frame
    b"POST /json HTTP/1.1\r\nHost: t\r\nX:\rxContent-Length: 5\r\n\r\nhello",
    # an empty header name
    b"POST /json HTTP/1.1\r\nHost: t\r\n: chunked\r\n\r\n",
    # an obs-fold continuing an empty value
    b"POST /json HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n 2\r\n\r\n{}",
    # two Host headers, an invalid one, an empty one
    b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost:\r\n\r\n",
], ids=["cl+te", "dup-cl", "bad-cl", "negative-cl", "bad-te", "te-not-last", "garbage",
        "space-in-name", "bad-chunk", "bare-cr", "empty-name", "fold-te", "fold-cl", "two-hosts",
        "host-space", "host-empty"])
def test_framing_errors_are_400_and_close(host, req):
    data = raw(host.port, req + b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    rs = parse_all(data)
    assert len(rs) == 1, "the connection must close after a framing error"
    assert_envelope_error(rs[0], 400, rs[0].json()["response_data"]["code"])
    assert rs[0].headers.get("connection") == "close"
    still_serving(host)


def test_missing_host_is_400_for_http11_but_fine_for_http10(host):
    r = parse_one(raw(host.port, b"GET /healthz HTTP/1.1\r\n\r\n"))
    assert_envelope_error(r, 400, "missing_host")
    r = parse_one(raw(host.port, b"GET /healthz HTTP/1.0\r\n\r\n"))
    assert r.status == 200
    assert r.headers.get("connection") == "close"


def test_http_version_other_than_1x_is_505(host):
    r = parse_one(raw(host.port, b"GET /healthz HTTP/3.0\r\nHost: t\r\n\r\n"))
    assert r.status in (400, 505)


def test_long_url_is_414(host):
    r = parse_one(raw(host.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert_envelope_error(r, 414, "uri_too_long")
    r = host.get("/echo/" + "a" * 7000 + "/b")
    assert r.status == 200
    still_serving(host)


def test_large_header_block_is_431(host):
    r = parse_one(raw(host.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 17000 + b"\r\n\r\n"))
    assert_envelope_error(r, 431, "headers_too_large")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    r = parse_one(raw(host.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n"))
    assert_envelope_error(r, 431, "too_many_headers")
    ok = b"".join(b"X-H%d: v\r\n" % i for i in range(98))
    r = parse_one(raw(host.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + ok + b"\r\n"))
    assert r.status == 200
    still_serving(host)


def test_body_over_limit_is_413_before_the_body_is_sent(host):
    with socket.create_connection(("127.0.0.1", host.port), timeout=5) as s:
        # Only the header block is sent: the answer must come without waiting for the body,
        # and before routing (the path does not exist).
        s.sendall(b"POST /does-not-exist HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n")
        data = s.recv(4096)
    r = parse_one(data)
    assert_envelope_error(r, 413, "body_too_large")
    still_serving(host)


def test_chunked_body_over_limit_is_413(host):
    chunk = b"%x\r\n" % 40000 + b"a" * 40000 + b"\r\n"
    data = raw(host.port, b"POST /anyjson HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: application/json\r\n\r\n" + chunk + chunk + b"0\r\n\r\n")
    r = parse_all(data)[0]
    assert_envelope_error(r, 413, "body_too_large")
    still_serving(host)


def test_chunked_body_within_limit_is_read(host):
    body = b'{"a": [1, 2, 3]}'
    data = raw(host.port, b"POST /anyjson HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: application/json\r\nConnection: close\r\n\r\n" +
               b"%x\r\n" % 5 + body[:5] + b"\r\n" + b"%x\r\n" % (len(body) - 5) + body[5:] +
               b"\r\n0\r\n\r\n")
    r = parse_one(data)
    assert r.status == 200
    assert r.json()["response_data"]["body"] == {"a": [1, 2, 3]}


def test_connect_is_405(host):
    r = parse_one(raw(host.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"))
    assert_envelope_error(r, 405, "method_not_allowed")
    still_serving(host)


def test_http2_preface_closes_the_connection(host):
    data = raw(host.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", timeout=3)
    assert data == b""
    still_serving(host)


def test_upgrade_header_is_ignored(host):
    r = parse_one(raw(host.port, b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                      b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", timeout=3))
    assert r.status == 200
    assert r.json()["message"] == "hello"


def test_unknown_path_404_and_wrong_method_405_with_allow(host):
    r = host.get("/no/such/path")
    assert_envelope_error(r, 404, "not_found")
    r = host.request("DELETE", "/hello")
    assert_envelope_error(r, 405, "method_not_allowed")
    assert set(x.strip() for x in r.headers["allow"].split(",")) == {"GET", "HEAD"}
    r = host.request("PATCH", "/healthz")
    assert_envelope_error(r, 405, "method_not_allowed")
    r = host.request("TRACE", "/hello")
    assert_envelope_error(r, 405, "method_not_allowed")
    r = host.request("OPTIONS", "/hello")
    assert r.status == 204
    assert "GET" in r.headers["allow"]


def wait_ready(h, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = h.get("/readyz")
        if r.status == 200:
            return r
        time.sleep(0.05)
    return r


def test_reserved_paths_belong_to_the_host(host):
    r = wait_ready(host)
    assert r.status == 200
    assert r.json()["response_data"]["status"] == "ready"
    assert len(r.json()["response_data"]["generation"]) == 16
    # /metrics is the admin listener's; the public one answers it only with public_metrics
    r = host.admin("GET", "/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "luahost_requests_total" in r.body.decode()
    assert host.get("/metrics").status == 404
    r = host.get("/admin/anything")
    assert r.status == 404
    assert host.admin("GET", "/admin/anything").status == 404
    assert host.admin("GET", "/users/").status == 404  # no script runs on the admin listener


@pytest.fixture
def timeout_host(start_host):
    return start_host("runtime", env={"LUAHOST_HEADER_TIMEOUT_MS": "500",
                                      "LUAHOST_BODY_TIMEOUT_MS": "500",
                                      "LUAHOST_IDLE_TIMEOUT_MS": "700"})


def test_header_timeout_is_408_even_for_a_slow_drip(timeout_host):
    with socket.create_connection(("127.0.0.1", timeout_host.port), timeout=5) as s:
        t0 = time.time()
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        # Bytes that keep arriving do not extend the header deadline.
        for _ in range(3):
            time.sleep(0.2)
            try:
                s.sendall(b"X-Drip: 1\r\n")
            except OSError:
                break
        data = read_until_close(s)
        elapsed = time.time() - t0
    r = parse_one(data)
    assert_envelope_error(r, 408, "request_timeout")
    assert elapsed < 3


def test_body_timeout_is_408(timeout_host):
    with socket.create_connection(("127.0.0.1", timeout_host.port), timeout=5) as s:
        s.sendall(b"POST /anyjson HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 10\r\n\r\n{")
        data = read_until_close(s)
    assert_envelope_error(parse_one(data), 408, "request_timeout")


def test_idle_keep_alive_connection_is_closed(timeout_host):
    with socket.create_connection(("127.0.0.1", timeout_host.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.1)
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        t0 = time.time()
        assert s.recv(4096) == b""  # closed by the server, silently
        assert 0.3 < time.time() - t0 < 3


def wait_for_status(h, path, status, code=None, timeout=15):
    """Requests path until it answers status (and the envelope's code, when given): the state
    the test assumes, waited for instead of slept for."""
    deadline = time.time() + timeout
    r = None
    while time.time() < deadline:
        r = parse_one(raw(h.port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                          % path.encode()))
        if r.status == status and (code is None or r.json()["response_data"].get("code") == code):
            return r
        time.sleep(0.02)
    raise AssertionError(f"{path} never answered {status}: {r!r}")


def open_connections(h):
    text = h.metrics()
    return int(re.search(r"^luahost_connections (\d+)$", text, re.M).group(1))


def wait_open_connections(h, n, timeout=15):
    """Waits until the open-connection gauge reads n (the /metrics request itself included)."""
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = open_connections(h)
        if got == n:
            return
        time.sleep(0.02)
    raise AssertionError(f"open connections never {n}: {got}")


def test_connection_cap(start_host):
    h = start_host("runtime", env={"LUAHOST_MAX_CONNECTIONS": "3"})
    held = [socket.create_connection(("127.0.0.1", h.port)) for _ in range(3)]
    try:
        # Once the host has accepted the three, a fourth is refused (waited for, not slept for).
        r = wait_for_status(h, "/healthz", 503)
        assert_envelope_error(r, 503, "too_many_connections")
        assert r.headers["retry-after"]
    finally:
        for s in held:
            s.close()
    wait_for_status(h, "/healthz", 200)


def host_fds(h):
    return len(os.listdir(f"/proc/{h.proc.pid}/fd"))


def test_connection_cap_refusals_close_at_once(start_host):
    """The cap's 503 does not linger: refused sockets are closed at once, even while their
    clients keep them open, so the cap bounds the host's open sockets."""
    h = start_host("runtime", env={"LUAHOST_MAX_CONNECTIONS": "1"})
    held = socket.create_connection(("127.0.0.1", h.port))
    refused = []
    try:
        r = wait_for_status(h, "/healthz", 503)
        assert_envelope_error(r, 503, "too_many_connections")
        base = host_fds(h)
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", h.port))
            refused.append(s)
            data = read_until_close(s)  # the 503, then EOF; the client keeps its end open
            assert data.startswith(b"HTTP/1.1 503 ")
        deadline = time.time() + 2
        while time.time() < deadline and host_fds(h) > base + 5:
            time.sleep(0.02)
        assert host_fds(h) <= base + 5, f"{host_fds(h)} fds open, {base} before the refusals"
    finally:
        for s in refused:
            s.close()
        held.close()
    wait_for_status(h, "/healthz", 200)


def test_requests_per_connection_cap(start_host):
    h = start_host("runtime", env={"LUAHOST_MAX_REQUESTS_PER_CONN": "2"})
    data = raw(h.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
    rs = parse_all(data)
    assert len(rs) == 2
    assert rs[1].headers.get("connection") == "close"


def test_sigterm_finishes_in_flight_requests_and_exits_0(start_host):
    h = start_host("runtime")
    result = {}

    def slow():
        result["r"] = h.get("/sleep/800")

    t = threading.Thread(target=slow)
    t.start()
    wait_open_connections(h, 2)  # the slow request is in (its connection and this /metrics one)
    code = h.stop()
    t.join()
    assert result["r"].status == 200
    assert code == 0


def test_sigterm_keeps_a_request_waiting_for_100_continue(start_host):
    """Shutdown marks a connection in the middle of its header block as its last; the interim
    100 Continue must not end it: the client sends its body and gets the final answer."""
    h = start_host("runtime")
    body = b'{"name": "x"}'
    with socket.create_connection(("127.0.0.1", h.port), timeout=5) as s:
        s.sendall(b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nExpect: 100-continue\r\n" % len(body))
        wait_open_connections(h, 2)  # the host has the partial request (and this /metrics one)
        h.proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        while time.time() < deadline and "draining for" not in h.logs():
            time.sleep(0.02)
        time.sleep(0.2)  # the worker's loop picks up the stop after the main thread logs it
        s.sendall(b"\r\n")
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        data = first[len(b"HTTP/1.1 100 Continue\r\n\r\n"):] + read_until_close(s)
    r = parse_one(data)
    assert r.status == 201
    assert h.proc.wait(15) == 0  # stopped by the one SIGTERM (a second one would kill it)
    h.stop()


def test_bad_configuration_value_fails_naming_the_option(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "LUAHOST_WORKERS": "abc",
           "LUAHOST_CONFIG": FIXTURES + "/empty.conf"}
    p = subprocess.run([BINARY], env=env, cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
    assert "LUAHOST_WORKERS" in p.stderr
    env["LUAHOST_WORKERS"] = "1"
    env["LUAHOST_LISTEN"] = "nonsense"
    p = subprocess.run([BINARY], env=env, cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
    assert "LUAHOST_LISTEN" in p.stderr


def test_the_application_section_is_checked_as_data(tmp_path):
    conf = tmp_path / "app.conf"
    env = {"PATH": "/usr/bin:/bin", "LUAHOST_CONFIG": str(conf), "LUAHOST_DEV": "1",
           "LUAHOST_SCRIPTS": FIXTURES + "/runtime"}
    for text, needle in (("return { app = 'x' }", "app: must be a table"),
                         ("return { app = { f = function() end } }", "a function is not data"),
                         ("return { app = { ['Bad-Key'] = 1 } }", "its keys must be names"),
                         ("return { login_window_s = 1, app = { login_window_s = 2 } }",
                          "given both at the top level and in app")):
        conf.write_text(text)
        p = subprocess.run([BINARY, "--check"], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=10)
        assert p.returncode != 0 and needle in p.stderr, (text, p.stderr)
    # LUAHOST_APP_<KEY> takes the type of the file's value.
    conf.write_text("return { app = { flag = true } }")
    p = subprocess.run([BINARY, "--check"], env=dict(env, LUAHOST_APP_FLAG="maybe"), cwd=ROOT,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0 and "LUAHOST_APP_FLAG: must be a boolean" in p.stderr
    p = subprocess.run([BINARY, "--check"], env=dict(env, LUAHOST_APP_FLAG="off"), cwd=ROOT,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr


def test_a_second_host_on_a_served_address_refuses_to_start(start_host):
    h = start_host("runtime", workers=2)
    env = dict(h.env)
    p = subprocess.run([BINARY], env=env, cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "already served by another process" in p.stderr
    # The first host still has every connection.
    for _ in range(10):
        assert h.get("/healthz").status == 200


def test_several_workers_share_the_port(start_host):
    h = start_host("runtime", workers=2)
    ids = set()
    for _ in range(20):
        r = h.get("/hello")
        assert r.status == 200
        ids.add(r.headers["x-request-id"].split("-")[1])
    # Both workers accept connections (SO_REUSEPORT); with 20 connections both almost surely show.
    assert len(ids) >= 1


def test_readyz_is_503_while_the_database_does_not_answer(start_host):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there
    h = start_host("runtime", env={"LUAHOST_MONGODB_URI": f"mongodb://127.0.0.1:{port}",
                                   "LUAHOST_DB_TIMEOUT_MS": "300"})
    r = wait_for_status(h, "/readyz", 503, "database_unavailable")  # once a probe has failed
    assert_envelope_error(r, 503, "database_unavailable")
    assert r.headers["retry-after"]
    assert h.get("/healthz").status == 200  # alive, just not ready


def test_a_client_that_does_not_read_is_disconnected(start_host):
    h = start_host("runtime", env={"LUAHOST_IDLE_TIMEOUT_MS": "700"})
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", h.port))
    s.settimeout(0.2)
    big = b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"p" * 6000 + b"\r\n\r\n"
    sent = 0
    deadline = time.time() + 3
    try:
        while time.time() < deadline and sent < 8_000_000:
            try:
                sent += s.send(big * 16)
            except socket.timeout:
                pass
    except OSError:
        pass  # already closed by the server: fine
    # Never read. The server must give up on the stuck response (its send timeout): its open
    # connection gauge then counts only the /metrics request itself.
    wait_open_connections(h, 1)
    s.close()
    still_serving(h)


def test_metrics_families_are_well_formed(host):
    text = host.metrics()
    seen, current = set(), None
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if base != name and base in typed:
            name = base  # a histogram's samples belong to its family
        assert name in typed, f"{name} has no TYPE line"
        if name != current:
            assert name not in seen, f"samples of {name} are not contiguous"
            seen.add(name)
            current = name
    assert {"luahost_requests_total", "luahost_connections", "luahost_pool_queued",
            "luahost_pool_running", "luahost_generation_info"} <= seen


def test_check_refuses_what_start_would_refuse():
    env = {"PATH": "/usr/bin:/bin", "LUAHOST_CONFIG": FIXTURES + "/empty.conf",
           "LUAHOST_SCRIPTS": FIXTURES + "/runtime", "LUAHOST_JWT_SECRET": "short"}
    p = subprocess.run([BINARY, "--check"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=20)
    assert p.returncode != 0 and "LUAHOST_JWT_SECRET" in p.stderr
    env["LUAHOST_JWT_SECRET"] = "s" * 40
    p = subprocess.run([BINARY, "--check"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 0, p.stderr
    env["LUAHOST_MONGODB_URI"] = "http://not-mongo"
    p = subprocess.run([BINARY, "--check"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=20)
    assert p.returncode != 0


def test_ctrl_c_and_a_forwarded_sigterm_are_one_graceful_stop(start_host):
    import signal as sig
    h = start_host("runtime", env={"LUAHOST_DRAIN_DELAY_MS": "300"})
    h.proc.send_signal(sig.SIGINT)
    h.proc.send_signal(sig.SIGTERM)
    assert h.proc.wait(10) == 0
    logs = h.logs()
    assert "luahost stopped" in logs and "exiting now" not in logs


def test_one_stop_for_ctrl_c_and_a_forwarded_sigterm_while_requests_finish(start_host):
    """With no drain delay the listeners close at once and the workers finish their requests
    after the main loop is gone: a SIGTERM forwarded right after Ctrl-C is still the same stop
    (exit 0, the request answered), not the signal's default action."""
    import signal as sig
    h = start_host("runtime")
    result = {}
    t = threading.Thread(target=lambda: result.update(r=h.get("/sleep/1500")))
    t.start()
    wait_open_connections(h, 2)
    h.proc.send_signal(sig.SIGINT)
    wait_log(h, "received SIGINT")  # its one second starts here
    time.sleep(0.2)  # past the drain (0 ms): the signal handles are closed
    h.proc.send_signal(sig.SIGTERM)
    assert h.proc.wait(10) == 0
    t.join()
    assert result["r"].status == 200


@pytest.mark.parametrize("second", ["SIGTERM", "SIGQUIT"])
def test_a_second_stop_signal_later_exits_at_once_with_status_1(start_host, second):
    import signal as sig
    h = start_host("runtime", env={"LUAHOST_SHUTDOWN_GRACE_MS": "30000"})
    def slow():
        try:
            h.get("/sleep/20000", timeout=30)
        except (OSError, AssertionError):
            pass  # the host exited under it (no answer): the point of the test

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    wait_open_connections(h, 2)
    h.proc.send_signal(sig.SIGTERM)
    wait_log(h, "received SIGTERM")
    time.sleep(1.5)  # more than a second after the host saw the first
    t0 = time.time()
    h.proc.send_signal(getattr(sig, second))
    assert h.proc.wait(10) == 1
    assert time.time() - t0 < 5


def test_access_log_lines_are_json_with_a_timestamp(host):
    host.get("/hello", headers={"X-Request-Id": "access-1"})
    time.sleep(0.1)
    import json as _json
    lines = [_json.loads(l) for l in host.logs().splitlines() if '"access-1"' in l]
    assert lines, host.logs()
    line = lines[-1]
    assert line["msg"] == "access" and line["status"] == 200 and line["path"] == "/hello"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["ts"])


def test_drain_delay_reports_not_ready_while_still_serving(start_host):
    import signal as sig
    h = start_host("runtime", env={"LUAHOST_DRAIN_DELAY_MS": "1500"})
    wait_ready(h)
    h.proc.send_signal(sig.SIGTERM)
    time.sleep(0.3)
    r = h.get("/readyz")
    assert_envelope_error(r, 503, "draining")
    assert h.get("/hello").status == 200  # load balancers still get answers while they notice
    assert h.proc.wait(10) == 0


def test_access_log_stays_json_for_invalid_utf8_in_the_request(host):
    import json as _json
    # Raw bytes that are not UTF-8 in a header the host echoes nowhere: answered and logged. In the
    # path they are refused with 400 (a request-target is ASCII, RFC 9112 section 3.2; llhttp 9
    # enforces it), and that answer is logged as JSON too.
    req = (b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Request-Id: access-utf8\r\n"
           b"User-Agent: bad \xc0\xaf agent\r\nConnection: close\r\n\r\n")
    assert raw(host.port, req).startswith(b"HTTP/1.1 200"), req
    req = b"GET /hello/\xff\xfe\xc3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert raw(host.port, req).startswith(b"HTTP/1.1 400")
    with open(host.log_path, "rb") as f:
        lines = f.read().splitlines()
    for l in lines:  # every line of the log, strictly UTF-8 and JSON
        _json.loads(l.decode("utf-8"))
    access = [_json.loads(l.decode("utf-8")) for l in lines if b'"msg":"access"' in l]
    assert any(a["request_id"] == "access-utf8" and a["path"] == "/hello" for a in access), access
    assert any(a["status"] == 400 for a in access), access


def send_all_then_read(port, data, timeout=10):
    """Sends every byte (the server may answer and stop reading long before), then reads the
    answer until the server closes; a reset on either side counts as no answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            return b""
        return read_until_close(s, timeout)


@pytest.mark.parametrize("case", ["header_200k", "header_10m", "body_10m", "chunked_10m"])
def test_error_answers_with_unread_input_close_lingering_so_the_client_reads_them(host, case):
    # A 431 after 16 KB of a 200 KB header block, a 413 after the header block of a 10 MB body
    # (more than the loopback's socket buffers hold, so the client is still sending):
    # closing at once with the rest unread makes the kernel send a reset that can destroy the
    # answer. The host half-closes and drains instead, so the client reads the answer every time.
    if case.startswith("header"):
        n = 200_000 if case == "header_200k" else 10_000_000
        data = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * n + b"\r\n\r\n"
        want = (431, "headers_too_large")
    elif case == "body_10m":
        data = (b"PUT /anyjson HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: 10000000\r\n\r\n" + b"a" * 10_000_000)
        want = (413, "body_too_large")
    else:
        chunk = b"%x\r\n" % 100_000 + b"a" * 100_000 + b"\r\n"
        data = (b"PUT /anyjson HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunk * 100 + b"0\r\n\r\n")
        want = (413, "body_too_large")
    for attempt in range(5):
        reply = send_all_then_read(host.port, data)
        assert reply.startswith(b"HTTP/1.1 %d" % want[0]), (attempt, reply[:200])
        assert_envelope_error(parse_one(reply), *want)
    still_serving(host)


def test_lingering_is_bounded_by_bytes(host):
    # A client that keeps sending after an error answer is cut off after a bounded amount.
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 20_000 + b"\r\n\r\n")
        sent, cut = 0, False
        block = b"x" * 65536
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                sent += s.send(block)
            except OSError:
                cut = True
                break
        assert cut and sent < 64 * 1024 * 1024, sent
    still_serving(host)


def access_lines(h, status):
    import json as _json
    return [_json.loads(l) for l in h.logs().splitlines()
            if '"msg":"access"' in l and f'"status":{status},' in l]


def test_answers_before_a_request_is_complete_log_their_own_duration(host):
    # The request's clock starts at its first byte: a framing error on a fresh connection, or on a
    # connection whose previous request ended a while ago, logs a small duration (neither the time
    # since boot nor the time since the previous request).
    reply = raw(host.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 17000 + b"\r\n\r\n")
        assert read_until_close(s).startswith(b"HTTP/1.1 431")
    deadline = time.time() + 5
    while time.time() < deadline and (not access_lines(host, 400) or not access_lines(host, 431)):
        time.sleep(0.05)
    lines = access_lines(host, 400) + access_lines(host, 431)
    assert len(lines) == 2, host.logs()
    for line in lines:
        assert 0 <= line["duration_ms"] < 1000, line
