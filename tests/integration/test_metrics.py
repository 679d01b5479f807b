"""/metrics over a real socket: the Prometheus families (docs/operations.md), their labels (the
route's template, never the raw path), counts, the histogram's consistency, script counters, and
`promtool check metrics` (Debian's `prometheus` package; scripts/lib.sh installs it) on the
scraped text. Every scrape goes through scrape(), the one place that knows where metrics live."""
import concurrent.futures
import math
import re
import shutil
import subprocess
import time

import pytest

from conftest import timing_factor
from users_helpers import Client, start_users_host

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(host):
    """The metrics text of a running host."""
    r = host.admin("GET", "/metrics")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return r.body.decode()


def parse(text):
    """{(name, frozenset(labels)): value}, plus {family: type} from the TYPE lines."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        key = (m.group(1), labels)
        assert key not in samples, f"duplicate sample: {line!r}"
        samples[key] = float(m.group(4))
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def requests(samples, method, route, code):
    return value(samples, "luahost_http_requests_total", method=method, route=route,
                 code=str(code)) or 0


def promtool_check(text):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (scripts/lib.sh)"
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=60)
    assert p.returncode == 0, (p.stdout + p.stderr).decode() + "\n" + text


def check_histograms(samples):
    """Every (method, route) histogram: cumulative buckets, +Inf == _count, a sum."""
    series = {}
    for (name, labels), v in samples.items():
        if name == "luahost_http_request_duration_seconds_bucket":
            d = dict(labels)
            le = d.pop("le")
            series.setdefault(frozenset(d.items()), []).append((math.inf if le == "+Inf" else float(le), v))
    assert series
    for labels, buckets in series.items():
        buckets.sort()
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), (labels, buckets)
        assert buckets[-1][0] == math.inf and buckets[0][0] == 0.001 and buckets[-2][0] == 10.0
        count = samples[("luahost_http_request_duration_seconds_count", labels)]
        assert buckets[-1][1] == count, (labels, buckets, count)
        assert samples[("luahost_http_request_duration_seconds_sum", labels)] >= 0
    return series


def test_requests_are_counted_by_route_template(host):
    before, _ = parse(scrape(host))
    for a in ("raw-id-4711", "raw-id-4712"):
        assert host.get(f"/echo/{a}/other-raw-x").status == 200
    assert host.get("/no/such/path-raw-9").status == 404
    assert host.request("DELETE", "/thing/raw-id-77").status == 200
    assert host.get("/healthz").status == 200
    text = scrape(host)
    samples, types = parse(text)
    assert "raw-id" not in text and "other-raw" not in text and "path-raw" not in text
    assert requests(samples, "GET", "/echo/{a}/{b}", 200) - requests(before, "GET", "/echo/{a}/{b}", 200) == 2
    assert requests(samples, "GET", "(unmatched)", 404) - requests(before, "GET", "(unmatched)", 404) == 1
    assert requests(samples, "DELETE", "/thing/{id}", 200) - requests(before, "DELETE", "/thing/{id}", 200) == 1
    assert requests(samples, "GET", "/healthz", 200) - requests(before, "GET", "/healthz", 200) == 1
    # the scrape before this one is counted too, under its reserved path
    assert requests(samples, "GET", "/metrics", 200) >= 1
    # the deprecated per-status family still counts every response
    assert value(samples, "luahost_requests_total", status="404") >= 1
    assert types["luahost_http_requests_total"] == "counter"
    assert types["luahost_http_request_duration_seconds"] == "histogram"
    series = check_histograms(samples)
    echo = frozenset({"method": "GET", "route": "/echo/{a}/{b}"}.items())
    assert samples[("luahost_http_request_duration_seconds_count", echo)] == 2
    assert samples[("luahost_http_request_duration_seconds_sum", echo)] > 0
    assert frozenset({"method": "GET", "route": "(unmatched)"}.items()) in series
    promtool_check(text)


def test_every_family_is_there_and_promtool_passes(host):
    text = scrape(host)
    samples, types = parse(text)
    for family, kind in [
            ("luahost_http_requests_total", "counter"),
            ("luahost_http_request_duration_seconds", "histogram"),
            ("luahost_connections", "gauge"),
            ("luahost_pool_jobs_queued", "gauge"),
            ("luahost_pool_jobs_running", "gauge"),
            ("luahost_pool_jobs_rejected_total", "counter"),
            ("luahost_script_budget_exceeded_total", "counter"),
            ("luahost_reloads_total", "counter"),
            ("luahost_generation_info", "gauge"),
            ("luahost_build_info", "gauge"),
            ("luahost_database_up", "gauge"),
            ("luahost_requests_total", "counter"),
            ("luahost_pool_queued", "gauge"),
            ("luahost_pool_running", "gauge"),
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge")]:
        assert types.get(family) == kind, (family, types.get(family))
    assert "# HELP luahost_pool_queued deprecated: use luahost_pool_jobs_queued" in text
    assert value(samples, "luahost_connections") >= 1  # this scrape's own connection
    for pool in ("db", "hash"):
        assert value(samples, "luahost_pool_jobs_rejected_total", pool=pool) == 0
        assert value(samples, "luahost_pool_jobs_queued", pool=pool) is not None
    assert value(samples, "luahost_reloads_total", result="ok") == 0
    assert value(samples, "luahost_reloads_total", result="failed") == 0
    # /readyz names the generation once the database answered the readiness ping (a loaded
    # machine may scrape before that)
    deadline = time.time() + 20 * timing_factor()
    while (r := host.get("/readyz")).status != 200 and time.time() < deadline:
        time.sleep(0.05)
    assert r.status == 200, r
    gen = r.json()["response_data"]["generation"]
    assert value(samples, "luahost_generation_info", generation=gen, id=gen) == 1
    build = [dict(l) for (n, l) in samples if n == "luahost_build_info"]
    assert len(build) == 1 and re.fullmatch(r"\d+\.\d+\.\d+", build[0]["version"]), build
    assert value(samples, "process_open_fds") > 3
    assert value(samples, "process_max_fds") >= value(samples, "process_open_fds")
    assert value(samples, "process_resident_memory_bytes") > 1 << 20
    assert abs(value(samples, "process_start_time_seconds") - time.time()) < 600
    promtool_check(text)


def test_database_up_follows_the_readiness_ping(host):
    deadline = time.time() + 30 * timing_factor()
    up = None
    while time.time() < deadline:
        up = value(parse(scrape(host))[0], "luahost_database_up")
        if up == 1:
            break
        time.sleep(0.1)
    assert up == 1


def test_database_down_reads_zero(start_host):
    h = start_host("runtime", env={"LUAHOST_MONGODB_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200"})
    samples, _ = parse(scrape(h))
    assert value(samples, "luahost_database_up") == 0


def test_script_counter_from_a_fixture_route(host):
    samples, types = parse(scrape(host))
    assert types["luahost_fixture_hits_total"] == "counter"
    assert value(samples, "luahost_fixture_hits_total") == 0  # declared at load
    assert host.get("/metrics-fixture/hit/3").status == 200
    assert host.get("/metrics-fixture/hit/4").status == 200
    text = scrape(host)
    assert value(parse(text)[0], "luahost_fixture_hits_total") == 7
    assert "# HELP luahost_fixture_hits_total Hits of the metrics fixture route." in text
    # bad declarations raise with the reason; a good one shows up at 0
    for name, why in [("Bad_total", "only [a-z_][a-z0-9_]*"), ("hits", 'must end in "_total"'),
                      ("http_requests_total", "host's own")]:
        d = host.get(f"/metrics-fixture/declare/{name}").json()["response_data"]
        assert d["ok"] is False and why in d["err"], (name, d)
    assert host.get("/metrics-fixture/declare/fixture_late_total").json()["response_data"]["ok"]
    text = scrape(host)
    assert value(parse(text)[0], "luahost_fixture_late_total") == 0
    assert "Bad_total" not in text
    promtool_check(text)


def test_budget_exceeded_is_counted(start_host):
    h = start_host("runtime", env={"LUAHOST_SCRIPT_BUDGET_MS": "200"})
    assert value(parse(scrape(h))[0], "luahost_script_budget_exceeded_total") == 0
    r = h.get("/loop", timeout=30)
    assert r.status == 500 and r.json()["response_data"]["code"] == "script_budget_exceeded", r
    samples, _ = parse(scrape(h))
    assert value(samples, "luahost_script_budget_exceeded_total") == 1
    assert requests(samples, "GET", "/loop", 500) == 1


def wait_pool(h, running, queued, timeout=30):
    deadline = time.time() + timeout * timing_factor()
    got = None
    while time.time() < deadline:
        s, _ = parse(scrape(h))
        got = (value(s, "luahost_pool_jobs_running", pool="test"),
               value(s, "luahost_pool_jobs_queued", pool="test"))
        if got == (running, queued):
            return
        time.sleep(0.02)
    raise AssertionError(f"pool never ({running}, {queued}): {got}")


def test_pool_rejections_are_counted(start_host):
    h = start_host("runtime", env={"LUAHOST_TEST_POOL_THREADS": "1", "LUAHOST_TEST_POOL_QUEUE": "1"},
                   workers=1, test_host=True)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        wait_pool(h, 0, 0)
        busy = [ex.submit(h.get, "/block/3000", timeout=60)]
        wait_pool(h, 1, 0)
        busy.append(ex.submit(h.get, "/block/3000", timeout=60))
        wait_pool(h, 1, 1)
        refused = [h.get("/block/10") for _ in range(2)]
        assert all(r.status == 503 for r in refused), refused
        assert value(parse(scrape(h))[0], "luahost_pool_jobs_rejected_total", pool="test") == 2
        assert all(f.result().status == 200 for f in busy)
    samples, _ = parse(scrape(h))
    assert value(samples, "luahost_pool_jobs_rejected_total", pool="test") == 2
    assert value(samples, "luahost_pool_jobs_rejected_total", pool="db") == 0


def test_login_throttled_total_counts_the_429s(tmp_path):
    h = start_users_host(tmp_path, env={"LUAHOST_LOGIN_MAX_PER_PAIR": "2",
                                        "LUAHOST_LOGIN_WINDOW_S": "600"})
    try:
        c = Client(h)
        assert value(parse(scrape(h))[0], "luahost_login_throttled_total") == 0
        for _ in range(2):
            assert c.login("nobody-metrics", "wrong-password").status == 401
        for _ in range(3):
            assert c.login("nobody-metrics", "wrong-password").status == 429
        samples, _ = parse(scrape(h))
        assert value(samples, "luahost_login_throttled_total") == 3
        assert requests(samples, "POST", "/login", 429) == 3
        assert requests(samples, "POST", "/login", 401) == 2
    finally:
        h.stop()
