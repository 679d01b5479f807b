"""Issue 9: live reload of the scripts and the reloadable configuration, over real sockets against
the real database, with the real user service (copies of scripts/) and a bootstrap admin.

Each test runs its own host on its own copy of the scripts; the copy is edited in place and
reloaded through the file watcher, SIGHUP, the admin listener's POST /admin/reload, the public
listener's POST /admin/reload (the scripts' admin_policy) or `luahost reload`. What is checked is
what a client and an operator see: answers, the reload status (GET /admin/reload), /readyz's
generation, /metrics and the process's exit code and memory."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import BINARY, FIXTURES, MONGODB_URI, ROOT, SANITIZED, Host, free_port, timing_factor
from users_helpers import ADMIN_NAME, ADMIN_PASSWORD, SCRIPTS, Client, mongo_db, wait_readyz

ADMIN_TOKEN = "reload-admin-token-" + "x" * 16
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GEN_RE = re.compile(r"^[0-9a-f]{16}$")
FETCHED = "User fetched successfully"

# ---------------------------------------------------------------------------------------------
# hosts and trees
# ---------------------------------------------------------------------------------------------


def copy_tree(dst):
    """A copy of the shipped scripts: only the product's Lua (app.lua, routes/, policies/, lib/)."""
    os.makedirs(dst)
    for sub in ("routes", "policies", "lib"):
        shutil.copytree(os.path.join(SCRIPTS, sub), os.path.join(dst, sub))
    shutil.copy(os.path.join(SCRIPTS, "app.lua"), os.path.join(dst, "app.lua"))
    return dst


def write(path, text):
    """Replaces a file's content at once (a rename), so no reader ever sees half of it."""
    tmp = f"{path}.{uuid.uuid4().hex[:6]}.tmp~"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read(path):
    with open(path) as f:
        return f.read()


def edit(path, old, new):
    text = read(path)
    assert old in text, (path, old)
    write(path, text.replace(old, new, 1))


def line_of(path, needle):
    for i, line in enumerate(read(path).splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def base_env(port, admin_port, scripts, db_name):
    """What conftest.Host gives a host, plus the bootstrap admin and the admin token."""
    return {
        "LUAHOST_LISTEN": f"127.0.0.1:{port}",
        "LUAHOST_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
        "LUAHOST_WORKERS": "2",
        "LUAHOST_SCRIPTS": scripts,
        "LUAHOST_MONGODB_URI": MONGODB_URI,
        "LUAHOST_DB": db_name,
        "LUAHOST_JWT_SECRET": "t" * 48,
        "LUAHOST_LOG_LEVEL": "info",
        "LUAHOST_DB_TIMEOUT_MS": "3000",
        "LUAHOST_ARGON2_T": "1",
        "LUAHOST_ARGON2_M_KIB": "8192",
        "LUAHOST_BCRYPT_COST": "4",
        "LUAHOST_CONFIG": os.path.join(FIXTURES, "empty.conf"),
        "LUAHOST_ADMIN_USERNAME": ADMIN_NAME,
        "LUAHOST_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LUAHOST_ADMIN_USERAGE": "40",
        "LUAHOST_ADMIN_TOKEN": ADMIN_TOKEN,
        # Generous: the tests log in many times from one address.
        "LUAHOST_LOGIN_MAX_PER_USER": "100000",
        "LUAHOST_LOGIN_MAX_PER_ADDR": "100000",
        "LUAHOST_LOGIN_MAX_PER_PAIR": "100000",
    }


def launch(tmp_path, scripts, env=None, drop=(), port=None, admin_port=None, ready=True):
    """Starts the real luahost on scripts (a conftest.Host, built here so that variables can be
    left out: drop names LUAHOST_* variables the configuration file must decide instead), and
    waits for /healthz, then (ready) for /readyz."""
    h = Host.__new__(Host)
    h.port = port or free_port()
    h.admin_port = admin_port or free_port()
    h.scripts = scripts
    h.db_name = "lh_test_" + uuid.uuid4().hex[:12]
    h.env = {k: v for k, v in os.environ.items() if not k.startswith("LUAHOST_")}
    h.env.update(base_env(h.port, h.admin_port, scripts, h.db_name))
    h.env.update(env or {})
    for k in drop:
        h.env.pop(k, None)
    h.log_path = os.path.join(str(tmp_path), f"luahost-{h.port}.log")
    h.log = open(h.log_path, "w+b")
    h.proc = subprocess.Popen([BINARY], cwd=ROOT, env=h.env, stdout=h.log,
                              stderr=subprocess.STDOUT)
    try:
        h.wait_ready(timeout=30 * timing_factor())
        if ready:
            wait_readyz(h, timeout=30 * timing_factor())
    except Exception:
        h.stop()
        raise
    return h


@pytest.fixture
def hosts(tmp_path):
    started = []

    def start(scripts=None, **kw):
        scripts = scripts or copy_tree(str(tmp_path / "scripts"))
        h = launch(tmp_path, scripts, **kw)
        started.append(h)
        return h

    yield start
    for h in started:
        code = h.stop(timeout=30 * timing_factor())
        assert code == 0, f"luahost exited with {code}:\n{h.logs()[-4000:]}"


# ---------------------------------------------------------------------------------------------
# the reload API
# ---------------------------------------------------------------------------------------------


def status(h):
    r = h.admin("GET", "/admin/reload", headers=AUTH)
    assert r.status == 200, r
    return r.json()["response_data"]


def reload(h, expect=200, timeout=60):
    """POST /admin/reload on the admin listener; returns the status it answers with."""
    r = h.admin("POST", "/admin/reload", headers=AUTH, timeout=timeout * timing_factor())
    assert r.status == expect, f"{r!r}\n{h.logs()[-3000:]}"
    doc = r.json()
    assert doc["response_status"] is (expect == 200), doc
    return doc["response_data"]


def readyz_generation(h):
    r = h.get("/readyz")
    assert r.status == 200, r
    return r.json()["response_data"]["generation"]


def metrics(h):
    r = h.admin("GET", "/metrics", headers=AUTH)
    assert r.status == 200, r
    return r.body.decode()


def reloads_metric(h, result):
    """luahost_reloads_total{result=...}: the family and the sample must both be there."""
    text = metrics(h)
    m = re.search(r'^luahost_reloads_total\{result="%s"\} (\d+)$' % result, text, re.M)
    assert m, f"no luahost_reloads_total{{result=\"{result}\"}} sample:\n{text}"
    return int(m.group(1))


def wait_for(pred, timeout, what, step=0.05):
    deadline = time.time() + timeout * timing_factor()
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class User:
    """A logged-in account of the service: its id and token."""

    def __init__(self, c, admin_token, role=None):
        u, self.token, self.password = c.new_user(admin_token, role=role)
        self.id = u["id"]
        self.username = u["username"]
        self.path = f"/users/{self.id}"
        self.auth = {"Authorization": f"Bearer {self.token}"}


def service(h):
    """(client, admin token, a plain user) on a running host."""
    c = Client(h)
    admin = c.token(ADMIN_NAME, ADMIN_PASSWORD)
    return c, admin, User(c, admin)


def fetched_message(h, user):
    r = h.get(user.path, headers=user.auth)
    assert r.status == 200, r
    return r.json()["message"]


# ---------------------------------------------------------------------------------------------
# load: clients that count every answer that is not 2xx and every connection error
# ---------------------------------------------------------------------------------------------


class Load:
    """Threads that send requests until stopped: keep-alive clients (http.client reconnects when
    the server closes a connection after Connection: close), new-connection clients and a
    /healthz poller. Every non-2xx answer and every connection error counts as failed; `seen`
    records when each message of GET /users/{id} was first answered."""

    def __init__(self, h, user, keepalive=3, fresh=2, health=1):
        self.h, self.user = h, user
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = []
        self.seen = {}
        self.latencies = []
        self.threads = [threading.Thread(target=self._keepalive, daemon=True) for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self._fresh, daemon=True) for _ in range(fresh)]
        self.threads += [threading.Thread(target=self._health, daemon=True) for _ in range(health)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(60)

    def _record(self, status, body, t0, what):
        dt = time.monotonic() - t0
        with self.lock:
            if 200 <= status < 300:
                self.ok += 1
                self.latencies.append(dt)
                if body is not None:
                    try:
                        msg = json.loads(body)["message"]
                    except (ValueError, KeyError, TypeError):
                        msg = None
                    if msg is not None and msg not in self.seen:
                        self.seen[msg] = time.time()
            else:
                self.failed.append((what, status, body[:300] if body else body))

    def _fail(self, what, exc):
        with self.lock:
            self.failed.append((what, "error", repr(exc)))

    def _keepalive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.h.port, timeout=30)
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            try:
                conn.request("GET", self.user.path, headers=self.user.auth)
                resp = conn.getresponse()
                body = resp.read()
                self._record(resp.status, body, t0, "keepalive")
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                self._fail("keepalive", e)
                conn.close()
        conn.close()

    def _fresh(self):
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            try:
                r = self.h.get(self.user.path, headers=self.user.auth, timeout=30)
                self._record(r.status, r.body, t0, "fresh")
            except (OSError, ValueError, AssertionError) as e:
                self._fail("fresh", e)

    def _health(self):
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            try:
                r = self.h.get("/healthz", timeout=30)
                self._record(r.status, None, t0, "healthz")
            except (OSError, ValueError, AssertionError) as e:
                self._fail("healthz", e)
            time.sleep(0.01)


