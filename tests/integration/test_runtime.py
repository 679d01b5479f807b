"""Issue 3: the Lua runtime over real sockets: routing and parameters, query and body decoding,
strict JSON, responses, the job pools and the scheduler, the sandbox and the script budget, and
the loader's refusals."""
import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import (BINARY, FIXTURES, ROOT, parse_one, raw, read_until_close, timing_factor,
                      wait_log)


def env_for_check(scripts):
    # --check refuses what start-up would, so the configuration must be complete (a secret).
    return {"PATH": "/usr/bin:/bin", "LUAHOST_SCRIPTS": str(scripts),
            "LUAHOST_CONFIG": os.path.join(FIXTURES, "empty.conf"),
            "LUAHOST_JWT_SECRET": "c" * 40}


def check_scripts(scripts):
    p = subprocess.run([BINARY, "--check"], env=env_for_check(scripts), cwd=ROOT,
                       capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout + p.stderr


# ---- routing, parameters, decoding ----

def test_path_parameters_are_extracted_and_decoded(host):
    r = host.get("/echo/hello%20world/two")
    assert r.status == 200
    d = r.json()["response_data"]
    assert d["a"] == "hello world" and d["b"] == "two"
    assert d["twice"] == 4  # a helper module required from lib/
    # a literal segment beats a parameter
    assert host.get("/echo/fixed/x").json()["message"] == "fixed"
    assert host.get("/echo/fixed/x/").json()["message"] == "fixed"  # trailing slash
    assert host.get("/echo/a").status == 404
    assert host.get("/echo//b").status == 404


def test_query_schema_coerces_and_defaults(host):
    r = host.get("/query?limit=5&name=bob&flag=true")
    assert r.json()["response_data"] == {"limit": 5, "name": "bob", "flag": True}
    r = host.get("/query")
    assert r.json()["response_data"] == {"limit": 10}
    r = host.get("/query?name=a+b%21")
    assert r.json()["response_data"]["name"] == "a b!"


@pytest.mark.parametrize("qs,field,code", [
    ("limit=0", "limit", "too_small"),
    ("limit=abc", "limit", "type"),
    ("limit=1e3", "limit", "type"),
    ("extra=1", "extra", "unknown_field"),
    ("name=" + "x" * 11, "name", "too_long"),
    ("limit=1&limit=2", "", "invalid_query"),
    ("name=%zz", "", "invalid_query"),
    ("name=%00", "", "invalid_query"),
])
def test_query_errors_are_422_with_field_details(host, qs, field, code):
    r = host.get("/query?" + qs)
    assert r.status == 422, r
    body = r.json()
    assert body["response_status"] is False
    errs = body["response_data"]["errors"]
    assert any(e["field"] == field and e["code"] == code and e["in"] == "query" for e in errs), errs


def test_routes_without_query_schema_see_decoded_parameters(host):
    r = host.get("/rawquery?a=1&b=x%20y")
    d = r.json()["response_data"]
    assert d["query"] == {"a": "1", "b": "x y"}
    assert d["qs"] == "a=1&b=x%20y"


def test_config_gives_host_settings_and_the_app_section_read_only(start_host):
    h = start_host("runtime", env={"LUAHOST_USERS_COLLECTION": "people",
                                   "LUAHOST_LOGIN_WINDOW_S": "60"})
    r = h.get("/config")
    assert r.status == 200, r.body
    data = r.json()["response_data"]
    assert data["db"] == h.db_name
    assert data["dev"] is False
    assert data["has_secret"] is False  # secrets never reach scripts
    assert data["users_collection"] == "people"
    # text: the file gives the key no type, and the host gives app keys no meaning (the user
    # service's lib/settings.lua reads such text as its number)
    assert data["login_window_s"] == "60"
    assert data["writes"] == {"top": False, "app": False}
    # the old spelling still reads the app section, with a logged deprecation
    assert data["legacy_users_collection"] == "people"
    h.get("/config")
    assert h.logs().count("luahost.config.users_collection is deprecated") == 1


def test_json_body_validated(host):
    r = host.post("/json", {"name": "ann", "age": 30})
    assert r.status == 201
    assert r.json()["response_data"] == {"name": "ann", "age": 30}


@pytest.mark.parametrize("body,code", [
    ('{"name": "a", "name": "b"}', "invalid_json"),
    ('{"name": NaN}', "invalid_json"),
    ('{"name": Infinity}', "invalid_json"),
    ('{"name": "a\\u0000b"}', "invalid_json"),
    (b'{"name": "\xff"}', "invalid_json"),
    ("[" * 65 + "]" * 65, "invalid_json"),
    ('{"name": "a"} trailing', "invalid_json"),
    ('{"name": 0x10}', "invalid_json"),
    ('{"name": 5}', "type"),
    ('{"name": {"$gt": ""}}', "type"),
    ('{"name": ["a"]}', "type"),
    ('{"name": "a", "age": 1.5}', "type"),
    ('{"name": "a", "age": 151}', "too_large"),
    ('{"name": "a", "$where": 1}', "invalid_key"),
    ('{"name": "a", "other": 1}', "unknown_field"),
    ('{"age": 3}', "missing"),
    ('[1, 2]', "type"),
    ('{"name": null}', "type"),
])
def test_bad_json_bodies_are_422(host, body, code):
    r = host.request("POST", "/json", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 422, r
    errs = r.json()["response_data"]["errors"]
    assert any(e["code"] == code and e["in"] == "body" for e in errs), errs
    assert all("message" in e and "field" in e for e in errs)


def test_nesting_64_is_accepted_by_the_decoder(host):
    body = '{"a":' * 58 + "1" + "}" * 58
    r = host.request("POST", "/anyjson", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 200
    deep = "[" * 100000 + "]" * 100000
    r = host.request("POST", "/anyjson", body=deep[:60000], headers={"Content-Type": "application/json"})
    assert r.status == 422


def test_missing_body_is_422(host):
    r = host.request("POST", "/json", headers={"Content-Type": "application/json"})
    assert r.status == 422
    assert r.json()["response_data"]["errors"][0]["code"] == "missing_body"


def test_form_body(host):
    r = host.request("POST", "/form", body="username=al%20ice&password=p%26w&grant_type=password",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200
    assert r.json()["response_data"]["username"] == "al ice"
    r = host.request("POST", "/form", body="username=x",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 422
    assert r.json()["response_data"]["errors"][0] == {
        "field": "password", "in": "form", "code": "missing",
        "message": r.json()["response_data"]["errors"][0]["message"]}


def test_unsupported_content_type_is_415(host):
    r = host.request("POST", "/json", body="name=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415
    assert r.json()["response_data"]["code"] == "unsupported_media_type"
    r = host.request("POST", "/form", body='{"a":1}', headers={"Content-Type": "application/json"})
    assert r.status == 415
    r = host.request("POST", "/json", body="<x/>", headers={"Content-Type": "text/xml"})
    assert r.status == 415
    r = host.request("POST", "/json", body='{"name":"x"}', headers={"Content-Type": None})
    assert r.status == 415
    r = host.request("DELETE", "/thing/1", body='{"a":1}', headers={"Content-Type": "application/json"})
    assert r.status == 415
    r = host.request("PUT", "/both/7", body="a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.json()["response_data"] == {"id": "7", "kind": "form"}
    r = host.request("PUT", "/both/7", body='{"a":1}', headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.json()["response_data"] == {"id": "7", "kind": "json"}


# ---- responses ----

def test_empty_list_stays_an_array_and_null_data(host):
    assert host.get("/empty-list").json()["response_data"] == []
    r = host.request("DELETE", "/thing/1")
    assert r.status == 200 and r.json()["response_data"] is None


def test_request_object_carries_headers_client_and_id(host):
    r = host.get("/headers", headers={"X-Thing": "v1", "X-Request-Id": "rid-1"})
    d = r.json()["response_data"]
    assert d["headers"]["x-thing"] == "v1"
    assert d["client"] == "127.0.0.1"
    assert host.get("/hello", headers={"X-Request-Id": "rid-2"}).json()["response_data"]["id"] == "rid-2"


def test_handler_status_headers_and_text_body(host):
    r = host.get("/custom")
    assert r.status == 202 and r.headers["x-custom"] == "yes" and r.headers["cache-control"] == "no-store"
    r = host.get("/text")
    assert r.body == b"plain text" and r.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("path", ["/bad-header", "/bad-status", "/not-encodable", "/boom",
                                  "/global-write", "/undefined-global", "/yield"])
def test_script_mistakes_are_logged_500s(host, path):
    r = host.get(path)
    assert r.status == 500
    body = r.json()
    assert body == {"message": "Internal server error", "response_status": False,
                    "response_data": {"code": "internal_error"}}
    assert "stack traceback" not in r.body.decode()
    assert host.get("/hello").status == 200


def test_uncaught_error_is_logged_with_route_file_and_line(host):
    host.get("/boom", headers={"X-Request-Id": "boom-1"})
    time.sleep(0.1)
    logs = host.logs()
    line = [l for l in logs.splitlines() if "kaboom" in l][0]
    assert "GET /boom" in line and "routes/runtime.lua:" in line and "boom-1" in line


@pytest.mark.parametrize("code,status", [("overloaded", 503), ("unavailable", 503),
                                         ("timeout", 503), ("weird", 500)])
def test_handler_nil_err_maps_to_status(host, code, status):
    r = host.get("/fail/" + code)
    assert r.status == status
    if status == 503:
        assert r.headers["retry-after"]
    assert "weird" not in r.body.decode()


def test_auth_policy_order_401_403_422(host):
    r = host.get("/admin-area?n=x")
    assert r.status == 401 and r.headers["www-authenticate"] == "Bearer"
    r = host.get("/admin-area?n=x", headers={"X-Test-User": "bob"})
    assert r.status == 403
    r = host.get("/admin-area?n=x", headers={"X-Test-User": "ann", "X-Test-Role": "admin"})
    assert r.status == 422
    r = host.get("/admin-area?n=3", headers={"X-Test-User": "ann", "X-Test-Role": "admin"})
    assert r.status == 200 and r.json()["response_data"] == {"user": "ann", "n": 3}
    r = host.get("/me", headers={"X-Test-User": "db-down"})
    assert r.status == 503


def test_no_state_leaks_between_requests(host):
    a = host.get("/me", headers={"X-Test-User": "first"}).json()["response_data"]
    b = host.get("/me", headers={"X-Test-User": "second"}).json()["response_data"]
    assert a == {"user": "first"} and b == {"user": "second"}
    assert host.get("/me").status == 401


# ---- sandbox and budget ----

def test_sandbox_refusals(host):
    d = host.get("/sandbox").json()["response_data"]
    for name in ["os_execute", "io", "debug", "loadfile", "dofile", "string_dump", "require_os",
                 "require_ffi", "bytecode", "string_meta", "package"]:
        assert d[name] is False, name
    assert d["os_time"] is True


def test_runaway_handler_is_stopped_while_others_are_served(start_host):
    h = start_host("runtime", env={"LUAHOST_SCRIPT_BUDGET_MS": "300"}, workers=1)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        loop = ex.submit(h.get, "/loop")
        ploop = ex.submit(h.get, "/pcall-loop")
        time.sleep(0.05)
        for r in (loop.result(timeout=10), ploop.result(timeout=10)):
            assert r.status == 500
            assert r.json()["response_data"]["code"] == "script_budget_exceeded"
    # the single worker's state is still usable
    assert h.get("/hello").status == 200
    assert h.get("/counter").status == 200


def test_nested_coroutine_cannot_yield_the_request(host):
    d = host.get("/nested-coroutine-sleep").json()["response_data"]
    assert d["ok"] is False and "own coroutine" in d["err"]


# ---- scheduling and pools ----

def test_100_concurrent_sleeps_finish_together(start_host):
    h = start_host("runtime", workers=1)
    reqs = b"GET /sleep/200 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", h.port)) for _ in range(100)]
    t0 = time.time()
    for s in socks:
        s.sendall(reqs)
    statuses = []
    for s in socks:
        data = read_until_close(s)
        s.close()
        statuses.append(parse_one(data).status)
    elapsed = time.time() - t0
    assert statuses == [200] * 100
    # Together, not one after another (100 x 0.2 s = 20 s): a bound far from both, so a loaded
    # machine cannot fail it.
    assert elapsed < 4.0 * timing_factor(), elapsed


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


def wait_open_connections(h, n, timeout=15):
    """Waits until the open-connection gauge of /metrics reads n (the /metrics request included)."""
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        text = h.metrics()
        got = int(re.search(r"^luahost_connections (\d+)$", text, re.M).group(1))
        if got == n:
            return
        time.sleep(0.02)
    raise AssertionError(f"open connections never {n}: {got}")


def pool_state(h, pool="test"):
    """(running, queued) of a pool, from /metrics."""
    text = h.metrics()
    got = {}
    for family in ("luahost_pool_running", "luahost_pool_queued"):
        m = re.search(r'^%s\{pool="%s"\} (\d+)$' % (family, pool), text, re.M)
        got[family] = int(m.group(1)) if m else None
    return got["luahost_pool_running"], got["luahost_pool_queued"]


def wait_pool(h, running, queued, timeout=30):
    """Waits until the pool's gauges read (running, queued): tests wait for the state they assume
    instead of assuming how long things take."""
    deadline = time.time() + timeout
    state = None
    while time.time() < deadline:
        state = pool_state(h)
        if state == (running, queued):
            return
        time.sleep(0.01)
    raise AssertionError(f"pool never reached running={running} queued={queued}: {state}")


def test_pool_runs_n_jobs_in_parallel_queues_extra_and_overflows_with_503(start_host):
    # Every step waits for the pool state it assumes (its gauges in /metrics), never for a time:
    # the jobs block long enough that the states last while the test looks at them.
    h = start_host("runtime", env={"LUAHOST_TEST_POOL_THREADS": "4", "LUAHOST_TEST_POOL_QUEUE": "4"},
                   workers=1, test_host=True)
    health = []
    stop = [False]

    def probe():
        deadline = time.time() + 120  # bounded even if the test body fails early
        while not stop[0] and time.time() < deadline:
            t = time.time()
            assert h.get("/healthz").status == 200
            health.append((t, time.time()))
            time.sleep(0.005)

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        prober = ex.submit(probe)
        try:
            wait_pool(h, 0, 0)
            # 4 jobs on 4 threads all run at once.
            first = [ex.submit(h.get, "/block/1000") for _ in range(4)]
            wait_pool(h, 4, 0)
            busy_from = time.time()
            # 4 more wait in the queue while the threads are busy.
            second = [ex.submit(h.get, "/block/1000") for _ in range(4)]
            wait_pool(h, 4, 4)
            # The pool and its queue are full: 2 more are refused at once with 503 and Retry-After.
            refused = [h.get("/block/100") for _ in range(2)]
            first[0].result()
            busy_to = time.time()  # a job ran all along since busy_from
            rs = [f.result() for f in first + second]
            assert all(r.status == 200 for r in rs), rs
            assert all(r.status == 503 and r.headers["retry-after"] and
                       r.json()["response_data"]["code"] == "overloaded" for r in refused), refused
            wait_pool(h, 0, 0)
        finally:
            stop[0] = True
        prober.result()
    # The event loop kept answering while the pool threads were busy (from seeing 4 running until
    # a first job ended): health checks completed inside that window, none waiting for a job.
    during = [t1 - t0 for t0, t1 in health if busy_from <= t0 and t1 <= busy_to]
    assert during, (busy_from, busy_to, health[-5:])
    assert max(t1 - t0 for t0, t1 in health) < 1.0 * timing_factor(), max(t1 - t0 for t0, t1 in health)


# ---- loading scripts ----

def write_scripts(base, files):
    for rel, src in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(src)
    return base


@pytest.mark.parametrize("files,expect", [
    ({"routes/a.lua": 'return { routes = { { method = "GET", path = "/x", handler = function() end, colour = 1 } } }'},
     "unknown key 'colour'"),
    ({"routes/a.lua": 'return { routes = {\n { method = "GET", path = "/x", handler = function() end },\n'
                      ' { method = "GET", path = "/x/", handler = function() end } } }'},
     "routes/a.lua:3"),
    ({"routes/a.lua": 'return { routes = { { method = "GET", path = "/x/{a", handler = function() end } } }'},
     "/x/{a"),
    ({"routes/a.lua": 'return { routes = { { method = "GET", path = "/healthz", handler = function() end } } }'},
     "reserved"),
    ({"routes/a.lua": 'return { routes = { { method = "GET", path = "/admin/x", handler = function() end } } }'},
     "reserved"),
    ({"routes/a.lua": 'return { routes = { { method = "GET", path = "/x", policy = "nope", handler = function() end } } }'},
     "unknown policy 'nope'"),
    ({"routes/a.lua": 'return { routes = { { method = "FETCH", path = "/x", handler = function() end } } }'},
     "'method'"),
    ({"routes/a.lua": 'return { routes = { { method = "GET", path = "/x", handler = function() end,\n'
                      ' query = { fields = { n = { type = "integer", minn = 1 } } } } } }'},
     "minn"),
    ({"routes/a.lua": "return { routes = { \n\n  oops oops } }"}, "routes/a.lua:3"),
    ({"routes/a.lua": 'local x = require "lib.missing"\nreturn {}'}, "lib.missing"),
    ({"routes/a.lua": 'while true do end'}, "script_budget_exceeded"),
    ({"routes/a.lua": 'x = 1\nreturn {}'}, "assignment to global 'x'"),
    ({"app.lua": 'return { authenticate = function() end }',
      "policies/p.lua": 'return {\n  authenticate = function() end }'},
     "policies/p.lua:2: 'authenticate' is already defined at"),
])
def test_loader_rejects_bad_scripts_naming_file_and_line(tmp_path, files, expect):
    scripts = write_scripts(tmp_path / "scripts", files)
    code, out = check_scripts(scripts)
    assert code != 0
    assert expect in out, out


def test_start_refuses_bad_scripts(tmp_path):
    scripts = write_scripts(tmp_path / "s", {"routes/a.lua": "return { routes = 5 }"})
    env = env_for_check(scripts)
    p = subprocess.run([BINARY], env=dict(env, LUAHOST_DEV="1", LUAHOST_LISTEN="127.0.0.1:1"),
                       cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "routes/a.lua" in p.stderr and "'routes' must be a list" in p.stderr


def test_scripts_directory_may_live_anywhere(start_host, tmp_path):
    dest = tmp_path / "elsewhere" / "my scripts"
    shutil.copytree(os.path.join(FIXTURES, "runtime"), dest)
    (dest / "notes.txt").write_text("not a script")
    (dest / ".hidden.lua").write_text("this is not lua")
    h = start_host(str(dest))
    assert h.get("/echo/1/2").json()["response_data"]["twice"] == 4


def test_check_reports_the_generation_id_from_contents(tmp_path):
    a = write_scripts(tmp_path / "a", {"routes/x.lua": "return {}"})
    b = write_scripts(tmp_path / "b", {"routes/x.lua": "return {}"})
    c = write_scripts(tmp_path / "c", {"routes/x.lua": "return { }"})
    ids = []
    for d in (a, b, c):
        code, out = check_scripts(d)
        assert code == 0, out
        ids.append(out.split("generation ")[1].split(",")[0])
    assert ids[0] == ids[1] != ids[2]


# ---- attacks on the sandbox and on other requests ----

@pytest.mark.parametrize("path", ["/attack/patch-module", "/attack/patch-json",
                                  "/attack/patch-string", "/attack/rawset-global",
                                  "/attack/rawset-module", "/attack/rawset-string",
                                  "/attack/array-metatable", "/attack/unlock-module"])
def test_scripts_cannot_change_shared_modules_or_globals(host, path):
    assert host.get(path).status == 500
    # the host's own modules and the other scripts still behave
    r = host.get("/hello")
    assert r.status == 200 and r.json()["message"] == "hello"
    r = host.post("/anyjson", {"a": 1})
    assert r.json()["response_data"] == {"body": {"a": 1}}
    assert host.get("/query?limit=2").json()["response_data"] == {"limit": 2}
    assert host.get("/empty-list").json()["response_data"] == []


def test_a_request_cannot_resume_another_requests_coroutine(host):
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        first = ex.submit(host.get, "/attack/save")
        # Wait until the first request has saved its coroutine (before, there is nothing to steal
        # and resume(nil) fails for another reason) instead of sleeping for it.
        deadline = time.time() + 15
        while True:
            stolen = host.get("/attack/steal").json()["response_data"]
            if "bad argument" not in stolen["err"] or time.time() > deadline:
                break
            time.sleep(0.01)
        assert stolen["ok"] is False and "cannot resume" in stolen["err"], stolen
        assert first.result().status == 200


def test_pathological_pattern_fails_fast_instead_of_hanging(host):
    t0 = time.time()
    r = host.get("/attack/pattern")
    assert r.status == 500
    assert time.time() - t0 < 2
    time.sleep(0.05)
    assert "too expensive" in host.logs()
    d = host.get("/attack/pattern-ok").json()["response_data"]
    assert d == {"found": 20001, "trimmed": "x", "digits": "123"}


def test_204_has_no_body(host):
    data = raw(host.port, b"GET /nocontent HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204")
    assert b"Content-Length" not in head
    assert rest.startswith(b"HTTP/1.1 200")


def test_shutdown_wakes_sleepers_when_the_grace_period_ends(start_host):
    h = start_host("runtime", env={"LUAHOST_SHUTDOWN_GRACE_MS": "500"})
    import threading
    got = {}
    threading.Thread(target=lambda: got.update(
        r=raw(h.port, b"GET /sleep/30000 HTTP/1.1\r\nHost: t\r\n\r\n", timeout=10)),
        daemon=True).start()
    wait_log(h, "sleep: 30000 ms begins")  # the sleeper is asleep, not just connected
    t0 = time.time()
    assert h.stop() == 0
    assert time.time() - t0 < 5
    assert "waking sleepers" in h.logs()


@pytest.mark.parametrize("pattern,fill,n", [
    (".-.-.-b", "a", 20000), ("a-a-a-b", "a", 20000), ("%a-%a-%a-b", "a", 20000),
    ("[^x]*[^x]*[^x]*y", "a", 20000), ("(.-),(.-),(.-)x", ",", 5000),
    ("a*a*b", "a", 60000),
])
def test_pattern_guard_refuses_exploding_patterns(host, pattern, fill, n):
    t0 = time.time()
    r = host.post("/pattern", {"pattern": pattern, "fill": fill, "len": n})
    d = r.json()["response_data"]
    assert d["ok"] is False and "too expensive" in d["err"], d
    assert time.time() - t0 < 1


@pytest.mark.parametrize("pattern,fill,n,tail,found", [
    ("^%s*(%S+)%s+(%S+)%s*$", " ", 5000, "Bearer abc", True),
    ("%d+-%d+", "1", 30000, "-2", True),
    ("^(.-)%s*$", "a", 20000, "  ", True),
    ("[%^%$%(%)%%%.]", "a", 60000, ".", True),
    ("b", "a", 60000, "b", True),
    ("a+b", "a", 5000, "b", True),
])
def test_pattern_guard_lets_linear_patterns_through(host, pattern, fill, n, tail, found):
    t0 = time.time()
    d = host.post("/pattern", {"pattern": pattern, "fill": fill, "len": n, "tail": tail}).json()["response_data"]
    assert d["ok"] is True, d
    assert d["found"] is found
    assert time.time() - t0 < 2 * timing_factor()


def test_decoded_body_size_is_bounded(start_host):
    # The body's byte size does not bound what it decodes into: many small values cost far more
    # in Lua. Past max_body_values or max_body_decoded_bytes the request fails with 413
    # body_too_large, the message naming the bound.
    h = start_host("runtime", env={"LUAHOST_MAX_BODY_VALUES": "100",
                                   "LUAHOST_MAX_BODY_DECODED_BYTES": "20000"})
    ctype = {"Content-Type": "application/json"}
    ok = "{" + ",".join(f'"k{i}":{i}' for i in range(50)) + "}"
    assert h.request("POST", "/anyjson", body=ok, headers=ctype).status == 200
    many = "[" + ",".join(["0"] * 150) + "]"
    r = h.request("POST", "/anyjson", body=many, headers=ctype)
    assert r.status == 413, r
    assert r.json()["response_status"] is False, r.body
    assert r.json()["response_data"]["code"] == "body_too_large", r.body
    assert "more than 100 values" in r.json()["message"], r.body
    big = '{"a":"' + "x" * 30000 + '"}'
    r = h.request("POST", "/anyjson", body=big, headers=ctype)
    assert r.status == 413 and "more than 20000 bytes" in r.body.decode(), r
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = h.request("POST", "/form", body="&".join(f"f{i}=1" for i in range(150)), headers=form)
    assert r.status == 413 and "more than 100 values" in r.body.decode(), r
    # malformed input is still a 422
    r = h.request("POST", "/anyjson", body="[1,", headers=ctype)
    assert r.status == 422


# ---- the body is decoded after authentication and the policy ----

def test_body_is_not_decoded_for_anonymous_or_refused_clients(host):
    bad = "{" * 10 + '"name": '
    big = '{"name": "' + "x" * 60000 + '"'  # 60 KB, not closed
    for body in (bad, big):
        r = host.request("POST", "/guarded-body", body=body, headers={"Content-Type": "application/json"})
        assert r.status == 401, r.body  # not 422: the body was never decoded
        r = host.request("POST", "/guarded-body", body=body,
                         headers={"Content-Type": "application/json", "X-Test-User": "bob"})
        assert r.status == 403, r.body
    # a wrong media type is not looked at either
    r = host.request("POST", "/guarded-body", body="<x/>", headers={"Content-Type": "text/xml"})
    assert r.status == 401
    admin = {"X-Test-User": "ann", "X-Test-Role": "admin"}
    r = host.request("POST", "/guarded-body", body=bad, headers={"Content-Type": "application/json", **admin})
    assert r.status == 422
    assert r.json()["response_data"]["errors"][0]["code"] == "invalid_json"
    r = host.request("POST", "/guarded-body", body="<x/>", headers={"Content-Type": "text/xml", **admin})
    assert r.status == 415
    r = host.post("/guarded-body", {"name": "n"}, headers=admin)
    assert r.status == 200 and r.json()["response_data"] == {"body": {"name": "n"}}


def test_a_policy_that_reads_the_body_decodes_it(host):
    user = {"X-Test-User": "bob"}
    r = host.post("/body-policy", {"name": "n", "role": "admin"}, headers=user)
    assert r.status == 403 and r.json()["response_data"]["code"] == "forbidden"
    r = host.post("/body-policy", {"name": "n"}, headers=user)
    assert r.status == 200 and r.json()["response_data"] == {"body": {"name": "n"}}
    r = host.post("/body-policy", {"role": "admin"}, headers={**user, "X-Test-Role": "admin"})
    assert r.status == 200 and r.json()["response_data"] == {"body": {"role": "admin"}}
    # the policy sees no body when it is malformed; the request then gets its 422
    r = host.request("POST", "/body-policy", body="{", headers={"Content-Type": "application/json", **user})
    assert r.status == 422
    assert r.json()["response_data"]["errors"][0]["code"] == "invalid_json"
    r = host.request("POST", "/body-policy", body="{", headers={"Content-Type": "application/json"})
    assert r.status == 401
