"""bench/bench.py: the scenarios of bench/run (which installs, builds, and runs this file in the
benchmark virtualenv; see the README's benchmark section). Each scenario runs luahost and its
reference in the same run, interleaved (the order alternates between repetitions), repeated, and
reports medians: one table with the reference and the ratio in every row, also written as JSON.

Measures with wrk on loopback. CPU per request is the user+system time of the serving processes
(from /proc, all their threads; wrk, the database and the benchmark itself excluded) over the
measured window divided by the requests served in it."""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BENCH_BUILD_DIR", "build-bench"))
BINARY = os.environ.get("BENCH_LUAHOST") or os.path.join(BUILD, "luahost")
RAW = os.path.join(BUILD, "mongo_reads")
VENV_BIN = os.path.dirname(sys.executable)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
NCPU = os.cpu_count() or 1
ADMIN, ADMIN_PASSWORD = "benchadmin", "bench-admin-password"
USER_PASSWORD = "bench-user-password"
JWT_SECRET = "bench-secret-" + "x" * 32
DB_NAME = "bench"


def log(msg):
    print(f"-- {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: every thread of the process
    return total / CLK_TCK


def ctx_switches(pids):
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            total += int(line.split()[1])
            except FileNotFoundError:
                pass
    return total


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/statm") as f:
            total += int(f.read().split()[1]) * PAGE // 1024
    return total


def http(method, url, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(url, timeout=60, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}) before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.005)
    raise RuntimeError("server did not answer " + url)


# ---- wrk --------------------------------------------------------------------------------------

def parse_wrk(out):
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError("wrk failed:\n" + out)
    total = int(m.group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else None
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(int(x) for x in errs.groups()) if errs else 0)
    return total, rps, p99, failed


def wrk_cmd(url, duration, connections, script=None, latency=True):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]
    if latency:
        cmd.append("--latency")
    if script:
        cmd += ["-s", script]
    return cmd + [url]


DB_PIDS = []  # the database's processes: their CPU is reported apart, never in the server's


def measure(url, pids_fn, duration, connections, script=None, warmup=1):
    if warmup:
        subprocess.run(wrk_cmd(url, warmup, min(connections, 8), script, False), capture_output=True)
    pids = pids_fn()
    c0, s0, d0 = cpu_seconds(pids), ctx_switches(pids), cpu_seconds(DB_PIDS)
    out = subprocess.run(wrk_cmd(url, duration, connections, script), capture_output=True,
                         text=True).stdout
    c1, s1, d1 = cpu_seconds(pids), ctx_switches(pids), cpu_seconds(DB_PIDS)
    total, rps, p99, failed = parse_wrk(out)
    n = max(total, 1)
    r = {"rps": rps, "p99_ms": p99, "cpu_us": (c1 - c0) / n * 1e6, "csw": (s1 - s0) / n,
         "requests": total, "failed": failed}
    if DB_PIDS:
        r["db_cpu_us"] = (d1 - d0) / n * 1e6
    return r


# ---- servers ----------------------------------------------------------------------------------