# =============================================================================================
# 1. an edit goes live under load, without a failed request
# =============================================================================================


def test_an_edited_message_goes_live_under_load_without_a_failed_request(hosts):
    h = hosts()
    c, admin, user = service(h)
    routes = os.path.join(h.scripts, "routes", "users.lua")
    gen0 = status(h)["generation"]
    with Load(h, user) as load:
        wait_for(lambda: load.ok >= 50, 30, "the load to get going")
        assert FETCHED in load.seen, load.seen
        edit(routes, f'"{FETCHED}"', '"User fetched (reloaded)"')
        edited = time.time()
        wait_for(lambda: "User fetched (reloaded)" in load.seen, 10, "the new message under load")
        live_after = load.seen["User fetched (reloaded)"] - edited
        # More reloads while the load goes on: each swaps every worker's VM again.
        current = "User fetched (reloaded)"
        for i in range(5):
            edit(routes, f'"{current}"', f'"User fetched (reloaded {i})"')
            current = f"User fetched (reloaded {i})"
            assert reload(h)["history"][0]["result"] == "ok"
        n_before = load.ok
        wait_for(lambda: load.ok >= n_before + 50, 30, "more requests after the reloads")
    st = status(h)
    assert load.failed == [], load.failed[:20]
    assert load.ok >= 100, load.ok
    assert live_after <= 2.0 * timing_factor(), f"live {live_after:.2f} s after the edit"
    assert st["generation"] != gen0 and GEN_RE.match(st["generation"]), st
    assert readyz_generation(h) == st["generation"]
    assert fetched_message(h, user) == "User fetched (reloaded 4)"
    watch = [e for e in st["history"] if "watch" in e["trigger"]]
    assert watch and watch[-1]["result"] == "ok", st["history"]
    print(f"\nreload under load: live {live_after * 1000:.0f} ms after the edit; "
          f"{load.ok} requests, 0 failed")


# =============================================================================================
# 2. a new route file is answered; removed, its route is gone
# =============================================================================================

EXTRA_ROUTES = """-- routes/extra.lua: a route added while the host runs.
local response = require "luahost.response"
return {
  routes = {
    { method = "GET", path = "/extra/ping", policy = "public",
      handler = function() return response.ok("pong %s", { version = "%s" }) end },
  },
}
"""


def extra_routes(version):
    return EXTRA_ROUTES % (version, version)


def test_a_new_route_file_is_answered_and_gone_once_removed(hosts):
    h = hosts()
    extra = os.path.join(h.scripts, "routes", "extra.lua")
    assert h.get("/extra/ping").status == 404
    gen0 = status(h)["generation"]
    # The watcher sees the new file in routes/.
    write(extra, extra_routes("one"))
    r = wait_for(lambda: (lambda r: r if r.status == 200 else None)(h.get("/extra/ping")), 10,
                 "the new route")
    assert r.json() == {"message": "pong one", "response_status": True,
                        "response_data": {"version": "one"}}, r
    gen1 = status(h)["generation"]
    assert gen1 != gen0
    # And an explicit reload sees it removed.
    os.unlink(extra)
    st = reload(h)
    assert h.get("/extra/ping").status == 404
    assert st["generation"] not in (gen1,) and readyz_generation(h) == st["generation"]
    # The shipped routes were never affected.
    c = Client(h)
    assert c.token(ADMIN_NAME, ADMIN_PASSWORD)


def test_the_watcher_ignores_unchanged_content_and_reports_a_broken_file_once(hosts):
    h = hosts()
    routes = os.path.join(h.scripts, "routes", "users.lua")
    st0 = status(h)
    # The same content written again (and a file touched) changes nothing.
    write(routes, read(routes))
    os.utime(os.path.join(h.scripts, "app.lua"))
    # Neither is a file the scripts are made of: notes, an editor's hidden swap file.
    write(os.path.join(h.scripts, "routes", "NOTES.txt"), "not a script\n")
    write(os.path.join(h.scripts, "routes", ".users.lua.swp"), "swap\n")
    time.sleep(1.5 * timing_factor())
    st = status(h)
    assert st["reloads"] == st0["reloads"] and st["history"] == st0["history"], st
    # A broken file: one rejected reload, not one per event.
    edit(routes, "local function delete_user(req)", "local function delete_user(req) end end")
    st = wait_for(lambda: (lambda s: s if s["reloads"]["failed"] == 1 else None)(status(h)), 10,
                  "the watcher's rejected reload")
    assert st["history"][0]["trigger"] == "watch" and st["history"][0]["result"] == "failed", st
    os.utime(routes)
    write(routes, read(routes))
    time.sleep(1.5 * timing_factor())
    st2 = status(h)
    assert st2["reloads"] == {"ok": st0["reloads"]["ok"], "failed": 1}, st2
    assert st2["generation"] == st0["generation"]


def test_the_watcher_follows_a_replaced_directory_and_a_new_one(hosts, tmp_path):
    """A deploy that swaps a directory (rm -rf routes && mv routes.new routes) within the quiet
    period: inotify watched the removed directory, so later edits in the new one must still be
    seen. And a directory created under the tree is watched from then on."""
    h = hosts()
    c, admin, user = service(h)
    routes = os.path.join(h.scripts, "routes")
    staged = str(tmp_path / "routes.new")
    shutil.copytree(routes, staged)
    edit(os.path.join(staged, "users.lua"), f'"{FETCHED}"', '"User fetched (v2)"')
    shutil.rmtree(routes)
    os.rename(staged, routes)
    wait_for(lambda: fetched_message(h, user) == "User fetched (v2)", 10, "the swapped directory")
    edit(os.path.join(routes, "users.lua"), '"User fetched (v2)"', '"User fetched (v3)"')
    wait_for(lambda: fetched_message(h, user) == "User fetched (v3)", 10,
             "an edit inside the swapped directory")
    # A new directory, then a route file in it a while later: one more generation.
    os.makedirs(os.path.join(routes, "more"))
    time.sleep(1.0 * timing_factor())
    n = status(h)["reloads"]["ok"]
    write(os.path.join(routes, "more", "extra.lua"), extra_routes("deep"))
    wait_for(lambda: status(h)["reloads"]["ok"] > n, 10, "a file in a new directory")
    assert all(e["trigger"] == "watch" for e in status(h)["history"]), status(h)["history"]


