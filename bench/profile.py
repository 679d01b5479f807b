"""bench/profile.py (bench/run --profile [SECONDS] [--workers N] [--db-threads N]): where the host
spends its time on the database route. Starts the test database, loads the data set, runs wrk on
`GET /users/{id}` against one luahost, and meanwhile records `perf stat` (software counters:
task-clock, context switches, migrations, page faults) and `perf record -g` (cpu-clock samples) of
the host process, then prints the counters per request and the top of the profile by shared object
and by symbol. Without perf it falls back to /proc: CPU time and context switches per request."""
import argparse
import os
import shutil
import subprocess
import tempfile

import bench as b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("seconds", type=int, nargs="?", default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--db-threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--db", default="secantus", choices=["secantus", "ferretdb"])
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--keep", help="copy perf.data here (for perf report -i PATH --stdio -G ...)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lh-bench-prof-")
    db = b.Database(args.db)
    b.DB_PIDS.extend(db.pids())
    host = None
    try:
        env = b.user_env(db.uri)
        env["LUAHOST_DB_THREADS"] = str(args.db_threads)
        host = b.Luahost(os.path.join(b.ROOT, "scripts"), env, workers=args.workers)
        admin_id, ids = b.load_users(host, db.uri, args.users)
        token = b.login(host.url(""), b.ADMIN, b.ADMIN_PASSWORD)
        get = b.get_script(tmp, token, ids[1:1001])
        b.measure(host.url("/"), host.pids, 2, args.connections, get)  # warm-up
        pid = str(host.proc.pid)
        perf = shutil.which("perf")
        procs = []
        if perf:
            stat_out = os.path.join(tmp, "stat.txt")
            data = os.path.join(tmp, "perf.data")
            procs.append(subprocess.Popen(
                [perf, "stat", "-e", "task-clock,context-switches,cpu-migrations,page-faults",
                 "-p", pid, "-o", stat_out, "--", "sleep", str(args.seconds)]))
            procs.append(subprocess.Popen(
                [perf, "record", "-e", "cpu-clock", "-F", "2000", "-g", "-p", pid, "-o", data,
                 "--", "sleep", str(args.seconds)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        r = b.measure(host.url("/"), host.pids, args.seconds, args.connections, get, warmup=0)
        for p in procs:
            p.wait()
        n = r["requests"]
        print(f"GET /users/{{id}}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, host CPU "
              f"{r['cpu_us']:.0f} us/req, {r['csw']:.2f} context switches/req, database CPU "
              f"{r['db_cpu_us']:.0f} us/req ({args.workers} worker(s), {args.db_threads} db "
              f"threads, wrk -c{args.connections}, {args.db})")
        if not perf:
            print("perf is not installed: /proc figures only")
            return
        print(open(stat_out).read())
        print(f"(perf stat covers {args.seconds} s; wrk served {n} requests in that window)")
        for sort in ("dso", "dso,sym"):
            out = subprocess.run([perf, "report", "-i", data, "--stdio", "--no-children",
                                  "--sort", sort, "-g", "none", "--percent-limit", "0.5"],
                                 capture_output=True, text=True).stdout
            lines = [x for x in out.splitlines() if x.strip() and not x.startswith("#")]
            print(f"-- perf report --sort {sort} (self time, top {args.top})")
            print("\n".join(lines[:args.top]))
        if args.keep:
            shutil.copy(data, args.keep)
    finally:
        if host:
            host.stop()
        db.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
