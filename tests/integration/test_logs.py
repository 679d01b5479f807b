"""Issue 10, logs and signals, over the real binary: one access line per request that is valid JSON
whatever bytes the client sent, with the route template, the user id once authenticated and a
bounded user agent; never a token, a password or a hash in any line; warnings and errors carry
file and line; access_log_path / error_log_path files reopened on SIGUSR1 after a rename (the
logrotate convention); SIGQUIT drains like SIGTERM and exits 0; --version and --help."""
import json
import os
import re
import signal
import subprocess
import threading
import time

from conftest import BINARY, FIXTURES, ROOT, parse_one, raw
from users_helpers import (ADMIN_NAME, ADMIN_PASSWORD, Client, admin_env, jwt_payload,
                           start_users_host)

VERSION_RE = re.compile(r"^luahost \d+\.\d+\.\d+\n$")


def strict_lines(data):
    """Every line of a log as a JSON object, decoded the strict way: the bytes must be UTF-8
    (no surrogates, no overlongs) and strings may hold no raw control characters."""
    out = []
    for line in data.split(b"\n"):
        if not line:
            continue
        text = line.decode("utf-8")  # strict: raises on any invalid byte
        obj = json.loads(text, strict=True)
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def host_log_bytes(h):
    h.log.flush()
    with open(h.log_path, "rb") as f:
        return f.read()


def wait_for(pred, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def access_line(read, request_id, timeout=20):
    """The access line of request_id, once it is written (read: returns the log's bytes)."""
    def find():
        for obj in strict_lines(read()):
            if obj.get("msg") == "access" and obj.get("request_id") == request_id:
                return obj
        return None
    return wait_for(find, f"the access line of {request_id}", timeout)


def raw_get(h, target, extra=b"", request_id=None):
    rid = request_id or f"rid-{time.time_ns()}"
    data = (b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Request-Id: " +
            rid.encode() + b"\r\n" + extra + b"\r\n")
    return parse_one(raw(h.port, data)), rid


# ---- access lines ----

def test_access_line_is_strict_json_whatever_bytes_the_client_sent(start_host):
    h = start_host("runtime")
    # The parser refuses raw non-ASCII in the request target, so a path brings quotes, backslashes
    # and percent-encoded bytes; header values may carry any byte from 0x80 (obs-text): a lone
    # continuation, a truncated sequence, an overlong '/', a surrogate half, beyond U+10FFFF.
    bad = b"\x80\xc3\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\"\\\xff\xfe"
    r, rid = raw_get(h, b'/echo/"%ff%c0%af\\/x', b"User-Agent: agent " + bad + b"\r\n")
    assert r.status == 200, r
    line = access_line(lambda: host_log_bytes(h), rid)
    assert line["route"] == "/echo/{a}/{b}"
    assert line["path"] == '/echo/"%ff%c0%af\\/x'
    assert line["user_agent"].startswith("agent \ufffd") and '"\\' in line["user_agent"]
    assert set(line["user_agent"][len("agent "):]) == {"\ufffd", '"', "\\"}
    # Every line the host wrote, not only this one, parses strictly.
    strict_lines(host_log_bytes(h))


def test_access_line_fields_and_bounded_user_agent(start_host):
    h = start_host("runtime")
    long_agent = "é" * 400  # 800 bytes: cut to at most 256, on a character boundary
    r, rid = raw_get(h, b"/echo/one/two?secret=query-value",
                     b"User-Agent: " + long_agent.encode() + b"\r\nX-Test-User: alice\r\n")
    assert r.status == 200
    line = access_line(lambda: host_log_bytes(h), rid)
    for key in ("ts", "request_id", "method", "route", "path", "status", "bytes", "duration_ms",
                "user_agent", "client"):
        assert key in line, (key, line)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["ts"]), line
    assert line["method"] == "GET" and line["status"] == 200
    assert line["route"] == "/echo/{a}/{b}" and line["path"] == "/echo/one/two"
    assert line["bytes"] == len(r.body) and line["duration_ms"] >= 0
    assert 0 < len(line["user_agent"].encode()) <= 256
    assert set(line["user_agent"]) == {"é"}  # cut between characters, never inside one
    assert "query-value" not in json.dumps(line)  # the query string is not logged
    assert "user_id" not in line  # no authentication ran on this route

    # A host-made answer (no route) has an empty route and no agent when none was sent.
    r, rid = raw_get(h, b"/no/such/route")
    assert r.status == 404
    line = access_line(lambda: host_log_bytes(h), rid)
    assert line["route"] == "" and line["status"] == 404 and "user_agent" not in line