def test_the_watcher_follows_a_swapped_root_and_one_that_was_gone_a_while(hosts, tmp_path):
    h = hosts()
    c, admin, user = service(h)
    root = h.scripts
    # The whole tree swapped at once (mv scripts scripts.old && mv scripts.new scripts).
    shutil.copytree(root, str(tmp_path / "new"))
    edit(str(tmp_path / "new" / "routes" / "users.lua"), f'"{FETCHED}"', '"User fetched (r2)"')
    os.rename(root, str(tmp_path / "old"))
    os.rename(str(tmp_path / "new"), root)
    wait_for(lambda: fetched_message(h, user) == "User fetched (r2)", 10, "the swapped tree")
    edit(os.path.join(root, "routes", "users.lua"), '"User fetched (r2)"', '"User fetched (r3)"')
    wait_for(lambda: fetched_message(h, user) == "User fetched (r3)", 10, "an edit in the new tree")
    # The tree gone for longer than the quiet period: the live generation serves meanwhile, and
    # the watcher picks the tree up again once it is back.
    os.rename(root, str(tmp_path / "away"))
    time.sleep(1.0 * timing_factor())
    assert fetched_message(h, user) == "User fetched (r3)"
    shutil.copytree(str(tmp_path / "away"), root)
    edit(os.path.join(root, "routes", "users.lua"), '"User fetched (r3)"', '"User fetched (r4)"')
    wait_for(lambda: fetched_message(h, user) == "User fetched (r4)", 10, "the tree back")
    edit(os.path.join(root, "routes", "users.lua"), '"User fetched (r4)"', '"User fetched (r5)"')
    wait_for(lambda: fetched_message(h, user) == "User fetched (r5)", 10, "an edit in the tree back")
    assert status(h)["reloads"]["failed"] == 0, status(h)
    assert "is gone" in h.logs() and "is back" in h.logs()


SLOW_ROUTE = """-- routes/slow.lua: a request that takes a while, to be in flight across a reload.
local core = require "luahost"
local response = require "luahost.response"
return { routes = { { method = "GET", path = "/extra/slow", policy = "public",
  handler = function() core.sleep(%d) return response.ok("slow", { version = "%s" }) end } } }
"""


def get_async(h, path, results):
    def go():
        try:
            results.append(h.get(path, timeout=60))
        except (OSError, ValueError, AssertionError) as e:
            results.append(e)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_requests_in_flight_finish_on_the_generation_they_started_on(hosts):
    h = hosts(env={"LUAHOST_WATCH": "0"})
    slow = os.path.join(h.scripts, "routes", "slow.lua")
    write(slow, SLOW_ROUTE % (1500, "one"))
    reload(h)
    results = []
    threads = [get_async(h, "/extra/slow", results) for _ in range(4)]  # on both workers
    time.sleep(0.4)
    write(slow, SLOW_ROUTE % (0, "two"))
    t0 = time.time()
    st = reload(h)
    took = time.time() - t0
    # The reload did not wait for them; new requests get the new code at once.
    assert h.get("/extra/slow").json()["response_data"]["version"] == "two"
    for t in threads:
        t.join(30)
    assert [r.status for r in results] == [200] * 4, results
    assert {r.json()["response_data"]["version"] for r in results} == {"one"}, results
    assert took < 1.0 * timing_factor(), took
    assert readyz_generation(h) == st["generation"]


def test_sigterm_with_a_request_in_flight_on_a_retired_generation(hosts):
    h = hosts(env={"LUAHOST_WATCH": "0"})
    slow = os.path.join(h.scripts, "routes", "slow.lua")
    write(slow, SLOW_ROUTE % (1500, "one"))
    reload(h)
    results = []
    threads = [get_async(h, "/extra/slow", results) for _ in range(2)]
    time.sleep(0.4)
    write(slow, SLOW_ROUTE % (0, "two"))
    reload(h)
    h.proc.send_signal(signal.SIGTERM)
    assert h.proc.wait(30 * timing_factor()) == 0, h.logs()[-3000:]
    for t in threads:
        t.join(30)
    # The grace period let them finish, on the generation they started on.
    assert [getattr(r, "status", r) for r in results] == [200, 200], results
    assert {r.json()["response_data"]["version"] for r in results} == {"one"}


def test_a_burst_of_edits_is_one_reload(hosts):
    h = hosts()
    c, admin, user = service(h)
    routes = os.path.join(h.scripts, "routes", "users.lua")
    n = status(h)["reloads"]["ok"]
    current = FETCHED
    for i in range(10):  # 30 ms apart: well inside the 300 ms quiet period
        edit(routes, f'"{current}"', f'"User fetched ({i})"')
        current = f"User fetched ({i})"
        time.sleep(0.03)
    wait_for(lambda: fetched_message(h, user) == "User fetched (9)", 10, "the last edit")
    time.sleep(1.0 * timing_factor())
    done = status(h)["reloads"]["ok"] - n
    # One reload for the burst (two if this loaded machine paused longer than the quiet period).
    assert 1 <= done <= 2, status(h)["history"]


