"""Helpers for the black-box tests of the user service (issue 5): a client that checks the
contract's invariants on every response, hosts that wait for /readyz, direct database access, and
documents shaped like the original FastAPI service's."""
import base64
import json
import os
import re
import subprocess
import time
import urllib.parse
import uuid
import warnings

import pytest

from conftest import BINARY, MONGODB_URI, ROOT, Host

SCRIPTS = os.path.join(ROOT, "scripts")
ADMIN_NAME = "root_admin"
ADMIN_PASSWORD = "root-password-1"
FORBIDDEN_IN_BODIES = (b"password_hash", b"$argon2", b"$2b$", b"$2a$", b"$2y$")
USER_KEYS = {"id", "username", "userage", "role", "created_at", "updated_at"}
ID_RE = re.compile(r"^[0-9a-f]{24}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def unique(prefix="u"):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def missing_id():
    """A well-formed ObjectId that no document has."""
    return "0f" + uuid.uuid4().hex[:22]


# ---- invariants checked on every response ----

def check_invariants(method, path, r, echoed=()):
    """echoed: words the request itself sent as field names, which a 422 may name back."""
    assert r.status != 500, f"{method} {path}: 500: {r!r}"
    body = r.body
    for word in echoed:
        body = body.replace(b'"field":"%s"' % word.encode(), b"").replace(b"'%s'" % word.encode(), b"")
    for bad in FORBIDDEN_IN_BODIES:
        assert bad not in body, f"{method} {path}: response leaks {bad!r}: {r.body[:400]!r}"
        assert bad.decode() not in r.raw_head, f"{method} {path}: header leaks {bad!r}"
    if r.status == 401:
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), \
            f"{method} {path}: 401 without WWW-Authenticate: Bearer: {r.raw_head}"
    if method == "OPTIONS" or not r.body:
        return
    if path.startswith("/login") and r.status == 200:
        return
    try:
        doc = json.loads(r.body)
    except ValueError:
        raise AssertionError(f"{method} {path}: body is not JSON: {r!r}")
    assert isinstance(doc, dict) and {"message", "response_status", "response_data"} <= set(doc), \
        f"{method} {path}: not an envelope: {r!r}"
    assert doc["response_status"] is (200 <= r.status < 300), f"{method} {path}: {r!r}"
    if r.status == 422:
        errs = doc["response_data"]["errors"]
        assert isinstance(errs, list) and errs, r
        for e in errs:
            assert {"field", "in", "code", "message"} <= set(e), e
            assert e["in"] in ("body", "query", "form"), e
    elif r.status >= 400:
        assert isinstance(doc["response_data"], dict) and isinstance(doc["response_data"].get("code"), str), \
            f"{method} {path}: error without response_data.code: {r!r}"


class Client:
    """Talks to one host; every response goes through check_invariants."""

    def __init__(self, host):
        self.host = host

    def call(self, method, path, body=None, token=None, headers=None, timeout=15, echoed=()):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        r = self.host.request(method, path, body=body, headers=hdrs, timeout=timeout)
        check_invariants(method, path, r, echoed)
        return r

    def get(self, path, token=None, **kw):
        return self.call("GET", path, token=token, **kw)

    def post(self, path, body=None, token=None, **kw):
        return self.call("POST", path, body=body, token=token, **kw)

    def put(self, path, body=None, token=None, **kw):
        return self.call("PUT", path, body=body, token=token, **kw)

    def delete(self, path, token=None, **kw):
        return self.call("DELETE", path, token=token, **kw)

    def login(self, username, password, headers=None, extra=None):
        fields = {"username": username, "password": password}
        fields.update(extra or {})
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        hdrs.update(headers or {})
        return self.call("POST", "/login", body=urllib.parse.urlencode(fields), headers=hdrs)

    def token(self, username, password, headers=None):
        r = self.login(username, password, headers=headers)
        assert r.status == 200, f"login {username}: {r!r}"
        d = r.json()
        assert d["token_type"] == "bearer" and isinstance(d["access_token"], str), d
        return d["access_token"]

    def create(self, admin_token, username=None, password="password-123", userage=30, role=None,
               expect=201):
        body = {"username": username or unique(), "password": password, "userage": userage}
        if role is not None:
            body["role"] = role
        r = self.post("/users/create", body, token=admin_token)
        if expect is not None:
            assert r.status == expect, f"create {body['username']}: {r!r}"
        return r

    def new_user(self, admin_token, role=None, userage=30, prefix="u"):
        """Creates a user and logs in: returns (user dict, token, password)."""
        password = "pw-" + uuid.uuid4().hex[:12]
        u = self.create(admin_token, unique(prefix), password, userage, role).json()["response_data"]
        return u, self.token(u["username"], password), password