def test_access_line_names_the_user_and_no_line_holds_a_secret(tmp_path):
    h = start_users_host(tmp_path, env=admin_env(), workers=1)
    try:
        c = Client(h)
        r = c.login(ADMIN_NAME, ADMIN_PASSWORD, headers={"X-Request-Id": "rid-login"})
        assert r.status == 200, r
        token = r.json()["access_token"]
        admin_id = jwt_payload(token)["sub"]
        r = c.get(f"/users/{admin_id}", token=token, headers={"X-Request-Id": "rid-me"})
        assert r.status == 200, r
        r = c.get(f"/users/{admin_id}", token=token + "x", headers={"X-Request-Id": "rid-bad"})
        assert r.status == 401, r

        read = lambda: host_log_bytes(h)  # noqa: E731
        login = access_line(read, "rid-login")
        assert login["route"] == "/login" and login["method"] == "POST"
        assert "user_id" not in login  # a login is anonymous
        me = access_line(read, "rid-me")
        assert me["route"] == "/users/{user_id}" and me["path"] == f"/users/{admin_id}"
        assert me["user_id"] == admin_id and me["status"] == 200
        bad = access_line(read, "rid-bad")
        assert bad["status"] == 401 and "user_id" not in bad

        data = read()
        strict_lines(data)
        signature = token.split(".")[2]
        for secret in (token, signature, ADMIN_PASSWORD, "$argon2", "$2b$", "password_hash"):
            assert secret.encode() not in data, f"the log holds {secret!r}"
    finally:
        h.stop()


# ---- file and line ----

def test_errors_carry_file_and_line(start_host, tmp_path):
    scripts = tmp_path / "scripts"
    (scripts / "routes").mkdir(parents=True)
    (scripts / "routes" / "warn.lua").write_text(
        'local log = require "luahost.log"\n'
        'local response = require "luahost.response"\n'
        'return { routes = {\n'
        '  { method = "GET", path = "/warn", handler = function()\n'
        '      log.warn("careful now")\n'  # line 5
        '      return response.ok("warned", {})\n'
        '    end },\n'
        '  { method = "GET", path = "/boom", handler = function() error("kaboom") end },\n'
        '  { method = "GET", path = "/say/{what}", handler = function(req)\n'
        '      log.error("said " .. req.params.what)\n'  # line 10
        '      return response.ok("said", {})\n'
        '    end },\n'
        '} }\n')
    h = start_host(str(scripts))
    assert h.get("/warn").status == 200
    assert h.get("/boom").status == 500

    def lines():
        return strict_lines(host_log_bytes(h))
    warn = wait_for(lambda: [o for o in lines() if o.get("msg") == "careful now"], "the warning")[0]
    assert warn["level"] == "warn" and warn["line"] == 5
    assert warn["file"].endswith("routes/warn.lua"), warn
    boom = wait_for(lambda: [o for o in lines() if "kaboom" in o.get("msg", "")], "the error")[0]
    assert boom["level"] == "error"
    assert boom["file"] == "host/vm.c" and isinstance(boom["line"], int) and boom["line"] > 0
    assert "warn.lua:8:" in boom["msg"]  # the script's own place, in the message
    # A script logging what the client sent (a parameter percent-decoded to invalid UTF-8 and a
    # newline): still one strict JSON line.
    assert h.get("/say/%ff%ed%a0%80%0a%22end").status == 200
    said = wait_for(lambda: [o for o in lines() if o.get("msg", "").startswith("said ")],
                    "the script's error line")[0]
    assert said["msg"] == 'said \ufffd\ufffd\ufffd\ufffd\n"end', said
    assert said["level"] == "error" and said["line"] == 10