def test_concurrent_reload_requests_each_get_a_reload(hosts):
    h = hosts(env={"LUAHOST_WATCH": "0"})
    c, admin, user = service(h)
    # The first reload is slow (its new tree's on_start hook sleeps 1 s): the callers that arrive
    # meanwhile wait together and are served by one reload after it, not by one reload each.
    edit(os.path.join(h.scripts, "app.lua"), "on_start = setup.start,",
         'on_start = function() require("luahost").sleep(1000) return setup.start() end,')
    n = status(h)["reloads"]["ok"]
    results = []

    def one(public):
        try:
            if public:
                results.append(h.post("/admin/reload", headers={"Authorization": f"Bearer {admin}"},
                                      timeout=60 * timing_factor()))
            else:
                results.append(h.admin("POST", "/admin/reload", headers=AUTH,
                                       timeout=60 * timing_factor()))
        except (OSError, ValueError, AssertionError) as e:
            results.append(e)

    # Eight callers: one per thread of the host's admin pool, so none queues behind another.
    threads = [threading.Thread(target=one, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [getattr(r, "status", r) for r in results] == [200] * 8, results
    st = status(h)
    # Every caller saw a reload that started after its call, and the eight were coalesced: the
    # slow one, one for all that waited during it (a third if one arrived after that one began).
    assert 1 <= st["reloads"]["ok"] - n <= 3 and st["reloads"]["failed"] == 0, st
    assert fetched_message(h, user) == FETCHED


# =============================================================================================
# 3. a broken tree is rejected; the old generation keeps serving; fixed, it goes live
# =============================================================================================


def break_syntax(tree):
    f = os.path.join(tree, "routes", "users.lua")
    edit(f, "local function delete_user(req)", "local function delete_user(req) end end")
    return f"routes/users.lua:{line_of(f, 'delete_user(req) end end')}: '<eof>' expected"


def break_policy_test(tree):
    t = os.path.join(tree, "policies", "rbac_tests.lua")
    edit(t, 'name = "user may not list users", policy = "admin", user = USER,\n'
            '    request = { method = "GET", path = "/users/" }, expect = "deny" }',
         'name = "user may not list users", policy = "admin", user = USER,\n'
         '    request = { method = "GET", path = "/users/" }, expect = "allow" }')
    return (f"rbac_tests.lua:{line_of(t, 'user may not list users')}: policy test 'user may not "
            "list users' (admin, GET /users/): expected allow, got deny")


def break_policy_test_in_a_new_file(tree):
    write(os.path.join(tree, "policies", "extra_tests.lua"), """-- a test a reload must run
return { tests = {
  { name = "anonymous may list users", policy = "admin", user = nil,
    request = { method = "GET", path = "/users/" }, expect = "allow" },
} }
""")
    return "policy test 'anonymous may list users' (admin, GET /users/): expected allow, got deny"


def break_duplicate_route(tree):
    f = os.path.join(tree, "routes", "users.lua")
    edit(f, '{ method = "DELETE", path = "/users/{user_id}"', '{ method = "GET", path = "/users/{id}"')
    return re.compile(r"routes/users\.lua:\d+: route GET /users/\{id\}: ")


def break_unknown_policy(tree):
    f = os.path.join(tree, "routes", "users.lua")
    edit(f, 'policy = "admin_or_self", handler = get_user', 'policy = "admin_or_slef", handler = get_user')
    return re.compile(r"routes/users\.lua:\d+: unknown policy 'admin_or_slef'")


def break_schema(tree):
    f = os.path.join(tree, "routes", "users.lua")
    edit(f, 'policy = "admin", query = schemas.list_query,',
         'policy = "admin", query = { fields = { limit = { type = "integr" } } },')
    return re.compile(r"routes/users\.lua:\d+: route #2: 'query' schema: field 'limit': 'type' "
                      r"must be one of")


def break_at_load(tree):
    f = os.path.join(tree, "routes", "users.lua")
    edit(f, "local tostring = tostring", 'local tostring = tostring\nerror("refusing to load")')
    return f"routes/users.lua:{line_of(f, 'refusing to load')}: refusing to load"


def break_on_start(tree):
    edit(os.path.join(tree, "app.lua"), "on_start = setup.start,",
         'on_start = function() return nil, "the start hook says no" end,')
    return re.compile(r"^on_start hook failed: \S*app\.lua: the start hook says no$")


BREAKS = [break_syntax, break_policy_test, break_policy_test_in_a_new_file, break_duplicate_route,
          break_unknown_policy, break_schema, break_at_load, break_on_start]


def names(error, expected):
    return expected.search(error) if isinstance(expected, re.Pattern) else expected in error


def test_a_broken_tree_is_rejected_and_the_live_generation_keeps_serving(hosts):
    # One host for every kind of break: each is made, rejected, then undone.
    h = hosts(env={"LUAHOST_WATCH": "0"})
    c, admin, user = service(h)
    tree = h.scripts
    pristine = {}
    for d, _, files in os.walk(tree):
        for f in files:
            pristine[os.path.join(d, f)] = read(os.path.join(d, f))
    for n, brk in enumerate(BREAKS):
        st0 = status(h)
        gen = st0["generation"]
        failed_metric = reloads_metric(h, "failed")
        expected = brk(tree)
        st = reload(h, expect=422)
        err = st["last_error"]
        assert err and names(err, expected), f"{brk.__name__}: {err!r}"
        assert "stack traceback" not in err, err
        # Nothing changed for clients: the same generation, still serving.
        assert st["generation"] == gen, st
        assert st["history"][0]["result"] == "failed" and st["history"][0]["error"] == err, st
        assert st["history"][0]["trigger"] == "api"
        assert st["reloads"] == {"ok": st0["reloads"]["ok"], "failed": st0["reloads"]["failed"] + 1}
        assert status(h)["generation"] == gen and readyz_generation(h) == gen
        assert fetched_message(h, user).startswith("User fetched"), brk.__name__
        assert h.get("/users/", headers={"Authorization": f"Bearer {admin}"}).status == 200
        assert h.get(user.path).status == 401
        assert reloads_metric(h, "failed") == failed_metric + 1, metrics(h)
        # The public listener's reload (the scripts' admin_policy) answers the same rejection.
        r = h.post("/admin/reload", headers={"Authorization": f"Bearer {admin}"})
        assert r.status == 422 and r.json()["response_status"] is False, r
        assert r.json()["response_data"]["last_error"] == err, r
        # Fixed (and changed, so the fix is a generation of its own): it goes live.
        for d, _, files in os.walk(tree):
            for f in files:
                p = os.path.join(d, f)
                if p not in pristine:
                    os.unlink(p)
        for p, text in pristine.items():
            if read(p) != text:
                write(p, text)
        edit(os.path.join(tree, "routes", "users.lua"), f'"{FETCHED}"', f'"User fetched (fix {n})"')
        st = reload(h)
        assert st["last_error"] is None and st["history"][0]["result"] == "ok", st
        assert st["generation"] not in (gen,) and readyz_generation(h) == st["generation"]
        assert fetched_message(h, user) == f"User fetched (fix {n})"
        write(os.path.join(tree, "routes", "users.lua"), pristine[os.path.join(tree, "routes", "users.lua")])
    st = status(h)
    assert st["reloads"]["failed"] == 2 * len(BREAKS), st  # each: admin listener + public
    assert reloads_metric(h, "failed") == 2 * len(BREAKS)
    assert reloads_metric(h, "ok") == st["reloads"]["ok"]
    assert "traceback" not in h.logs()


# =============================================================================================
# 4. SIGHUP, and who may reload over HTTP
# =============================================================================================


def test_sighup_reloads(hosts):
    h = hosts(env={"LUAHOST_WATCH": "0"})
    c, admin, user = service(h)
    edit(os.path.join(h.scripts, "routes", "users.lua"), f'"{FETCHED}"', '"User fetched (hup)"')
    st0 = status(h)
    h.proc.send_signal(signal.SIGHUP)
    st = wait_for(lambda: (lambda s: s if s["reloads"]["ok"] > st0["reloads"]["ok"] else None)(status(h)),
                  10, "the SIGHUP reload")
    assert st["history"][0]["trigger"] == "signal" and st["history"][0]["result"] == "ok", st
    assert st["generation"] != st0["generation"]
    assert fetched_message(h, user) == "User fetched (hup)"
    assert "received SIGHUP" in h.logs()
    # A storm of them: coalesced into a few reloads, every one ok, the host serving throughout.
    n = st["reloads"]["ok"]
    for _ in range(30):
        h.proc.send_signal(signal.SIGHUP)
        assert h.get("/healthz").status == 200
    wait_for(lambda: status(h)["reloads"]["ok"] > n, 10, "the storm's reloads")
    time.sleep(0.5 * timing_factor())
    st = status(h)
    assert n < st["reloads"]["ok"] <= n + 30 and st["reloads"]["failed"] == 0, st
    assert h.proc.poll() is None and fetched_message(h, user) == "User fetched (hup)"


def test_who_may_reload_over_http(hosts):
    h = hosts(env={"LUAHOST_WATCH": "0"})
    c, admin, user = service(h)
    # The admin listener: the admin token, else 401 (also for the status and /metrics).
    for method in ("GET", "POST"):
        r = h.admin(method, "/admin/reload")
        assert r.status == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"), r
        assert r.json()["response_data"]["code"] == "unauthorized"
        r = h.admin(method, "/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"})
        assert r.status == 401, r
    assert h.admin("GET", "/metrics").status == 401
    for path in ("/healthz", "/readyz", "/metrics", "/admin/reload"):
        assert h.admin("GET", path, headers=AUTH).status == 200, path
    r = h.admin("HEAD", "/admin/reload", headers=AUTH)
    assert r.status == 200 and r.body == b"", r
    assert h.admin("GET", "/admin/other", headers=AUTH).status == 404
    st = reload(h)
    assert st["history"][0]["trigger"] == "api" and st["reloads"]["ok"] == 1, st
    # The public listener, behind the scripts' admin policy: admin 200, user 403, anonymous 401.
    r = h.post("/admin/reload", headers={"Authorization": f"Bearer {admin}"})
    assert r.status == 200, r
    d = r.json()
    assert d["response_status"] is True and d["message"].startswith("Reloaded: generation "), d
    assert d["response_data"]["reloads"]["ok"] == 2 and d["response_data"]["last_error"] is None
    r = h.get("/admin/reload", headers={"Authorization": f"Bearer {admin}"})
    assert r.status == 200 and r.json()["response_data"]["reloads"]["ok"] == 2, r
    for method in ("GET", "POST"):
        r = c.call(method, "/admin/reload", token=user.token)
        assert r.status == 403 and r.json()["response_data"]["code"] == "forbidden", r
        r = c.call(method, "/admin/reload")
        assert r.status == 401, r
        r = c.call(method, "/admin/reload", token="not-a-token")
        assert r.status == 401, r
    # The admin token is not a public credential, and a user's JWT opens nothing on the admin side.
    assert h.post("/admin/reload", headers=AUTH).status == 401
    assert h.admin("POST", "/admin/reload", headers={"Authorization": f"Bearer {admin}"}).status == 401
    # Nothing above but the two allowed POSTs reloaded.
    assert status(h)["reloads"] == {"ok": 2, "failed": 0}
    # Other methods on the admin listener's reload path.
    r = h.admin("DELETE", "/admin/reload", headers=AUTH)
    assert r.status == 405 and "POST" in r.headers.get("allow", ""), r


def test_without_an_admin_token_the_admin_listener_is_open(hosts):
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_ADMIN_TOKEN": ""})
    r = h.admin("POST", "/admin/reload")
    assert r.status == 200 and r.json()["response_data"]["reloads"]["ok"] == 1, r
    assert h.admin("GET", "/metrics").status == 200
    # The public /metrics stays off unless public_metrics.
    assert h.get("/metrics").status == 404


# =============================================================================================
# 5. luahost reload
# =============================================================================================


def cli_reload(env, timeout=120):
    p = subprocess.run([BINARY, "reload"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout * timing_factor())
    return p.returncode, p.stdout, p.stderr


def cli_env(h, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUAHOST_")}
    env.update({"LUAHOST_ADMIN_LISTEN": f"127.0.0.1:{h.admin_port}",
                "LUAHOST_ADMIN_TOKEN": ADMIN_TOKEN, "LUAHOST_CONFIG": h.env["LUAHOST_CONFIG"]})
    env.update(extra)
    return env


def test_luahost_reload(hosts):
    h = hosts(env={"LUAHOST_WATCH": "0"})
    c, admin, user = service(h)
    edit(os.path.join(h.scripts, "routes", "users.lua"), f'"{FETCHED}"', '"User fetched (cli)"')
    rc, out, err = cli_reload(cli_env(h))
    assert rc == 0, (out, err)
    doc = json.loads(out)
    assert doc["response_status"] is True and doc["response_data"]["history"][0]["result"] == "ok", doc
    assert doc["response_data"]["generation"] == readyz_generation(h)
    assert fetched_message(h, user) == "User fetched (cli)"
    # A broken tree: exit 1, the status (with the error) on stdout, the old generation serving.
    gen = doc["response_data"]["generation"]
    expected = break_syntax(h.scripts)
    rc, out, err = cli_reload(cli_env(h))
    assert rc == 1, (out, err)
    doc = json.loads(out)
    assert doc["response_status"] is False and expected in doc["response_data"]["last_error"], doc
    assert doc["response_data"]["generation"] == gen == readyz_generation(h)
    # The wrong token: exit 1 and a hint.
    rc, out, err = cli_reload(cli_env(h, LUAHOST_ADMIN_TOKEN="wrong"))
    assert rc == 1 and "admin_token" in err, (out, err)
    # No host on that address: exit 1, quickly, saying so.
    t0 = time.time()
    rc, out, err = cli_reload(cli_env(h, LUAHOST_ADMIN_LISTEN=f"127.0.0.1:{free_port()}"))
    assert rc == 1 and out == "" and "cannot reach the admin listener" in err, (out, err)
    assert time.time() - t0 < 10
    # The admin listener turned off: exit 1, pointing at SIGHUP.
    rc, out, err = cli_reload(cli_env(h, LUAHOST_ADMIN_LISTEN="off"))
    assert rc == 1 and "SIGHUP" in err, (out, err)
    assert status(h)["reloads"] == {"ok": 1, "failed": 1}


# =============================================================================================
# 6. configuration: reloadable options apply, restart-required ones are named and kept
# =============================================================================================


def conf_text(port, workers=2, max_body=65536, log_level="info", scheme="argon2id"):
    return (f'return {{ listen = "127.0.0.1:{port}", workers = {workers}, '
            f'max_body_bytes = {max_body}, log_level = "{log_level}", '
            f'password_scheme = "{scheme}" }}\n')


def test_reloadable_options_apply_and_restart_required_ones_are_kept(hosts, tmp_path):
    port = free_port()
    conf = str(tmp_path / "luahost.conf")
    write(conf, conf_text(port))
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_CONFIG": conf}, port=port,
              drop=("LUAHOST_LISTEN", "LUAHOST_WORKERS", "LUAHOST_LOG_LEVEL"))
    c, admin, user = service(h)
    big = {"username": "x" * 20, "password": "p" * 3000, "userage": 30}
    # Unchanged configuration: nothing to restart for.
    st = reload(h)
    assert st["restart_required"] == [], st
    assert c.post("/users/create", big, token=admin).status == 422  # too long a password: not 413
    lives = wait_for(lambda: h.logs().count("is live"), 10, "the reload's info line")
    # Reloadable: a smaller body limit and a quieter log. Restart-required: listen, workers and
    # the hashing scheme, named in the status and kept.
    other = free_port()
    write(conf, conf_text(other, workers=3, max_body=1024, log_level="warn", scheme="bcrypt"))
    st = reload(h)
    assert sorted(st["restart_required"]) == ["listen", "password_scheme", "workers"], st
    assert st["last_error"] is None and st["history"][0]["result"] == "ok"
    r = c.post("/users/create", big, token=admin)
    assert r.status == 413, r
    small = c.post("/users/create", {"username": "u" + uuid.uuid4().hex[:10], "password": "pw-123456",
                                     "userage": 3}, token=admin)
    assert small.status == 201, small
    # Still on its address; the new one is not listened on; the hash scheme is still argon2id.
    assert h.get("/healthz").status == 200
    with pytest.raises(OSError):
        h.request("GET", "/healthz", port=other, timeout=2)
    assert c.token(small.json()["response_data"]["username"], "pw-123456")
    doc = mongo_db(h.db_name).users.find_one({"username": small.json()["response_data"]["username"]})
    assert doc["password_hash"].startswith("$argon2id$"), doc["password_hash"][:12]
    # The log level: the next reload's "is live" line (info) is not written any more.
    reload(h)
    # Back to the start: the restart list empties, the limit is back, info lines again.
    write(conf, conf_text(port))
    st = reload(h)
    assert st["restart_required"] == [], st
    assert c.post("/users/create", big, token=admin).status == 422
    wait_for(lambda: h.logs().count("is live") > lives, 10, "the info line of the last reload")
    time.sleep(0.5)
    assert h.logs().count("is live") == lives + 1, h.logs()[-3000:]


def test_the_admin_token_public_metrics_and_cors_origins_reload(hosts, tmp_path):
    conf = str(tmp_path / "luahost.conf")
    token_file = str(tmp_path / "admin_token")
    write(conf, "return { }\n")
    write(token_file, ADMIN_TOKEN + "\n")
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_CONFIG": conf,
                   "LUAHOST_ADMIN_TOKEN_FILE": token_file}, drop=("LUAHOST_ADMIN_TOKEN",))
    origin = "https://app.example"
    pre = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    assert h.get("/metrics").status == 404
    assert h.request("OPTIONS", "/login", headers=pre).headers.get("access-control-allow-origin") is None
    write(conf, f'return {{ public_metrics = true, cors_origins = {{ "{origin}" }} }}\n')
    write(token_file, "rotated-admin-token-" + "z" * 16)
    reload(h)  # with the old token: it is checked before the reload
    assert h.admin("GET", "/admin/reload", headers=AUTH).status == 401
    r = h.admin("GET", "/admin/reload", headers={"Authorization": "Bearer rotated-admin-token-" + "z" * 16})
    assert r.status == 200 and r.json()["response_data"]["restart_required"] == [], r
    assert h.get("/metrics").status == 200
    r = h.request("OPTIONS", "/login", headers=pre)
    assert r.status == 204 and r.headers.get("access-control-allow-origin") == origin, r


