"""bench/reload.py: what a live reload costs (issue 9; docs/operations.md, "Live reload").

Runs the real host on a copy of the shipped scripts (scripts/: app.lua, routes/, policies/, lib/)
with a bootstrap admin, against a real database, and measures:

  reload     N reloads of the shipped scripts one after another (POST /admin/reload on the admin
             listener, no other load): the median and p90 of the host's own duration_ms (history)
             and of the POST's round trip
  load       concurrent keep-alive clients on GET /users/{own id} (token check, policy, one
             database read) for D seconds without reloads, then D seconds with a reload every
             --interval seconds (each of a new generation: one file alternates between two
             versions); failed requests (non-2xx or connection errors), requests per second,
             p50/p99 latency, and the with/without ratios measured in the same run
  memory     the host's RSS (VmRSS) before and after --reloads reloads in a row

Prints one JSON object on stdout (progress goes to stderr).

  python3 bench/reload.py [--reloads 1000] [--samples 50] [--duration 10] [--clients 8]
                          [--interval 0.2] [--workers 2] [--db secantus|ferretdb]

Also run by `bench/run --reload [ARGS]` (a release build in build-bench/, SecantusDB installed).
Environment: LH_TEST_BINARY or BENCH_LUAHOST (default $BENCH_BUILD_DIR/luahost, else
build/luahost), LH_TEST_MONGODB_URI (a running database;
when unset, --db starts one with scripts/db in a temporary directory and stops it at the end).
The client is Python threads: compare the ratios, not the absolute requests per second, with
bench/run's wrk figures."""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = (os.environ.get("LH_TEST_BINARY") or os.environ.get("BENCH_LUAHOST") or
          os.path.join(ROOT, os.environ.get("BENCH_BUILD_DIR", "build"), "luahost"))
ADMIN, ADMIN_PASSWORD = "benchadmin", "bench-admin-password"
ADMIN_TOKEN = "bench-admin-token-" + "y" * 16
EXTRA = """-- routes/bench_extra.lua: alternates between two versions, so every reload is a new generation.
local response = require "luahost.response"
return { routes = { { method = "GET", path = "/bench/extra", policy = "public",
  handler = function() return response.ok("extra", { version = "%s" }) end } } }
"""


