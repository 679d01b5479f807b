"""The user service under wrk: GET /users/{id} (JWT verify, a user read per request for the role,
the user read itself) and POST /login (a password verify at the default argon2id cost on the
hashing pool). Starts its own FerretDB through scripts/db; used by bench/run.py --users."""
import json
import os
import subprocess
import tempfile
import urllib.parse
import urllib.request

ADMIN, PASSWORD = "benchadmin", "bench-admin-password"


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())


def run(bench, Luahost, root):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    data = tempfile.mkdtemp(prefix="lh-bench-fdb-")
    uri = subprocess.run([os.path.join(root, "scripts", "db"), "start", "ferretdb", str(port),
                          data + "/data"], capture_output=True, text=True, check=True).stdout.strip()
    env = {"LUAHOST_MONGODB_URI": uri, "LUAHOST_DB": "bench", "LUAHOST_ADMIN_USERNAME": ADMIN,
           "LUAHOST_ADMIN_PASSWORD": PASSWORD, "LUAHOST_JWT_SECRET": "b" * 40, "LUAHOST_DEV": "0",
           "LUAHOST_LOGIN_MAX_PER_PAIR": "1000000", "LUAHOST_LOGIN_MAX_PER_USER": "1000000",
           "LUAHOST_LOGIN_MAX_PER_ADDR": "1000000"}
    state = {}

    def server():
        h = Luahost(os.path.join(root, "scripts"), env)
        base = f"http://127.0.0.1:{h.port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except Exception:
                import time
                time.sleep(0.1)
        form = urllib.parse.urlencode({"username": ADMIN, "password": PASSWORD}).encode()
        _, tok = http("POST", base + "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        state["token"] = tok["access_token"]
        if "id" not in state:
            _, me = http("GET", base + "/users/?username=" + ADMIN, None,
                         {"Authorization": "Bearer " + state["token"]})
            state["id"] = me["response_data"][0]["id"]
        return h

    lua = os.path.join(tempfile.gettempdir(), "lh-bench-wrk.lua")
    try:
        h = server()
        h.stop()
        with open(lua, "w") as f:
            f.write('wrk.headers["Authorization"] = "Bearer %s"\n' % state["token"])
        bench("luahost GET /users/{id}", server, "/users/" + state["id"], script=lua)
        form = urllib.parse.urlencode({"username": ADMIN, "password": PASSWORD})
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = "%s"\n'
                    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n' % form)
        bench("luahost POST /login (argon2id)", server, "/login", script=lua)
    finally:
        subprocess.run([os.path.join(root, "scripts", "db"), "stop", data + "/data"],
                       capture_output=True)