def test_reloaded_shutdown_timings_apply_at_shutdown(hosts, tmp_path):
    """drain_delay_ms and shutdown_grace_ms are reloadable: the shutdown uses the live values,
    not the ones the host started with."""
    conf = str(tmp_path / "luahost.conf")
    write(conf, "return { drain_delay_ms = 0, shutdown_grace_ms = 10000 }\n")
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_CONFIG": conf})
    write(os.path.join(h.scripts, "routes", "slow.lua"), SLOW_ROUTE % (20000, "slow"))
    write(conf, "return { drain_delay_ms = 1500, shutdown_grace_ms = 500 }\n")
    st = reload(h)
    assert st["restart_required"] == [], st
    results = []
    thread = get_async(h, "/extra/slow", results)
    time.sleep(0.3)
    t0 = time.time()
    h.proc.send_signal(signal.SIGTERM)
    # Draining: /readyz says 503 while the listener still answers.
    r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(h.get("/readyz", timeout=5)), 1,
                 "/readyz 503 while draining")
    assert r.json()["response_data"]["code"] == "draining", r
    code = h.proc.wait(30 * timing_factor())
    took = time.time() - t0
    thread.join(30)
    assert code == 0, h.logs()[-3000:]
    assert "draining for 1500 ms" in h.logs()
    # 1.5 s of drain, then 0.5 s of grace cut the 20 s request short (not 10 s of grace).
    assert 1.5 <= took < 8 * timing_factor(), took
    assert results and getattr(results[0], "status", 0) != 200, results


