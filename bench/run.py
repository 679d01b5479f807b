#!/usr/bin/env python3
"""luahost benchmarks: wrk on loopback against luahost and, in the same run, the references
(nginx `return 200`, nginx + lua-nginx-module `content_by_lua`). Prints requests/s, p99 latency and
server CPU time per request (user+system time of the serving process over the run divided by the
requests served), and ratios against the references.

  bench/run.py [--duration S] [--connections N] [--only NAME,...] [--users]

Both servers run one worker (one core) and no access log, so the figures compare the same work;
wrk takes the other core. --users adds GET /users/{id} and POST /login of the user service
against a FerretDB it starts (scripts/db)."""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "build", "luahost")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (of the process, all threads)
    return total / CLK_TCK


def wait_http(url, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("server did not answer " + url)


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    p99 = float(m.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, p99, int(errors.group(1)) if errors else 0


def run_wrk(url, pids, duration, connections, script=None):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    subprocess.run(["wrk", "-t1", "-c8", "-d1s", url] + (["-s", script] if script else []),
                   capture_output=True)  # warm-up
    c0 = cpu_seconds(pids)
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    c1 = cpu_seconds(pids)
    rps, total, p99, errors = parse_wrk(out)
    return {"rps": rps, "p99_ms": p99, "cpu_us_per_req": (c1 - c0) / total * 1e6,
            "requests": total, "non_2xx": errors}


class Luahost:
    def __init__(self, scripts, env=None):
        self.port = free_port()
        e = {k: v for k, v in os.environ.items() if not k.startswith("LUAHOST_")}
        e.update({"LUAHOST_LISTEN": f"127.0.0.1:{self.port}", "LUAHOST_WORKERS": "1",
                  "LUAHOST_SCRIPTS": scripts, "LUAHOST_ACCESS_LOG": "0", "LUAHOST_DEV": "1",
                  "LUAHOST_LOG_LEVEL": "warn",
                  "LUAHOST_CONFIG": os.path.join(ROOT, "tests", "fixtures", "empty.conf")})
        e.update(env or {})
        self.proc = subprocess.Popen([BINARY], env=e, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/healthz")

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)


class Nginx:
    def __init__(self, lua):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="lh-bench-nginx-")
        body = '{"message":"hello","response_data":{"greeting":"hello, world","n":1},"response_status":true}'
        if lua:
            loc = ("default_type application/json;\n content_by_lua_block { ngx.print('" + body + "') }")
            mods = ("load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
                    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n")
        else:
            loc = "default_type application/json;\n return 200 '" + body + "';"
            mods = ""
        conf = f"""{mods}
worker_processes 1;
daemon off;
master_process on;
error_log {self.dir}/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{self.port};
    location = /healthz {{ return 200 'ok'; }}
    location / {{ {loc} }}
  }}
}}
"""
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["nginx", "-c", path, "-p", self.dir], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/healthz")

    def pids(self):
        # master + worker(s): the worker does the serving
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [self.proc.pid] + [int(x) for x in out.split()]

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


def show(name, r, ref=None):
    line = (f"{name:34s} {r['rps']:>10.0f} req/s   p99 {r['p99_ms']:7.2f} ms   "
            f"CPU {r['cpu_us_per_req']:6.2f} us/req")
    if r["non_2xx"]:
        line += f"   non-2xx {r['non_2xx']}"
    if ref:
        line += f"   (CPU x{r['cpu_us_per_req'] / ref['cpu_us_per_req']:.2f} of {ref['name']})"
    print(line, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--only", default="")
    ap.add_argument("--users", action="store_true")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    results = {}

    def bench(name, server_factory, path, script=None, ref=None):
        if only and name not in only:
            return
        srv = server_factory()
        try:
            r = run_wrk(f"http://127.0.0.1:{srv.port}{path}", srv.pids(), args.duration,
                        args.connections, script)
        finally:
            srv.stop()
        r["name"] = name
        results[name] = r
        show(name, r, results.get(ref))

    scripts = os.path.join(ROOT, "bench", "scripts")
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, one server worker, loopback, 2 cores")
    bench("nginx return 200", lambda: Nginx(False), "/x")
    bench("luahost /healthz (C)", lambda: Luahost(scripts), "/healthz", ref="nginx return 200")
    bench("nginx content_by_lua", lambda: Nginx(True), "/x")
    bench("luahost Lua route, JIT off", lambda: Luahost(scripts), "/hello", ref="nginx content_by_lua")
    bench("luahost Lua route, JIT on", lambda: Luahost(scripts, {"LUAHOST_JIT": "1"}), "/hello",
          ref="nginx content_by_lua")
    if args.users:
        users_bench(bench, scripts)
    with open(os.path.join(tempfile.gettempdir(), "luahost-bench.json"), "w") as f:
        json.dump(results, f, indent=2)


def users_bench(bench, _):
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import users_bench  # noqa: E402  (kept apart: it needs the database)
    users_bench.run(bench, Luahost, ROOT)


if __name__ == "__main__":
    main()