# ---- log files and SIGUSR1 ----

def test_log_files_are_reopened_on_sigusr1_after_a_rename(start_host, tmp_path):
    access = tmp_path / "access.log"
    error = tmp_path / "error.log"
    h = start_host("runtime", env={"LUAHOST_ACCESS_LOG_PATH": str(access),
                                   "LUAHOST_ERROR_LOG_PATH": str(error)})
    r, rid1 = raw_get(h, b"/hello")
    assert r.status == 200
    access_line(access.read_bytes, rid1)
    assert b"listening on" in error.read_bytes()  # start-up lines go to the error log
    assert b'"access"' not in error.read_bytes()
    assert b'"access"' not in host_log_bytes(h)  # stderr holds neither

    # logrotate: move both files, then signal; the host writes to new files at the same paths.
    os.rename(access, tmp_path / "access.log.1")
    os.rename(error, tmp_path / "error.log.1")
    r, rid2 = raw_get(h, b"/hello")
    access_line((tmp_path / "access.log.1").read_bytes, rid2)  # still the open (moved) file
    h.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: error.exists() and b"log files reopened" in error.read_bytes(),
             "the reopened error log")
    r, rid3 = raw_get(h, b"/hello")
    line = access_line(access.read_bytes, rid3)
    assert line["route"] == "/hello"
    assert rid3.encode() not in (tmp_path / "access.log.1").read_bytes()
    assert rid1.encode() not in access.read_bytes()
    assert h.proc.poll() is None
    assert h.stop() == 0
    strict_lines(access.read_bytes())
    strict_lines(error.read_bytes())


def test_an_unwritable_log_path_stops_the_start_naming_it(tmp_path):
    path = tmp_path / "missing-dir" / "access.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUAHOST_")}
    env.update({"LUAHOST_ACCESS_LOG_PATH": str(path), "LUAHOST_JWT_SECRET": "t" * 48,
                "LUAHOST_CONFIG": os.path.join(FIXTURES, "empty.conf")})
    p = subprocess.run([BINARY], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and str(path) in p.stderr, p


# ---- SIGQUIT ----

def test_sigquit_drains_in_flight_requests_and_exits_0(start_host):
    h = start_host("runtime")
    result = {}

    def slow():
        result["r"] = h.get("/sleep/1500", timeout=30)

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: "sleep: 1500 ms begins" in h.logs(), "the slow request to start")
    h.proc.send_signal(signal.SIGQUIT)
    wait_for(lambda: "received SIGQUIT" in h.logs(), "the SIGQUIT line")
    # While draining, a new connection is refused or answered; the slow one completes.
    t.join(30)
    assert result["r"].status == 200, result
    assert h.proc.wait(20) == 0
    assert "luahost stopped" in h.logs()


# ---- command line ----

def run_cli(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})


def test_version_prints_to_stdout_and_exits_0():
    for flag in ("--version", "-v"):
        p = run_cli(flag)
        assert p.returncode == 0 and p.stderr == "", p
        assert VERSION_RE.match(p.stdout), p.stdout


def test_help_lists_the_subcommands_and_exits_0():
    for flag in ("--help", "-h"):
        p = run_cli(flag)
        assert p.returncode == 0 and p.stderr == "", p
        for word in ("check", "reload", "migrate", "--config", "--version", "SIGQUIT", "SIGUSR1"):
            assert word in p.stdout, (word, p.stdout)
    p = run_cli("--no-such-flag")
    assert p.returncode == 2 and p.stdout == "" and "usage:" in p.stderr