def test_a_bad_configuration_is_rejected_and_the_live_one_kept(hosts, tmp_path):
    port = free_port()
    conf = str(tmp_path / "luahost.conf")
    write(conf, conf_text(port, max_body=4096))
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_CONFIG": conf}, port=port,
              drop=("LUAHOST_LISTEN", "LUAHOST_WORKERS", "LUAHOST_LOG_LEVEL"))
    gen = status(h)["generation"]
    write(conf, conf_text(port, max_body=-5))
    st = reload(h, expect=422)
    assert "max_body_bytes" in st["last_error"] and st["last_error"].startswith("configuration"), st
    assert st["generation"] == gen
    assert h.post("/login", body="x" * 5000,
                  headers={"Content-Type": "application/x-www-form-urlencoded"}).status == 413
    write(conf, 'return { log_level = "loud" }\n')
    st = reload(h, expect=422)
    assert "log_level" in st["last_error"] and "loud" in st["last_error"], st
    write(conf, "return { syntax error\n")
    st = reload(h, expect=422)
    assert st["last_error"].startswith("configuration: ") and "luahost.conf" in st["last_error"], st
    write(conf, conf_text(port, max_body=65536))
    reload(h)
    assert h.post("/login", body="username=a&password=" + "b" * 5000,
                  headers={"Content-Type": "application/x-www-form-urlencoded"}).status in (401, 422)


# =============================================================================================
# 7. a secret rotated through its file
# =============================================================================================


def hs256_valid(token, secret):
    head, payload, sig = token.split(".")
    mac = hmac.new(secret.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode() == sig


def test_a_secret_rotated_through_its_file(hosts, tmp_path):
    s1, s2 = "one-" + "a" * 44, "two-" + "b" * 44
    secret, previous = str(tmp_path / "jwt_secret"), str(tmp_path / "jwt_previous")
    write(secret, s1 + "\n")
    write(previous, "")
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_JWT_SECRET_FILE": secret,
                   "LUAHOST_JWT_PREVIOUS_SECRET_FILE": previous}, drop=("LUAHOST_JWT_SECRET",))
    c, admin, user = service(h)
    old = user.token
    assert hs256_valid(old, s1) and not hs256_valid(old, s2)
    assert h.get(user.path, headers=user.auth).status == 200
    # Rotate: new logins sign with the new key; the old token fails (no previous secret yet).
    write(secret, s2 + "\n")
    st = reload(h)
    assert st["restart_required"] == [], st
    assert s1 not in json.dumps(st) and s2 not in json.dumps(st)
    new = c.token(user.username, user.password)
    assert hs256_valid(new, s2) and not hs256_valid(new, s1)
    assert h.get(user.path, headers={"Authorization": f"Bearer {new}"}).status == 200
    r = c.get(user.path, token=old)
    assert r.status == 401, r
    # The old secret as the previous one: old tokens are accepted again, new ones still signed new.
    write(previous, s1)
    reload(h)
    assert c.get(user.path, token=old).status == 200
    assert c.get(user.path, token=new).status == 200
    assert hs256_valid(c.token(user.username, user.password), s2)
    # A rotation to a secret too short is rejected: the live key stays.
    write(secret, "short")
    st = reload(h, expect=422)
    assert "jwt_secret" in st["last_error"] and "short" not in st["last_error"], st
    assert c.get(user.path, token=new).status == 200
    assert hs256_valid(c.token(user.username, user.password), s2)
    # The file gone (a secret store unmounted): rejected, naming the variable; the key stays.
    os.unlink(secret)
    st = reload(h, expect=422)
    assert "LUAHOST_JWT_SECRET_FILE" in st["last_error"] and secret in st["last_error"], st
    assert c.get(user.path, token=new).status == 200
    # Retiring the previous secret: the old token fails again.
    write(secret, s2)
    write(previous, "")
    reload(h)
    assert c.get(user.path, token=old).status == 401
    assert c.get(user.path, token=new).status == 200
    assert s1 not in h.logs() and s2 not in h.logs()


# =============================================================================================
# 8. luahost check on the trees a reload accepts and rejects
# =============================================================================================