def log(msg):
    print(f"-- {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def request(port, method, path, body=None, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Database:
    """LH_TEST_MONGODB_URI, or a server of --db started by scripts/db for this run."""

    def __init__(self, kind):
        self.uri = os.environ.get("LH_TEST_MONGODB_URI")
        self.dir = None
        if not self.uri:
            self.dir = tempfile.mkdtemp(prefix="bench-reload-db.")
            log(f"starting {kind} with scripts/db")
            self.uri = subprocess.run([os.path.join(ROOT, "scripts", "db"), "start", kind,
                                       str(free_port()), os.path.join(self.dir, "data")],
                                      check=True, capture_output=True, text=True).stdout.strip()

    def close(self):
        if self.dir:
            subprocess.run([os.path.join(ROOT, "scripts", "db"), "stop",
                            os.path.join(self.dir, "data")], capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)


class Host:
    def __init__(self, uri, workers, tmp):
        self.scripts = os.path.join(tmp, "scripts")
        os.makedirs(self.scripts)
        for sub in ("routes", "policies", "lib"):
            shutil.copytree(os.path.join(ROOT, "scripts", sub), os.path.join(self.scripts, sub))
        shutil.copy(os.path.join(ROOT, "scripts", "app.lua"), self.scripts)
        self.port, self.admin_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUAHOST_")}
        empty = os.path.join(tmp, "empty.conf")
        with open(empty, "w") as f:
            f.write("return {}\n")
        env.update({
            "LUAHOST_CONFIG": empty, "LUAHOST_LISTEN": f"127.0.0.1:{self.port}",
            "LUAHOST_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
            "LUAHOST_ADMIN_TOKEN": ADMIN_TOKEN, "LUAHOST_WORKERS": str(workers),
            "LUAHOST_SCRIPTS": self.scripts, "LUAHOST_MONGODB_URI": uri,
            "LUAHOST_DB": "bench_reload_" + uuid.uuid4().hex[:8], "LUAHOST_JWT_SECRET": "b" * 48,
            "LUAHOST_ACCESS_LOG": "0", "LUAHOST_WATCH": "0", "LUAHOST_ADMIN_USERNAME": ADMIN,
            "LUAHOST_ADMIN_PASSWORD": ADMIN_PASSWORD, "LUAHOST_ADMIN_USERAGE": "40",
            "LUAHOST_ARGON2_T": "1", "LUAHOST_ARGON2_M_KIB": "8192",
        })
        self.log = open(os.path.join(tmp, "luahost.log"), "w+b")
        self.proc = subprocess.Popen([BINARY], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"luahost exited with {self.proc.returncode}: {self.logs()}")
            try:
                if request(self.port, "GET", "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("luahost did not become ready: " + self.logs())

    def logs(self):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def reload(self):
        st, body = request(self.admin_port, "POST", "/admin/reload",
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        if st != 200:
            raise RuntimeError(f"reload answered {st}: {body[:500]!r}")
        return json.loads(body)["response_data"]

    def switch_extra(self, i):
        path = os.path.join(self.scripts, "routes", "bench_extra.lua")
        with open(path + ".tmp", "w") as f:
            f.write(EXTRA % ("ab"[i % 2]))
        os.replace(path + ".tmp", path)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "killed"
        finally:
            self.log.close()


def login(port, username, password):
    st, body = request(port, "POST", "/login",
                       body=urllib.parse.urlencode({"username": username, "password": password}),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    if st != 200:
        raise RuntimeError(f"login {username}: {st} {body[:300]!r}")
    return json.loads(body)["access_token"]


def a_user(h):
    admin = login(h.port, ADMIN, ADMIN_PASSWORD)
    name, pw = "bench" + uuid.uuid4().hex[:8], "bench-password-1"
    st, body = request(h.port, "POST", "/users/create",
                       body=json.dumps({"username": name, "password": pw, "userage": 30}),
                       headers={"Authorization": f"Bearer {admin}",
                                "Content-Type": "application/json"})
    if st != 201:
        raise RuntimeError(f"create: {st} {body[:300]!r}")
    return json.loads(body)["response_data"]["id"], login(h.port, name, pw)


def load(h, uid, token, clients, duration, reload_interval=None):
    """Keep-alive clients on GET /users/{uid} for `duration` seconds; with reload_interval, a
    reload of a new generation every that many seconds meanwhile."""
    stop = threading.Event()
    lock = threading.Lock()
    lat, failed, reloads = [], [], []
    path, hdrs = f"/users/{uid}", {"Authorization": f"Bearer {token}"}

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
        mine, bad = [], []
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers=hdrs)
                r = conn.getresponse()
                r.read()
                if 200 <= r.status < 300:
                    mine.append(time.perf_counter() - t0)
                else:
                    bad.append(r.status)
                if r.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                bad.append(repr(e))
                conn.close()
        conn.close()
        with lock:
            lat.extend(mine)
            failed.extend(bad)

    def reloader():
        i = 0
        while not stop.is_set():
            i += 1
            h.switch_extra(i)
            t0 = time.perf_counter()
            st = h.reload()
            reloads.append((time.perf_counter() - t0, st["history"][0]["duration_ms"]))
            stop.wait(reload_interval)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    if reload_interval is not None:
        threads.append(threading.Thread(target=reloader))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    out = {"requests": len(lat) + len(failed), "failed": len(failed),
           "failed_examples": [str(x) for x in failed[:5]],
           "rps": round(len(lat) / elapsed, 1),
           "p50_ms": round(pct(lat, 50) * 1000, 2) if lat else None,
           "p99_ms": round(pct(lat, 99) * 1000, 2) if lat else None}
    if reload_interval is not None:
        out["reloads"] = len(reloads)
        out["reload_duration_ms_p50"] = round(statistics.median(r[1] for r in reloads), 1) if reloads else None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reloads", type=int, default=1000, help="reloads in a row for the RSS figure")
    ap.add_argument("--samples", type=int, default=50, help="reloads timed without load")
    ap.add_argument("--duration", type=float, default=10, help="seconds of each load run")
    ap.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between reloads under load")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--db", default="secantus", choices=("secantus", "ferretdb"))
    args = ap.parse_args()

    db = Database(args.db)
    tmp = tempfile.mkdtemp(prefix="bench-reload.")
    h = None
    try:
        h = Host(db.uri, args.workers, tmp)
        uid, token = a_user(h)
        result = {"binary": BINARY, "database": db.uri.split("@")[-1], "workers": args.workers}

        log(f"timing {args.samples} reloads of the shipped scripts")
        host_ms, rtt_ms = [], []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            st = h.reload()
            rtt_ms.append((time.perf_counter() - t0) * 1000)
            host_ms.append(st["history"][0]["duration_ms"])
        result["reload"] = {
            "samples": args.samples,
            "duration_ms_p50": round(statistics.median(host_ms), 1),
            "duration_ms_p90": round(pct(host_ms, 90), 1),
            "round_trip_ms_p50": round(statistics.median(rtt_ms), 1),
            "round_trip_ms_p90": round(pct(rtt_ms, 90), 1),
        }

        log(f"{args.clients} clients for {args.duration} s without reloads, then with a reload "
            f"every {args.interval} s")
        base = load(h, uid, token, args.clients, args.duration)
        busy = load(h, uid, token, args.clients, args.duration, reload_interval=args.interval)
        result["load"] = {
            "clients": args.clients, "seconds": args.duration, "without_reloads": base,
            "with_reloads": busy,
            "ratio_p50": round(busy["p50_ms"] / base["p50_ms"], 2) if base["p50_ms"] else None,
            "ratio_p99": round(busy["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None,
            "ratio_rps": round(busy["rps"] / base["rps"], 2) if base["rps"] else None,
        }

        log(f"{args.reloads} reloads in a row (a new generation each)")
        time.sleep(1.5)  # the host trims its heaps once idle for a tick (host/server.c)
        before = rss_kib(h.proc.pid)
        t0 = time.perf_counter()
        for i in range(args.reloads):
            h.switch_extra(i)
            h.reload()
        spent = time.perf_counter() - t0
        time.sleep(1.5)
        after = rss_kib(h.proc.pid)
        st, body = request(h.admin_port, "GET", "/admin/reload",
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        counts = json.loads(body)["response_data"]["reloads"]
        result["memory"] = {"reloads": args.reloads, "seconds": round(spent, 1),
                            "rss_mb_before": round(before / 1024, 1),
                            "rss_mb_after": round(after / 1024, 1),
                            "rss_mb_growth": round((after - before) / 1024, 1),
                            "status_reloads": counts}
        code = h.stop()
        h = None
        result["exit_code"] = code
        print(json.dumps(result, indent=2))
        failed = base["failed"] + busy["failed"] + counts["failed"]
        return 0 if failed == 0 and code == 0 else 1
    finally:
        if h:
            h.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        db.close()


if __name__ == "__main__":
    sys.exit(main())