class Luahost:
    """luahost from the release build. Ready is /readyz (the database answers) for the user
    service, /healthz (listening, scripts loaded) for the database-free benchmark scripts."""

    def __init__(self, scripts, env=None, workers=1, ready="/readyz", binary=BINARY):
        self.port = free_port()
        self.admin_port = free_port()
        e = {k: v for k, v in os.environ.items() if not k.startswith("LUAHOST_")}
        e.update({"LUAHOST_LISTEN": f"127.0.0.1:{self.port}", "LUAHOST_WORKERS": str(workers),
                  "LUAHOST_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
                  "LUAHOST_SCRIPTS": scripts, "LUAHOST_ACCESS_LOG": "0",
                  "LUAHOST_LOG_LEVEL": "warn", "LUAHOST_JWT_SECRET": JWT_SECRET,
                  "LUAHOST_CONFIG": os.path.join(ROOT, "tests", "fixtures", "empty.conf")})
        e.update(env or {})
        t0 = self.t0 = time.monotonic()
        self.proc = subprocess.Popen([binary], env=e, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_ready(self.url(ready), proc=self.proc)
        except Exception:
            self.proc.kill()
            self.proc.wait()
            raise
        self.startup_ms = (time.monotonic() - t0) * 1e3

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def admin_url(self, path):
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class NginxLua:
    """nginx + lua-nginx-module, one worker, no access log: the trivial route with cjson."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="lh-bench-nginx-")
        conf = f"""load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
daemon off;
master_process on;
error_log {self.dir}/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  lua_package_cpath "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  keepalive_requests 1000000;
  init_by_lua_block {{ cjson = require "cjson" }}
  server {{
    listen 127.0.0.1:{self.port};
    location = /healthz {{ return 200 'ok'; }}
    location = /echo {{
      default_type application/json;
      content_by_lua_block {{
        ngx.print(cjson.encode({{ message = "ok", response_status = true,
                                  response_data = {{ id = ngx.var.arg_id }} }}))
      }}
    }}
  }}
}}
"""
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(["nginx", "-c", path, "-p", self.dir], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_ready(self.url("/healthz"), proc=self.proc)
        self.startup_ms = (time.monotonic() - t0) * 1e3

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class FastAPIPeer:
    """bench/peers/fastapi_users under uvicorn with as many workers as luahost has."""

    def __init__(self, uri, workers):
        self.port = free_port()
        e = dict(os.environ, BENCH_MONGODB_URI=uri, BENCH_DB=DB_NAME, BENCH_JWT_SECRET=JWT_SECRET)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "uvicorn"), "main:app", "--host", "127.0.0.1", "--port",
             str(self.port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
            cwd=os.path.join(ROOT, "bench", "peers", "fastapi_users"), env=e,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_ready(self.url("/healthz"), proc=self.proc)
        self.startup_ms = (time.monotonic() - t0) * 1e3
        # Every worker is up when each answered: probe until the child count is right.
        deadline = time.monotonic() + 30
        while len(children(self.proc.pid)) < workers + 1 and time.monotonic() < deadline:
            time.sleep(0.05)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def pids(self):
        # uvicorn's supervisor, its workers (and the multiprocessing helper, idle)
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Database:
    def __init__(self, kind):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="lh-bench-db-")
        self.port = free_port()
        self.uri = subprocess.run([os.path.join(ROOT, "scripts", "db"), "start", kind,
                                   str(self.port), self.dir + "/data"], capture_output=True,
                                  text=True, check=True).stdout.strip()

    def pids(self):
        with open(self.dir + "/data/pid") as f:
            pid = int(f.read())
        return [pid] + children(pid)

    def stop(self):
        subprocess.run([os.path.join(ROOT, "scripts", "db"), "stop", self.dir + "/data"],
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- data set ---------------------------------------------------------------------------------

def user_env(uri):
    return {"LUAHOST_MONGODB_URI": uri, "LUAHOST_DB": DB_NAME, "LUAHOST_DEV": "0",
            "LUAHOST_ADMIN_USERNAME": ADMIN, "LUAHOST_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "LUAHOST_JWT_SECRET": JWT_SECRET, "LUAHOST_LOGIN_MAX_PER_PAIR": "1000000",
            "LUAHOST_LOGIN_MAX_PER_USER": "1000000", "LUAHOST_LOGIN_MAX_PER_ADDR": "1000000"}


def form(username, password):
    return urllib.parse.urlencode({"username": username, "password": password})


def login(base, username, password):
    st, body = http("POST", base + "/login", form(username, password).encode(),
                    {"Content-Type": "application/x-www-form-urlencoded"})
    if st != 200:
        raise RuntimeError(f"login {username}: {st} {body[:200]!r}")
    return json.loads(body)["access_token"]


def load_users(host, uri, n):
    """Creates one user through the API (the host computes its argon2id hash), then bulk-inserts
    n-1 more documents of the same shape with that hash: every user can log in with
    USER_PASSWORD. Returns (admin id, [user ids])."""
    import pymongo
    from bson import ObjectId
    base = host.url("")
    token = login(base, ADMIN, ADMIN_PASSWORD)
    auth = {"Authorization": "Bearer " + token}
    st, body = http("POST", base + "/users/create",
                    json.dumps({"username": "bench00000", "password": USER_PASSWORD,
                                "userage": 30}).encode(),
                    dict(auth, **{"Content-Type": "application/json"}))
    if st != 201:
        raise RuntimeError(f"create user: {st} {body[:200]!r}")
    coll = pymongo.MongoClient(uri)[DB_NAME]["users"]
    model = coll.find_one({"username": "bench00000"})
    admin = coll.find_one({"username": ADMIN})
    rng = random.Random(11)
    docs, ids = [], [str(model["_id"])]
    now = datetime.now(timezone.utc)
    for i in range(1, n):
        oid = ObjectId()
        name = f"bench{i:05d}" if rng.random() < 0.5 else f"Bench{i:05d}"
        d = dict(model, _id=oid, username=name, username_lc=name.lower(),
                 userage=rng.randint(18, 90), created_at=now, updated_at=now)
        docs.append(d)
        ids.append(str(oid))
    for k in range(0, len(docs), 2000):
        coll.insert_many(docs[k:k + 2000], ordered=False)
    # The FastAPI original looks users up by `username` at login: give it the index it would have.
    coll.create_index("username")
    log(f"data set: {coll.count_documents({})} users (argon2id hash computed once by the host)")
    return str(admin["_id"]), ids


def wrk_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def get_script(tmp, token, ids):
    lua_ids = ",".join(f'"{i}"' for i in ids)
    return wrk_script(os.path.join(tmp, f"get-{abs(hash(token))}.lua"), f"""
