"""bench/run --compare OTHER_BINARY: the trivial Lua route of scenario 1 (bench/scripts, one
worker, wrk -t1 -c50) served by two luahost binaries, this tree's release build and OTHER_BINARY
(for example one built from the commit before a change), alternating which runs first; prints each
run and the medians' ratios (this tree / other): req/s and CPU per request of the host process
(every thread, from /proc). Measures a change to the host's own per-request cost without a
reference server in between."""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench import BINARY, ROOT, Luahost, measure  # noqa: E402


def one(binary, duration, connections):
    """One run of scenario 1's route on binary: (req/s, CPU µs per request)."""
    h = Luahost(os.path.join(ROOT, "bench", "scripts"), ready="/healthz", binary=binary)
    try:
        r = measure(h.url("/echo?id=4711"), h.pids, duration, connections)
    finally:
        h.stop()
    return r["rps"], r["cpu_us"]


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
