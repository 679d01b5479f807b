"""Black-box test harness: starts the real luahost binary on a free loopback port, with fixture
scripts and a real MongoDB-compatible server, and speaks HTTP to it over real sockets.

Environment (set by scripts/test):
  LH_TEST_BINARY        path to the luahost binary (default build/luahost)
  LH_TEST_HOST_BINARY   path to the test host, luahost-test: the same core plus the test-only
                        module luahost.test (default: LH_TEST_BINARY with "-test" appended)
  LH_TEST_MONGODB_URI   the test database (FerretDB or SecantusDB)
  LH_TEST_DB_KIND       "ferretdb" or "secantus", for the few places where servers differ
  LH_TEST_SANITIZED     set when the binary is the ASan+UBSan build (timing assertions relaxed)
"""
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("LH_TEST_BINARY", os.path.join(ROOT, "build", "luahost"))
TEST_HOST_BINARY = os.environ.get("LH_TEST_HOST_BINARY", BINARY + "-test")
MONGODB_URI = os.environ.get("LH_TEST_MONGODB_URI", "mongodb://127.0.0.1:27017")
DB_KIND = os.environ.get("LH_TEST_DB_KIND", "ferretdb")
SANITIZED = bool(os.environ.get("LH_TEST_SANITIZED"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TEST_SECRET = "t" * 48


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Host:
    """A running luahost process."""

    def __init__(self, scripts, env=None, workers=1, tmp_path=None, test_host=False):
        self.port = free_port()
        self.admin_port = free_port()
        self.scripts = scripts
        self.env = dict(os.environ)
        # Only LUAHOST_* from the test decide the configuration.
        for k in list(self.env):
            if k.startswith("LUAHOST_"):
                del self.env[k]
        self.db_name = "lh_test_" + uuid.uuid4().hex[:12]
        self.env.update({
            "LUAHOST_LISTEN": f"127.0.0.1:{self.port}",
            "LUAHOST_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
            "LUAHOST_WORKERS": str(workers),
            "LUAHOST_SCRIPTS": scripts,
            "LUAHOST_MONGODB_URI": MONGODB_URI,
            "LUAHOST_DB": self.db_name,
            "LUAHOST_JWT_SECRET": TEST_SECRET,
            "LUAHOST_LOG_LEVEL": "info",
            "LUAHOST_DB_TIMEOUT_MS": "3000",
            # Tests may lower hashing cost, except the ones that measure it.
            "LUAHOST_ARGON2_T": "1",
            "LUAHOST_ARGON2_M_KIB": "8192",
            "LUAHOST_BCRYPT_COST": "4",
            "LUAHOST_CONFIG": os.path.join(FIXTURES, "empty.conf"),
        })
        if env:
            self.env.update(env)
        binary = TEST_HOST_BINARY if test_host else BINARY
        # free_port() closes the port it found: another process on the machine may take it
        # before the host binds it. Such a start is retried on new ports (unless the test chose
        # the addresses itself).
        for attempt in range(3):
            self.log_path = os.path.join(str(tmp_path or "/tmp"), f"luahost-{self.port}.log")
            self.log = open(self.log_path, "w+b")
            self.proc = subprocess.Popen([binary], cwd=ROOT, env=self.env, stdout=self.log,
                                         stderr=subprocess.STDOUT)
            try:
                self.wait_ready()
                return
            except RuntimeError as e:
                chosen = env and ("LUAHOST_LISTEN" in env or "LUAHOST_ADMIN_LISTEN" in env)
                busy = "address already in use" in str(e) or "already served" in str(e)
                if attempt == 2 or chosen or not busy:
                    raise
                self.log.close()
                self.port, self.admin_port = free_port(), free_port()
                self.env["LUAHOST_LISTEN"] = f"127.0.0.1:{self.port}"
                self.env["LUAHOST_ADMIN_LISTEN"] = f"127.0.0.1:{self.admin_port}"

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"luahost exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("luahost did not become ready:\n" + self.logs())

    def logs(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout=15):
        if self.log.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("luahost did not stop on SIGTERM:\n" + self.logs())
        text = self.logs()
        self.log.close()
        assert "ERROR: AddressSanitizer" not in text, text
        assert "runtime error:" not in text, text
        assert "LeakSanitizer" not in text, text
        return self.proc.returncode

    # -- HTTP helpers --
    def request(self, method, path, body=None, headers=None, timeout=10, port=None):
        """One request on a new connection (to the public listener unless port says otherwise);
        returns Response."""
        hdrs = {"Host": "test", "Connection": "close"}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        if isinstance(body, str):
            body = body.encode()
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        if headers:
            hdrs.update(headers)
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items() if v is not None)
        data = head.encode() + b"\r\n" + (body or b"")
        return parse_one(raw(port or self.port, data, timeout=timeout), method == "HEAD")

    def admin(self, method, path, headers=None, **kw):
        """One request to the admin listener (health, metrics, reload), addressed to it by IP as
        operators' tools are (it refuses other host names: DNS rebinding)."""
        hdrs = {"Host": f"127.0.0.1:{self.admin_port}"}
        hdrs.update(headers or {})
        return self.request(method, path, port=self.admin_port, headers=hdrs, **kw)

    def metrics(self):
        """The Prometheus text of /metrics (on the admin listener)."""
        r = self.admin("GET", "/metrics")
        assert r.status == 200, r
        return r.body.decode()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)


def read_until_close(sock, timeout=10):
    """Reads until the server closes the connection (or timeout, or a reset); returns the bytes."""
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    return out


def raw(port, data, timeout=10, shutdown=False):
    """Sends bytes, reads until the server closes (or timeout); returns all bytes read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        return read_until_close(s, timeout)


class Response:
    def __init__(self, status, headers, body, raw_head):
        self.status = status
        self.headers = headers  # lower-cased names -> value (last wins)
        self.body = body
        self.raw_head = raw_head

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


def parse_all(data, head_only=False):
    """Parses a sequence of HTTP/1.1 responses (Content-Length framed)."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            raise ValueError(f"incomplete response: {data[:200]!r}")
        head = data[:end].decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = 0 if (head_only or status in (100, 204, 304)) else int(headers.get("content-length", "0"))
        body = data[end + 4:end + 4 + n]
        out.append(Response(status, headers, body, head))
        data = data[end + 4 + n:]
    return out


def parse_one(data, head_only=False):
    rs = parse_all(data, head_only)
    assert len(rs) >= 1, data
    return rs[-1] if rs[0].status == 100 else rs[0]


@pytest.fixture
def start_host(tmp_path):
    hosts = []

    def start(scripts="runtime", env=None, workers=1, test_host=False):
        path = scripts if os.path.isabs(scripts) else os.path.join(FIXTURES, scripts)
        h = Host(path, env=env, workers=workers, tmp_path=tmp_path, test_host=test_host)
        hosts.append(h)
        return h

    yield start
    for h in hosts:
        h.stop()


@pytest.fixture
def host(start_host):
    return start_host("runtime")


def wait_log(h, text, timeout=15):
    """Waits until the host's log holds text."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in h.logs():
            return
        time.sleep(0.02)
    raise AssertionError(f"never logged {text!r}:\n{h.logs()}")


def timing_factor():
    return 5.0 if SANITIZED else 1.0