wrk.headers["Authorization"] = "Bearer {token}"
local ids = {{{lua_ids}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/users/" .. ids[i % #ids + 1])
end
""")


LIST_TERMS = ["bench1", "ench23", "nch0", "h45", "bench099", "Bench7", "ch5", "bench20", "nch81", "6"]


def list_script(tmp, token):
    terms = ",".join(f'"{t}"' for t in LIST_TERMS)
    return wrk_script(os.path.join(tmp, f"list-{abs(hash(token))}.lua"), f"""
wrk.headers["Authorization"] = "Bearer {token}"
local terms = {{{terms}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/users/?username=" .. terms[i % #terms + 1] .. "&sort_by=userage&limit=20")
end
""")


def login_script(tmp, names):
    lua_names = ",".join(f'"{n}"' for n in names)
    return wrk_script(os.path.join(tmp, "login.lua"), f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local names = {{{lua_names}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, "/login", nil, "username=" .. names[i % #names + 1] .. "&password={USER_PASSWORD}")
end
""")


def peer_token(admin_id):
    import jwt
    return jwt.encode({"sub": admin_id, "exp": int(time.time()) + 3600}, JWT_SECRET,
                      algorithm="HS256")


# ---- the table --------------------------------------------------------------------------------

ROWS = []


def med(xs):
    return statistics.median(xs) if xs else None


def row(scenario, metric, lh, ref_name, ref, better="higher", note=""):
    ratio = lh / ref if lh is not None and ref else None
    ROWS.append({"scenario": scenario, "metric": metric, "luahost": lh, "reference": ref_name,
                 "reference_value": ref, "ratio": ratio, "better": better, "note": note})


def rows_for(scenario, ref_name, lh_runs, ref_runs, csw=False, note=""):
    def m(runs, k):
        return med([r[k] for r in runs])
    row(scenario, "req/s", m(lh_runs, "rps"), ref_name, m(ref_runs, "rps"), "higher", note)
    row(scenario, "p99 ms", m(lh_runs, "p99_ms"), ref_name, m(ref_runs, "p99_ms"), "lower")
    row(scenario, "CPU µs/req", m(lh_runs, "cpu_us"), ref_name, m(ref_runs, "cpu_us"), "lower")
    if csw:
        row(scenario, "context switches/req", m(lh_runs, "csw"), ref_name, m(ref_runs, "csw"),
            "lower")
    if lh_runs and "db_cpu_us" in lh_runs[0]:
        row(scenario, "database CPU µs/req", m(lh_runs, "db_cpu_us"), ref_name,
            m(ref_runs, "db_cpu_us"), "lower")
    failed = sum(r["failed"] for r in lh_runs) + sum(r["failed"] for r in ref_runs)
    if failed:
        ROWS[-1]["note"] += f" {failed} failed requests (non-2xx or socket errors)"


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def print_table(out=sys.stdout):
    print("| scenario | metric | luahost | reference | reference value | ratio |", file=out)
    print("| --- | --- | --- | --- | --- | --- |", file=out)
    for r in ROWS:
        if r["luahost"] is None and r["note"]:
            print(f"| {r['scenario']} | {r['metric']} | {r['note']} | {r['reference']} | n/a | n/a |",
                  file=out)
            continue
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        note = f" ({r['note'].strip()})" if r["note"].strip() else ""
        print(f"| {r['scenario']} | {r['metric']} | {fmt(r['luahost'])} | {r['reference']}{note} | "
              f"{fmt(r['reference_value'])} | {ratio} |", file=out)


# ---- scenarios --------------------------------------------------------------------------------

def interleaved(reps, a, b):
    """Runs a() and b() reps times, alternating which goes first; returns both lists."""
    ra, rb = [], []
    for i in range(reps):
        if i % 2 == 0:
            ra.append(a())
            rb.append(b())
        else:
            rb.append(b())
            ra.append(a())
    return ra, rb


def scenario_lua_route(args):
    log("1. trivial Lua JSON route vs nginx + lua-nginx-module + cjson")
    lh = Luahost(os.path.join(ROOT, "bench", "scripts"), ready="/healthz")
    ng = NginxLua()
    try:
        path = "/echo?id=4711"
        _, a = http("GET", lh.url(path))
        _, b = http("GET", ng.url(path))
        if json.loads(a) != json.loads(b) or len(a) != len(b):
            raise RuntimeError(f"bodies differ: luahost {a!r}, nginx {b!r}")
        ra, rb = interleaved(args.reps, lambda: measure(lh.url(path), lh.pids, args.duration, 50),
                             lambda: measure(ng.url(path), ng.pids, args.duration, 50))
    finally:
        lh.stop()
        ng.stop()
    rows_for("1. Lua JSON route `?id=` (1 worker, wrk -c50)", "nginx + lua-nginx-module + cjson",
             ra, rb)


def raw_reads(uri, threads, duration, caller, ids_file):
    # The program warms up for a second itself, then measures its own CPU over the window.
    p = subprocess.Popen([RAW, uri, DB_NAME, "users", str(threads), str(duration), caller,
                          ids_file], stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "measuring":
        raise RuntimeError("mongo_reads failed")
    d0 = cpu_seconds(DB_PIDS)
    line = p.stdout.readline()
    d1 = cpu_seconds(DB_PIDS)
    if p.wait() != 0:
        raise RuntimeError("mongo_reads failed")
    r = json.loads(line)
    n = max(r["ops"], 1)
    return {"rps": r["ops"] / r["seconds"], "p99_ms": r["p99_ms"], "cpu_us": r["cpu_s"] / n * 1e6,
            "csw": r["csw"] / n, "db_cpu_us": (d1 - d0) / n * 1e6,
            "requests": r["ops"], "failed": r["errors"]}


def wait_db_idle(timeout=120):
    """Queries that clients gave up on keep the database busy; the next measurement waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c0 = cpu_seconds(DB_PIDS)
        time.sleep(0.5)
        if cpu_seconds(DB_PIDS) - c0 < 0.05:
            return
    log("the database stayed busy")


def scenario_db(args, db, host, admin_id, ids, tmp, only):
    c = args.connections
    token = login(host.url(""), ADMIN, ADMIN_PASSWORD)
    get = get_script(tmp, token, ids[:1000])
    ids_file = os.path.join(tmp, "ids.txt")
    with open(ids_file, "w") as f:
        f.write("\n".join(ids[:1000]) + "\n")

    def lh_get(warmup=1):
        return measure(host.url("/"), host.pids, args.duration, c, get, warmup=warmup)

    if "2" in only:
        log(f"2. GET /users/{{id}} vs the same two reads by libmongoc, {c} threads")
        ra, rb = interleaved(args.reps, lh_get,
                             lambda: raw_reads(db.uri, c, args.duration, admin_id, ids_file))
        rows_for(f"2. `GET /users/{{id}}` ({args.workers} workers, wrk -c{c})",
                 f"two reads by libmongoc alone, {c} threads", ra, rb, csw=True)
    if "4" in only:
        scenario_storm(args, host, lh_get, tmp)
    if "5" in only:
        scenario_reload(args, host, lh_get)
    if "3" in only:
        scenario_fastapi(args, db, host, admin_id, ids, tmp, token, lh_get)


def scenario_storm(args, host, lh_get, tmp):
    log("4. login storm: p99 of GET /users/{id} idle vs while logins saturate the hashing pool")
    login_lua = login_script(tmp, [f"bench{i:05d}" for i in range(1, 200)])
    storm_rate = []

    def storm():
        bg = subprocess.Popen(wrk_cmd(host.url("/"), args.duration + 2, 16, login_lua, False),
                              stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        r = lh_get(warmup=0)
        total, rps, _, failed = parse_wrk(bg.communicate()[0])
        storm_rate.append(rps)
        r["failed"] += failed
        return r

    ra, rb = interleaved(args.reps, storm, lambda: lh_get(warmup=0))
    row(f"4. login storm: `GET /users/{{id}}` while 16 clients log in", "p99 ms",
        med([r["p99_ms"] for r in ra]), "the same, no logins", med([r["p99_ms"] for r in rb]),
        "lower", f"{med(storm_rate):.0f} argon2id logins/s beside it")
    row("4. login storm", "GET req/s", med([r["rps"] for r in ra]), "the same, no logins",
        med([r["rps"] for r in rb]), "higher")


def scenario_reload(args, host, lh_get):
    """GET /users/{id} under load while POST /admin/reload runs again 1 s after each answer,
    against the same load without reloads: (a) the scripts changed each time (a full reload: snapshot, policy
    tests, the on_start hooks of a new generation, a state per worker, commit); (b) the same
    tree each time (a SIGHUP, a rotated secret: everything but the hooks)."""
    log("5. reload under load: GET /users/{id} with a reload 1 s after the last vs without")
    durations = {True: [], False: []}
    rejected = []
    marked = os.path.join(host.scripts, "routes", "auth.lua")
    original = open(marked).read()

    def reloading(changed):
        stop = threading.Event()

        def loop():
            n = 0
            while not stop.wait(1.0):
                n += 1
                if changed:  # a new generation every time: a comment that alternates
                    with open(marked, "w") as f:
                        f.write(original + ("\n-- bench reload\n" if n % 2 else ""))
                t0 = time.monotonic()
                status, body = http("POST", host.admin_url("/admin/reload"), timeout=60)
                durations[changed].append((time.monotonic() - t0) * 1e3)
                if status != 200:
                    rejected.append(body[:200])

        t = threading.Thread(target=loop)
        t.start()
        try:
            return lh_get(warmup=0)
        finally:
            stop.set()
            t.join()

    runs = {"changed": [], "same": [], "none": []}
    fns = {"changed": lambda: reloading(True), "same": lambda: reloading(False),
           "none": lambda: lh_get(warmup=0)}
    order = ["changed", "same", "none"]
    for i in range(args.reps):  # each goes first in turn
        for k in order[i % 3:] + order[:i % 3]:
            runs[k].append(fns[k]())
    with open(marked, "w") as f:
        f.write(original)
    if rejected:
        raise RuntimeError(f"a reload was rejected during the benchmark: {rejected[0]}")
    rb = runs["none"]
    for key, label, changed in (("changed", "5a. reload under load: `GET /users/{id}`, the "
                                 "scripts changed and reloaded, again 1 s after each reload answered",
                                 True),
                                ("same", "5b. reload under load: `GET /users/{id}`, the same "
                                 "tree reloaded, again 1 s after each reload answered", False)):
        ra = runs[key]
        d = durations[changed]
        row(label, "failed requests", sum(r["failed"] for r in ra), "the same, no reloads",
            sum(r["failed"] for r in rb), "lower",
            f"{len(d)} reloads, POST round trip median {med(d):.0f} ms")
        row(label[:3] + " (the same)", "p99 ms", med([r["p99_ms"] for r in ra]),
            "the same, no reloads", med([r["p99_ms"] for r in rb]), "lower")
        row(label[:3] + " (the same)", "req/s", med([r["rps"] for r in ra]),
            "the same, no reloads", med([r["rps"] for r in rb]), "higher")


def scenario_fastapi(args, db, host, admin_id, ids, tmp, token, lh_get):
    c = args.connections
    log(f"3. GET /users/{{id}} and the list vs FastAPI + PyMongo async, {args.workers} workers")
    peer = FastAPIPeer(db.uri, args.workers)
    try:
        ptoken = peer_token(admin_id)
        st, body = http("GET", peer.url("/users/" + ids[1]), None,
                        {"Authorization": "Bearer " + ptoken})
        if st != 200:
            raise RuntimeError(f"FastAPI peer: {st} {body[:200]!r}")
        pget = get_script(tmp, ptoken, ids[:1000])
        ra, rb = interleaved(args.reps, lh_get,
                             lambda: measure(peer.url("/"), peer.pids, args.duration, c, pget))
        rows_for(f"3a. `GET /users/{{id}}` ({args.workers} workers, wrk -c{c})",
                 f"FastAPI + PyMongo async, uvicorn {args.workers} workers", ra, rb)
        # A substring filter scans the collection in the database: a few clients are enough to
        # saturate it, and each measurement waits until the previous one's queries are done.
        lc, ld = 4, args.duration * 2
        lst, plst = list_script(tmp, token), list_script(tmp, ptoken)

        def listing(srv, script):
            wait_db_idle()
            return measure(srv.url("/"), srv.pids, ld, lc, script, warmup=0)

        ra, rb = interleaved(args.reps, lambda: listing(host, lst), lambda: listing(peer, plst))
        rows_for(f"3b. `GET /users/?username=…&sort_by=userage&limit=20` (wrk -c{lc}, {ld} s)",
                 f"FastAPI + PyMongo async, uvicorn {args.workers} workers", ra, rb,
                 note="luahost also counts the matches for X-Total-Count; the original does not")
    finally:
        peer.stop()




def scenario_memory(args, uri):
    log(f"6. memory over {args.requests:,} requests, start-up time")

    def hammer(srv):
        pids = srv.pids()
        start = rss_kib(pids)
        done = 0
        while done < args.requests:
            out = subprocess.run(wrk_cmd(srv.url("/echo?id=4711"), 10, 50, latency=False),
                                 capture_output=True, text=True).stdout
            done += parse_wrk(out)[0]
        return start, rss_kib(pids), done

    lh = Luahost(os.path.join(ROOT, "bench", "scripts"), ready="/healthz")
    try:
        lh_start, lh_end, lh_n = hammer(lh)
    finally:
        lh.stop()
    ng = NginxLua()
    try:
        ng_start, ng_end, ng_n = hammer(ng)
    finally:
        ng.stop()
    row("6. memory: RSS at start (1 worker)", "MiB", lh_start / 1024,
        "nginx + lua-nginx-module, master + worker", ng_start / 1024, "lower")
    row(f"6. memory: RSS after {lh_n / 1e6:.2f}M requests of the Lua route", "MiB", lh_end / 1024,
        f"nginx + lua-nginx-module after {ng_n / 1e6:.2f}M", ng_end / 1024, "lower")
    row("6. memory: RSS growth per million requests", "%",
        (lh_end - lh_start) / lh_start * 100 / (lh_n / 1e6), "nginx + lua-nginx-module",
        (ng_end - ng_start) / ng_start * 100 / (ng_n / 1e6), "lower")
    # Start-up of the user service, database already up: to listening (/healthz: the workers run
    # the loaded scripts; no database work), and to ready (/readyz: the on_start hooks' database
    # work done too: the index, the scan for documents that need `luahost migrate`, the admin
    # guard and bootstrap), against the FastAPI original's start-up to answering.
    listening, ready, peer = [], [], []
    for _ in range(args.reps):
        wait_db_idle()
        h = Luahost(os.path.join(ROOT, "scripts"), user_env(uri), workers=args.workers,
                    ready="/healthz")
        listening.append(h.startup_ms)
        wait_ready(h.url("/readyz"), proc=h.proc)
        ready.append((time.monotonic() - h.t0) * 1e3)
        h.stop()
        wait_db_idle()
        f = FastAPIPeer(uri, args.workers)
        peer.append(f.startup_ms)
        f.stop()
    name = f"FastAPI original, uvicorn {args.workers} workers"
    row(f"6. start-up to listening (user service, {args.workers} workers, scripts loaded; no "
        "database work)", "ms", med(listening), name, med(peer), "lower")
    row("6. start-up to ready (the same, and its on_start hooks' database work on 10,000 users)",
        "ms", med(ready), name, med(peer), "lower")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one short repetition (about 2 minutes)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections on database routes")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--requests", type=int, default=1_000_000, help="for the memory scenario")
    ap.add_argument("--workers", type=int, default=NCPU, help="luahost and uvicorn workers, database routes")
    ap.add_argument("--only", default="1,2,3,4,5,6", help="scenarios to run (2, 3, 4 and 5 share one host)")
    ap.add_argument("--db", default="secantus", choices=["secantus", "ferretdb"],
                    help="test server for the database scenarios (see the README: FerretDB v1.24.2's "
                         "SQLite backend scans the collection on reads by _id)")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    args = ap.parse_args()
    if args.quick:
        args.reps, args.duration, args.requests = 1, 2, 100_000
    only = set(args.only.split(","))
    started = time.monotonic()
    print(f"luahost benchmark: {NCPU} cores, {args.reps} repetition(s) of {args.duration} s, "
          f"medians; wrk -t1 on loopback; database {args.db} with {args.users:,} users; "
          f"ratios are luahost / reference from the same run",
          flush=True)
    if "1" in only:
        scenario_lua_route(args)
    db = None
    tmp = tempfile.mkdtemp(prefix="lh-bench-")
    try:
        if only & {"2", "3", "4", "5", "6"}:
            db = Database(args.db)
            DB_PIDS.extend(db.pids())
            # A copy of the shipped scripts, so that scenario 5 can change them (no watcher: the
            # reloads are the benchmark's own).
            scripts = os.path.join(tmp, "scripts")
            os.makedirs(scripts)
            for part in ("app.lua", "routes", "policies", "lib"):
                src = os.path.join(ROOT, "scripts", part)
                (shutil.copytree if os.path.isdir(src) else shutil.copy)(
                    src, os.path.join(scripts, part))
            host = Luahost(scripts, {**user_env(db.uri), "LUAHOST_WATCH": "0"},
                           workers=args.workers)
            host.scripts = scripts
            try:
                admin_id, ids = load_users(host, db.uri, args.users)
                ids = ids[1:]
                if only & {"2", "3", "4", "5"}:
                    scenario_db(args, db, host, admin_id, ids, tmp, only)
            finally:
                host.stop()
        if "6" in only:
            scenario_memory(args, db.uri)
    finally:
        if db:
            db.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print_table()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"when": datetime.now(timezone.utc).isoformat(), "cores": NCPU,
                   "reps": args.reps, "duration_s": args.duration, "connections": args.connections,
                   "users": args.users, "seconds": round(time.monotonic() - started, 1),
                   "rows": ROWS}, f, indent=2)
    print(f"written {os.path.relpath(args.json, ROOT)} in {time.monotonic() - started:.0f} s",
          flush=True)


if __name__ == "__main__":
    main()