def form(fields):
    return urllib.parse.urlencode(fields)


def jwt_payload(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def assert_user(u, username=None, userage=None, role=None):
    assert set(u) == USER_KEYS, u
    assert ID_RE.match(u["id"]), u
    assert TS_RE.match(u["created_at"]) and TS_RE.match(u["updated_at"]), u
    if username is not None:
        assert u["username"] == username, u
    if userage is not None:
        assert u["userage"] == userage, u
    if role is not None:
        assert u["role"] == role, u


def error_fields(r):
    return {(e["field"], e["in"]) for e in r.json()["response_data"]["errors"]}


def error_code(r):
    return r.json()["response_data"]["code"]


# ---- hosts ----

def wait_readyz(host, timeout=20):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if host.proc.poll() is not None:
            raise RuntimeError(f"luahost exited with {host.proc.returncode}:\n{host.logs()}")
        try:
            last = host.get("/readyz", timeout=2)
            if last.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"/readyz never answered 200 (last {last!r}):\n{host.logs()}")


def start_users_host(tmp_dir, env=None, workers=2, db_name=None):
    """Starts the real host with the product scripts and waits until /readyz says 200.
    db_name reuses a database (restarts, migration)."""
    e = dict(env or {})
    if db_name:
        e["LUAHOST_DB"] = db_name
    h = Host(SCRIPTS, env=e, workers=workers, tmp_path=tmp_dir)
    if db_name:
        h.db_name = db_name
    try:
        wait_readyz(h)
    except Exception:
        h.stop()
        raise
    return h


def admin_env(**extra):
    env = {"LUAHOST_ADMIN_USERNAME": ADMIN_NAME, "LUAHOST_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "LUAHOST_ADMIN_USERAGE": "40"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def host_env(db_name, extra=None):
    """The environment a host on db_name would get (for `luahost migrate` before any host runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUAHOST_")}
    env.update({
        "LUAHOST_MONGODB_URI": MONGODB_URI,
        "LUAHOST_DB": db_name,
        "LUAHOST_SCRIPTS": SCRIPTS,
        "LUAHOST_JWT_SECRET": "t" * 48,
        "LUAHOST_DB_TIMEOUT_MS": "3000",
        "LUAHOST_ARGON2_T": "1",
        "LUAHOST_ARGON2_M_KIB": "8192",
        "LUAHOST_BCRYPT_COST": "4",
        "LUAHOST_CONFIG": os.path.join(ROOT, "tests", "fixtures", "empty.conf"),
    })
    env.update(extra or {})
    return env


def run_migrate(env, timeout=60, args=()):
    """Runs `luahost migrate [args]`; returns (exit code, parsed JSON result or None, output)."""
    p = subprocess.run([BINARY, "migrate", *args], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout)
    result = None
    for line in reversed(p.stdout.strip().splitlines()):
        try:
            result = json.loads(line)
            break
        except ValueError:
            continue
    if result is None:
        try:
            result = json.loads(p.stdout)
        except ValueError:
            pass
    return p.returncode, result, p.stdout + p.stderr


# ---- database ----

_clients = {}


def mongo_db(db_name):
    import pymongo
    c = _clients.get(MONGODB_URI)
    if c is None:
        c = pymongo.MongoClient(MONGODB_URI, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)
        _clients[MONGODB_URI] = c
    return c[db_name]


def bcrypt_hash(password):
    """A $2b$ hash as the original service stored it; skips when no bcrypt implementation exists."""
    try:
        import bcrypt  # noqa
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
            h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    except (ImportError, AttributeError, ValueError):
        h = None
    if not h or not h.startswith("$2"):
        pytest.skip("no bcrypt implementation in this Python")
    return "$2b$" + h[4:] if not h.startswith("$2b$") else h


def original_doc(username, password, userage=30, role="user"):
    """A user document shaped like the original FastAPI service's."""
    return {"username": username, "password": bcrypt_hash(password), "userage": userage, "role": role}