def check(tree):
    env = {"PATH": "/usr/bin:/bin", "LUAHOST_CONFIG": os.path.join(FIXTURES, "empty.conf"),
           "LUAHOST_SCRIPTS": str(tree), "LUAHOST_JWT_SECRET": "t" * 48}
    p = subprocess.run([BINARY, "check"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=60 * timing_factor())
    return p.returncode, p.stdout, p.stderr


def test_check_agrees_with_reload(hosts):
    """`luahost check` accepts what a reload accepts (with the same generation id) and rejects,
    with the same message, what a reload rejects: a duplicate route, a failing policy test in a
    file of its own."""
    h = hosts(env={"LUAHOST_WATCH": "0"})
    tree = h.scripts
    extra = os.path.join(tree, "routes", "extra.lua")
    write(extra, extra_routes("check"))
    rc, out, err = check(tree)
    assert rc == 0, err
    st = reload(h)
    assert f"generation {st['generation']}," in out, (out, st)
    assert ", 10 routes," in out, out
    for brk in (break_duplicate_route, break_policy_test_in_a_new_file):
        saved = read(os.path.join(tree, "routes", "users.lua"))
        expected = brk(tree)
        rc, out, err = check(tree)
        assert rc == 1 and out == "", (out, err)
        assert names(err, expected), err
        st = reload(h, expect=422)
        assert names(st["last_error"], expected), st
        write(os.path.join(tree, "routes", "users.lua"), saved)
        if os.path.exists(os.path.join(tree, "policies", "extra_tests.lua")):
            os.unlink(os.path.join(tree, "policies", "extra_tests.lua"))
    rc, out, err = check(tree)
    assert rc == 0, err


# =============================================================================================
# 9. a thousand reloads: memory stays put, every one succeeds, requests keep succeeding
# =============================================================================================


def test_a_thousand_reloads_do_not_grow_memory(hosts):
    total = 200 if SANITIZED else 1000
    h = hosts(env={"LUAHOST_WATCH": "0"})
    c, admin, user = service(h)
    extra = os.path.join(h.scripts, "routes", "extra.lua")
    versions = [extra_routes("a"), extra_routes("b")]
    last = status(h)["generation"]
    seen = set()
    rss = {}
    durations = []
    t0 = time.time()
    with Load(h, user, keepalive=1, fresh=1, health=0) as load:
        for i in range(1, total + 1):
            write(extra, versions[i % 2])
            st = reload(h)
            e = st["history"][0]
            assert e["result"] == "ok" and e["trigger"] == "api", st
            assert st["generation"] != last, (i, st)
            last = st["generation"]
            seen.add(last)
            durations.append(e["duration_ms"])
            if i == 50:
                time.sleep(1.5)  # the idle trim (server.c) runs once the host is quiet a tick
                rss[50] = rss_kib(h.proc.pid)
            if i % 100 == 0:
                assert h.get("/extra/ping").json()["response_data"]["version"] == ("a", "b")[i % 2]
    elapsed = time.time() - t0
    time.sleep(1.5)
    rss[total] = rss_kib(h.proc.pid)
    st = status(h)
    assert st["reloads"] == {"ok": total, "failed": 0}, st
    assert len(st["history"]) == 16
    assert len(seen) == 2  # two contents, two generation ids
    assert load.failed == [], load.failed[:20]
    assert load.ok > total / 10, load.ok
    assert reloads_metric(h, "ok") == total
    grow_mb = (rss[total] - rss[50]) / 1024
    durations.sort()
    print(f"\n{total} reloads in {elapsed:.1f} s: duration_ms p50 {durations[len(durations) // 2]:.1f} "
          f"p99 {durations[int(len(durations) * 0.99)]:.1f}; RSS after 50: {rss[50] / 1024:.1f} MB, "
          f"after {total}: {rss[total] / 1024:.1f} MB ({grow_mb:+.1f} MB); "
          f"{load.ok} requests meanwhile, 0 failed")
    assert grow_mb < (60 if SANITIZED else 30), rss
    # Rejected reloads free what they built, too.
    edit(extra, "return {", "return {{")
    failing = total // 5
    for _ in range(20):
        reload(h, expect=422)
    time.sleep(1.5)
    before = rss_kib(h.proc.pid)
    for _ in range(failing):
        reload(h, expect=422)
    time.sleep(1.5)
    after = rss_kib(h.proc.pid)
    print(f"{failing} rejected reloads: RSS {before / 1024:.1f} MB -> {after / 1024:.1f} MB")
    assert (after - before) / 1024 < (30 if SANITIZED else 10), (before, after)
    assert status(h)["reloads"] == {"ok": total, "failed": failing + 20}


# =============================================================================================
# 10. shutdown during a reload
# =============================================================================================

SLOW_LIB = """-- lib/slow.lua: takes a while to load, so a reload is in progress for a while.
local n = 0
for i = 1, %d do n = n + i %% 7 end
return { n = n }
"""


def post_reload_async(h, results, jwt=None):
    """POST /admin/reload in a thread: on the admin listener, or with jwt on the public one."""
    def go():
        try:
            if jwt:
                results.append(h.post("/admin/reload", headers={"Authorization": f"Bearer {jwt}"},
                                      timeout=60))
            else:
                results.append(h.admin("POST", "/admin/reload", headers=AUTH, timeout=60))
        except (OSError, ValueError, AssertionError) as e:
            results.append(e)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("slow", [False, True])
def test_shutdown_during_a_reload_exits_cleanly(hosts, slow):
    h = hosts(env={"LUAHOST_WATCH": "0"})
    admin = Client(h).token(ADMIN_NAME, ADMIN_PASSWORD)
    if slow:
        # A module every VM loads that spins for a while: validation and each worker's VM take it.
        write(os.path.join(h.scripts, "lib", "slow.lua"), SLOW_LIB % 20_000_000)
        edit(os.path.join(h.scripts, "app.lua"), 'local setup = require "lib.setup"',
             'local setup = require "lib.setup"\nrequire "lib.slow"')
    results = []
    threads = [post_reload_async(h, results)]
    if slow:
        # The reload is under way (its thread spins in the module); a second POST waits behind it.
        time.sleep(0.3)
        threads.append(post_reload_async(h, results))
        threads.append(post_reload_async(h, results, jwt=admin))
        time.sleep(0.1)
    else:
        time.sleep(0.005)
    t0 = time.time()
    h.proc.send_signal(signal.SIGTERM)
    code = h.proc.wait(60 * timing_factor())
    took = time.time() - t0
    for t in threads:
        t.join(30)
    assert code == 0, h.logs()[-3000:]
    assert took < 30 * timing_factor(), took
    logs = h.logs()
    assert "luahost stopped" in logs, logs[-3000:]
    # Each POST got an answer that says what happened (200 live, 503 stopping) or was cut off by
    # the shutdown; never a 422 (nothing was rejected) nor a 500.
    for r in results:
        if isinstance(r, Exception):
            continue
        assert r.status in (200, 503), f"{r!r}\n{logs[-3000:]}"
    print(f"\nSIGTERM during a reload ({'slow' if slow else 'fast'}): exit 0 in {took:.2f} s; "
          f"answers {[getattr(r, 'status', type(r).__name__) for r in results]}")


def test_signals_during_start_up_and_the_drain_do_not_kill_the_host(hosts):
    """SIGHUP (systemctl reload) and SIGUSR1 (logrotate) while the host drains a request, and SIGHUP
    right after it was spawned, leave it running: the request finishes and the exit code is 0."""
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_SHUTDOWN_GRACE_MS": "8000"})
    # a request that is still arriving holds the drain open
    sock = __import__("socket").create_connection(("127.0.0.1", h.port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
    time.sleep(0.2)
    h.proc.send_signal(signal.SIGTERM)
    time.sleep(0.8)
    h.proc.send_signal(signal.SIGHUP)
    h.proc.send_signal(signal.SIGUSR1)
    h.proc.send_signal(signal.SIGQUIT)
    time.sleep(0.3)
    assert h.proc.poll() is None, f"killed by a signal during the drain: {h.proc.returncode}"
    sock.sendall(b"\r\n")
    answer = sock.recv(4096)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert h.proc.wait(30 * timing_factor()) == 0, h.logs()[-3000:]

    # SIGHUP as soon as the process exists (before its handlers are installed)
    env = dict(h.env)
    env["LUAHOST_LISTEN"] = f"127.0.0.1:{free_port()}"
    env["LUAHOST_ADMIN_LISTEN"] = f"127.0.0.1:{free_port()}"
    p = subprocess.Popen([BINARY], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    # as soon as main() runs (it ignores SIGHUP first thing; before that, the dynamic loader is
    # still at work and no program can do anything about a signal), long before it serves
    def ignores_sighup():
        with open(f"/proc/{p.pid}/status") as f:
            mask = next(l for l in f if l.startswith("SigIgn:")).split()[1]
        return int(mask, 16) & (1 << (signal.SIGHUP - 1))
    wait_for(ignores_sighup, 10 * timing_factor(), "main() to run", step=0.001)
    p.send_signal(signal.SIGHUP)
    time.sleep(1.5 * timing_factor())
    assert p.poll() is None, f"SIGHUP during start-up killed the host: {p.returncode}"
    p.send_signal(signal.SIGTERM)
    assert p.wait(30 * timing_factor()) == 0


def test_a_stuck_on_start_hook_does_not_hold_up_shutdown(hosts):
    """A candidate whose on_start waits for ever (here: sleeps in a loop) keeps the reload open;
    SIGTERM cancels the validation: the host exits 0 promptly, and the reload is not 'live'."""
    h = hosts(env={"LUAHOST_WATCH": "0"})
    edit(os.path.join(h.scripts, "app.lua"), "on_start = setup.start,",
         'on_start = function() local core = require "luahost"\n'
         '    while true do core.sleep(50) end end,')
    results = []
    t = post_reload_async(h, results)
    time.sleep(1.0)
    assert not results, "the stuck reload answered before the host stopped"
    t0 = time.time()
    h.proc.send_signal(signal.SIGTERM)
    code = h.proc.wait(30 * timing_factor())
    took = time.time() - t0
    t.join(30)
    assert code == 0, h.logs()[-3000:]
    assert took < 10 * timing_factor(), took
    for r in results:
        if not isinstance(r, Exception):
            assert r.status == 503, r
    assert "validation stopped (the host is stopping)" in h.logs(), h.logs()[-3000:]


def test_a_candidate_that_asks_for_a_reload_is_refused_not_deadlocked(hosts):
    """luahost.admin.reload() from a candidate's on_start hook would wait for the reload it runs
    in: it answers unavailable, the hook fails, the candidate is rejected, and reloads go on."""
    h = hosts(env={"LUAHOST_WATCH": "0"})
    before = status(h)["generation"]
    edit(os.path.join(h.scripts, "app.lua"), "on_start = setup.start,",
         'on_start = function() local admin = require "luahost.admin"\n'
         '    local ok, err = admin.reload("hook")\n'
         '    if ok == nil then return nil, "reload from a hook: " .. tostring(err) end\n'
         '    return true end,')
    st = reload(h, expect=422, timeout=30)
    assert "reload from a hook: unavailable" in st["last_error"], st
    assert st["generation"] == before
    edit(os.path.join(h.scripts, "app.lua"), 'local admin = require "luahost.admin"',
         'local admin = { reload = function() return true end }')
    assert reload(h)["last_error"] is None


def test_the_admin_listener_refuses_web_pages_and_foreign_host_names(hosts):
    """A page in an operator's browser cannot drive the admin listener: a request with Origin or a
    cross-site Sec-Fetch-Site gets 403 even with the token; without a token, so does one addressed
    to a foreign host name (DNS rebinding); no CORS headers there, even for an allowed origin."""
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_CORS_ORIGINS": "https://app.example"})
    before = status(h)["reloads"]
    for extra in ({"Origin": "https://evil.example", "Content-Type": "text/plain"},
                  {"Origin": "https://app.example"},
                  {"Sec-Fetch-Site": "cross-site"}):
        r = h.admin("POST", "/admin/reload", headers={**AUTH, **extra})  # even with the token
        assert r.status == 403, (extra, r)
        assert "access-control-allow-origin" not in r.headers, r.headers
        assert r.json()["response_data"]["code"] == "forbidden"
    assert status(h)["reloads"] == before
    assert h.admin("GET", "/healthz", headers={"Sec-Fetch-Site": "none", **AUTH}).status == 200
    # with a token, any name may address it (a scraper's DNS name, a probe's host)
    r = h.admin("GET", "/metrics", headers={"Host": "scrape-target.example:9180", **AUTH})
    assert r.status == 200, r
    assert "refused POST /admin/reload" in h.logs()

    open_host = hosts(scripts=h.scripts, env={"LUAHOST_WATCH": "0", "LUAHOST_ADMIN_TOKEN": ""})
    for name in ("attacker.example", f"attacker.example:{open_host.admin_port}"):
        r = open_host.admin("POST", "/admin/reload", headers={"Host": name})
        assert r.status == 403, (name, r)
    for name in (f"127.0.0.1:{open_host.admin_port}", f"LOCALHOST:{open_host.admin_port}",
                 "[::1]"):
        assert open_host.admin("GET", "/healthz", headers={"Host": name}).status == 200, name


def test_a_failing_live_tree_keeps_its_error_when_the_watcher_sees_no_change(hosts, tmp_path):
    """A reload of the unchanged tree that fails (here: a configuration its scripts refuse) stays
    visible: a later no-op event of the watcher (a file touched) does not clear last_error."""
    conf = tmp_path / "app.conf"
    conf.write_text("return { app = { admin_userage = 40 } }\n")
    h = hosts(env={"LUAHOST_CONFIG": str(conf)}, drop=("LUAHOST_ADMIN_USERAGE",))
    live = status(h)["generation"]
    conf.write_text("return { app = { admin_userage = 999 } }\n")
    st = reload(h, expect=422)
    assert "admin_userage" in st["last_error"], st
    assert st["generation"] == live
    path = os.path.join(h.scripts, "routes", "auth.lua")
    os.utime(path)
    write(path, read(path))  # an event, the same content
    time.sleep(1.5 * timing_factor())  # more than the quiet period
    assert "admin_userage" in (status(h)["last_error"] or ""), status(h)
    conf.write_text("return { app = { admin_userage = 40 } }\n")
    assert reload(h)["last_error"] is None


def test_a_reload_cannot_remove_the_admin_token(hosts, tmp_path):
    token_file = tmp_path / "admin_token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_ADMIN_TOKEN_FILE": str(token_file)},
              drop=("LUAHOST_ADMIN_TOKEN",))
    assert h.admin("GET", "/admin/reload").status == 401
    token_file.write_text("")
    st = reload(h, expect=422)
    assert "a reload cannot remove the admin token" in st["last_error"], st
    assert h.admin("GET", "/admin/reload").status == 401  # still required
    token_file.write_text(ADMIN_TOKEN + "-2\n")
    r = h.admin("POST", "/admin/reload", headers=AUTH)
    assert r.status == 200, r
    assert h.admin("GET", "/admin/reload", headers=AUTH).status == 401
    assert h.admin("GET", "/admin/reload",
                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}-2"}).status == 200


@pytest.mark.parametrize("bind", ["127.0.0.1", "[::]"])
def test_the_admin_listener_has_a_connection_cap_of_its_own(hosts, bind):
    """Past 32 open admin connections from other addresses (here 127.0.0.2) new ones get 503,
    while 127.0.0.1 (an operator on the machine) still gets in and the public listener is
    untouched; on a dual-stack listener ([::]) that operator is ::ffff:127.0.0.1."""
    import socket as socketlib
    port = free_port()
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_ADMIN_LISTEN": f"{bind}:{port}"},
              admin_port=port)
    held = []
    try:
        for _ in range(40):
            s = socketlib.socket()
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", h.admin_port))
            held.append(s)
        # The refused ones are answered at once; the others get nothing until they send.
        import select
        refused, waiting = 0, list(held)
        deadline = time.time() + 2 * timing_factor()
        while waiting and refused < 40 - 32 and time.time() < deadline:
            ready, _, _ = select.select(waiting, [], [], 0.1)
            for s in ready:
                waiting.remove(s)
                try:
                    if s.recv(100).startswith(b"HTTP/1.1 503"):
                        refused += 1
                except OSError:
                    pass
        assert refused >= 40 - 32, refused
        assert h.admin("GET", "/healthz", headers=AUTH).status == 200  # from 127.0.0.1
        assert h.get("/healthz").status == 200
    finally:
        for s in held:
            s.close()


def test_undoing_a_broken_edit_clears_the_error(hosts):
    """Break a file, then put back exactly what serves: the watcher finds the live generation on
    disk again and the status stops showing the error (nothing to reload)."""
    h = hosts()
    path = os.path.join(h.scripts, "routes", "auth.lua")
    good = read(path)
    live = status(h)["generation"]
    write(path, good + "\nthis is not lua\n")
    wait_for(lambda: status(h)["last_error"] is not None, 10 * timing_factor(), "the rejection")
    write(path, good)
    wait_for(lambda: status(h)["last_error"] is None, 10 * timing_factor(), "the error to clear")
    st = status(h)
    assert st["generation"] == live and st["history"][0]["result"] == "failed", st


def test_on_start_runs_for_new_scripts_or_settings_not_for_the_same_tree(hosts, tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("return { app = { admin_userage = 40 } }\n")
    h = hosts(env={"LUAHOST_WATCH": "0", "LUAHOST_CONFIG": str(conf)},
              drop=("LUAHOST_ADMIN_USERAGE",))
    edit(os.path.join(h.scripts, "app.lua"), "on_start = setup.start,",
         'on_start = function() require("luahost.log").info("ON_START RAN")\n'
         '    return setup.start() end,')
    runs = lambda: h.logs().count("ON_START RAN")
    reload(h)                       # new scripts: the hook runs
    assert runs() == 1
    reload(h)                       # the same tree and settings: it does not
    h.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: status(h)["reloads"]["ok"] >= 3, 10 * timing_factor(), "the SIGHUP reload")
    assert runs() == 1
    conf.write_text("return { app = { admin_userage = 41 } }\n")
    reload(h)                       # new application settings: it runs again
    assert runs() == 2


def test_a_reload_before_the_first_start_hooks_succeeded_runs_them(hosts, tmp_path):
    """/readyz says starting until the on_start hooks succeed. A reload of the same tree before
    then (a SIGHUP, a rotated secret) must run them in its validation, not go live without them
    and turn the host ready: here the hook fails until a gate document exists."""
    scripts = copy_tree(str(tmp_path / "gated"))
    edit(os.path.join(scripts, "app.lua"), "on_start = setup.start,",
         'on_start = function()\n'
         '    local gate = require("luahost.mongo").collection("start_gate"):find_one({})\n'
         '    if not gate then return nil, "no start gate yet" end\n'
         '    return setup.start() end,')
    h = hosts(scripts=scripts, env={"LUAHOST_WATCH": "0"}, ready=False)
    wait_for(lambda: "no start gate yet" in h.logs(), 20, "the failing start hook")
    assert h.get("/readyz").status == 503
    # Until every worker has started (and the reloader after them) the reload API says so.
    first = h.admin("GET", "/admin/reload", headers=AUTH)
    assert first.status in (200, 503), first
    if first.status == 503:
        assert first.json()["response_data"]["code"] == "starting", first
    wait_for(lambda: h.admin("GET", "/admin/reload", headers=AUTH).status == 200, 20, "the reloader")
    st = reload(h, expect=422)              # the same tree: its hooks run, and fail
    assert "on_start hook failed" in st["last_error"], st
    assert "no start gate yet" in st["last_error"], st
    h.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: status(h)["reloads"]["failed"] >= 2, 20, "the SIGHUP reload")
    assert h.get("/readyz").status == 503   # still not ready
    mongo_db(h.db_name)["start_gate"].insert_one({"open": True})
    assert reload(h)["last_error"] is None  # the hooks pass now: live, and ready
    assert h.get("/readyz").status == 200
