"""bench/run --compare OTHER_BINARY: the trivial Lua route of scenario 1 (bench/scripts, one
worker, wrk -t1 -c50) served by two luahost binaries, this tree's release build and OTHER_BINARY
(for example one built from the commit before a change), alternating which runs first; prints each
run and the medians' ratios (this tree / other): req/s and CPU per request of the host process
(every thread, from /proc). Measures a change to the host's own per-request cost without a
reference server in between."""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench import BINARY, ROOT, cpu_seconds, free_port, wait_ready  # noqa: E402


def start(binary):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUAHOST_")}
    env.update(LUAHOST_LISTEN=f"127.0.0.1:{port}", LUAHOST_WORKERS="1", LUAHOST_ADMIN_LISTEN="off",
               LUAHOST_SCRIPTS=os.path.join(ROOT, "bench", "scripts"), LUAHOST_ACCESS_LOG="0",
               LUAHOST_LOG_LEVEL="warn", LUAHOST_JWT_SECRET="c" * 40,
               LUAHOST_CONFIG=os.path.join(ROOT, "tests", "fixtures", "empty.conf"))
    p = subprocess.Popen([binary], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/healthz", proc=p)
    return p, url + "/echo?id=4711"


def one(binary, duration, connections):
    p, url = start(binary)
    try:
        subprocess.run(["wrk", "-t1", f"-c{connections}", "-d1s", url], capture_output=True)
        c0 = cpu_seconds([p.pid])
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url],
                             capture_output=True, text=True).stdout
        c1 = cpu_seconds([p.pid])
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(20)
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, (c1 - c0) / n * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("other", help="the luahost binary to compare this tree's build with")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    bins = {"this": BINARY, "other": os.path.abspath(args.other)}
    runs = {"this": [], "other": []}
    for i in range(args.reps):
        for name in (("this", "other") if i % 2 == 0 else ("other", "this")):
            rps, cpu = one(bins[name], args.duration, args.connections)
            runs[name].append((rps, cpu))
            print(f"{name:5} {rps:10,.0f} req/s {cpu:8.2f} CPU µs/req", flush=True)
            time.sleep(0.5)
    med = {k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
           for k, v in runs.items()}
    print(f"this / other: req/s {med['this'][0] / med['other'][0]:.3f}×, "
          f"CPU per request {med['this'][1] / med['other'][1]:.3f}× "
          f"(medians of {args.reps} runs of {args.duration} s)")


if __name__ == "__main__":
    main()
