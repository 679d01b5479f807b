"""The shipped examples run as documented against the test database: examples/notes as a scripts
directory of its own, and the examples an operator copies onto the user service's scripts
(examples/README.md): each is copied onto a copy of scripts/ the way the README says, must pass
`luahost check`, and is then proved over a real socket."""
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import BINARY, FIXTURES, ROOT, TEST_SECRET, Host
from users_helpers import ADMIN_NAME, ADMIN_PASSWORD, Client, admin_env, error_code, \
    error_fields, unique, wait_readyz

WRITER = {"X-Api-Key": "example-writer-key"}
READER = {"X-Api-Key": "example-reader-key"}


def test_notes_example(start_host):
    h = start_host(os.path.join(ROOT, "examples", "notes"))
    deadline = time.time() + 10
    while h.get("/readyz").status != 200 and time.time() < deadline:
        time.sleep(0.05)
    assert h.get("/readyz").status == 200  # the on_start index hook ran
    assert h.post("/notes", {"title": "x"}).status == 401
    assert h.post("/notes", {"title": "x"}, headers=READER).status == 403
    r = h.post("/notes", {"title": ""}, headers=WRITER)
    assert r.status == 422 and r.json()["response_data"]["errors"][0]["field"] == "title"
    r = h.post("/notes", {"title": "first", "body": "hello"}, headers=WRITER)
    assert r.status == 201, r
    note = r.json()["response_data"]
    assert note["title"] == "first" and note["author"] == "writer" and len(note["id"]) == 24
    assert h.post("/notes", {"title": "second"}, headers=WRITER).status == 201
    r = h.get("/notes?limit=10", headers=READER)
    assert r.status == 200
    assert [n["title"] for n in r.json()["response_data"]] == ["second", "first"]
    assert h.get("/notes?limit=0", headers=READER).status == 422
    assert h.get("/notes/" + note["id"], headers=READER).json()["response_data"]["body"] == "hello"
    assert h.get("/notes/not-an-id", headers=READER).status == 404
    assert h.request("DELETE", "/notes/" + note["id"], headers=WRITER).status == 200
    assert h.get("/notes/" + note["id"], headers=READER).status == 404


# ---- examples copied onto the user service's scripts ----

SCRIPTS = os.path.join(ROOT, "scripts")
EXAMPLES = os.path.join(ROOT, "examples")
CHECK_OK = re.compile(r"^luahost check: ok: generation [0-9a-f]{16}, (\d+) routes, (\d+) policies, "
                      r"(\d+) policy tests passed")


def scripts_copy(tmp_path):
    """A copy of the shipped scripts: only the product's Lua, as `cmake --install` installs it."""
    dst = tmp_path / "scripts"
    for sub in ("routes", "policies", "lib"):
        shutil.copytree(os.path.join(SCRIPTS, sub), dst / sub)
    shutil.copy(os.path.join(SCRIPTS, "app.lua"), dst / "app.lua")
    return dst


def apply_example(tree, name):
    """What examples/README.md tells an operator: copy the example's Lua files to the same places
    under the scripts directory, then apply its scripts.patch (if any) with `patch -p1`. The patch
    must apply exactly (no fuzz), so an example that no longer fits the shipped scripts fails."""
    src = os.path.join(EXAMPLES, name)
    for d, _, files in os.walk(src):
        for f in files:
            if f.endswith(".lua"):
                rel = os.path.relpath(os.path.join(d, f), src)
                assert not (tree / rel).exists(), f"{name}: {rel} would overwrite a shipped file"
                (tree / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(os.path.join(d, f), tree / rel)
    patch = os.path.join(src, "scripts.patch")
    if os.path.exists(patch):
        with open(patch) as f:
            p = subprocess.run(["patch", "-p1", "--fuzz=0", "--no-backup-if-mismatch", "-d",
                                str(tree)], stdin=f, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, f"{name}: scripts.patch does not apply:\n{p.stdout}{p.stderr}"
    return tree


def check(scripts):
    env = {"PATH": "/usr/bin:/bin", "LUAHOST_CONFIG": os.path.join(FIXTURES, "empty.conf"),
           "LUAHOST_SCRIPTS": str(scripts), "LUAHOST_JWT_SECRET": TEST_SECRET}
    p = subprocess.run([BINARY, "check"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr


def counts(scripts):
    rc, out, err = check(scripts)
    assert rc == 0, err
    m = CHECK_OK.match(out.strip())
    assert m, out
    return tuple(map(int, m.groups()))


@pytest.fixture
def example_host(tmp_path):
    hosts = []

    def start(tree):
        h = Host(str(tree), env=admin_env(), workers=1, tmp_path=tmp_path)
        hosts.append(h)
        wait_readyz(h)
        c = Client(h)
        return c, c.token(ADMIN_NAME, ADMIN_PASSWORD)

    yield start
    for h in hosts:
        h.stop()


def test_the_examples_apply_together(tmp_path):
    routes, policies, tests = counts(SCRIPTS)
    tree = scripts_copy(tmp_path)
    for name in ("user-stats", "support-role", "password-rules"):
        apply_example(tree, name)
    assert counts(tree) == (routes + 1, policies + 2, tests + 3 + 10)


def test_user_stats_example_a_route_with_its_schema(tmp_path, example_host):
    routes, policies, tests = counts(SCRIPTS)
    tree = apply_example(scripts_copy(tmp_path), "user-stats")
    assert counts(tree) == (routes + 1, policies, tests + 3)  # the route and its 3 policy tests

    c, admin = example_host(tree)
    _, user, _ = c.new_user(admin, userage=20)
    c.new_user(admin, userage=40)
    r = c.get("/stats/users", token=admin)
    assert r.status == 200, r
    assert r.json()["response_data"] == {"total": 3, "by_role": {"admin": 1, "user": 2},
                                         "min_age": 0, "max_age": 150}
    r = c.get("/stats/users?min_age=30", token=admin)  # the bootstrap admin is 40
    assert r.json()["response_data"]["by_role"] == {"admin": 1, "user": 1}, r
    r = c.get("/stats/users?role=user&max_age=30", token=admin)
    assert r.json()["response_data"] == {"total": 1, "by_role": {"user": 1}, "min_age": 0,
                                         "max_age": 30}, r
    # The schema answers before the handler runs.
    r = c.get("/stats/users?min_age=50&max_age=10", token=admin)
    assert r.status == 422 and error_fields(r) == {("min_age", "query")}, r
    assert r.json()["response_data"]["errors"][0]["code"] == "range", r
    assert c.get("/stats/users?role=boss", token=admin).status == 422
    assert c.get("/stats/users?min_age=old", token=admin).status == 422
    r = c.get("/stats/users?limit=5", token=admin, echoed=("limit",))
    assert r.status == 422 and error_fields(r) == {("limit", "query")}, r
    # And the policy: admins only.
    assert c.get("/stats/users", token=user).status == 403
    assert c.get("/stats/users").status == 401


def test_support_role_example_a_policy_change_with_its_tests(tmp_path, example_host):
    routes, policies, tests = counts(SCRIPTS)
    tree = apply_example(scripts_copy(tmp_path), "support-role")
    assert counts(tree) == (routes, policies + 2, tests + 10)

    # The short way (support added to the list permission, which the admin policy of create and
    # delete reads too) is caught by the example's policy tests.
    broken = apply_example(scripts_copy(tmp_path / "broken"), "support-role")
    rbac = broken / "policies" / "rbac.lua"
    old = '["users.list"]     = { any = { admin = true } },'
    assert old in rbac.read_text()
    rbac.write_text(rbac.read_text().replace(
        old, '["users.list"]     = { any = { admin = true, support = true } },'))
    rc, out, err = check(broken)
    assert rc == 1 and out == "", out
    assert "policy test 'support may not delete an account' (admin, DELETE /users/" \
           "65a1b2c3d4e5f60718293a4d): expected deny, got allow" in err, err
    assert "policy test 'support may not create users' (admin, POST /users/create): expected " \
           "deny, got allow" in err, err

    c, admin = example_host(tree)
    sup, sup_token, _ = c.new_user(admin, role="support")  # "support" is a role now
    assert sup["role"] == "support"
    other, user, _ = c.new_user(admin)
    r = c.get("/users/", token=sup_token)
    assert r.status == 200 and len(r.json()["response_data"]) == 3, r
    r = c.get("/users/" + other["id"], token=sup_token)
    assert r.status == 200 and r.json()["response_data"]["username"] == other["username"], r
    assert c.put("/users/" + sup["id"], {"userage": 33}, token=sup_token).status == 200
    # What support may not do.
    assert c.create(sup_token, expect=403)
    assert c.delete("/users/" + other["id"], token=sup_token).status == 403
    assert c.put("/users/" + other["id"], {"userage": 33}, token=sup_token).status == 403
    r = c.put("/users/" + sup["id"], {"role": "admin"}, token=sup_token)
    assert r.status == 403 and error_code(r) == "forbidden", r
    # The others keep what they had.
    assert c.get("/users/", token=user).status == 403
    assert c.get("/users/" + sup["id"], token=user).status == 403
    assert c.get("/users/" + other["id"], token=user).status == 200
    assert c.get("/users/", token=admin).status == 200


def test_password_rules_example_a_custom_validation_rule(tmp_path, example_host):
    routes, policies, tests = counts(SCRIPTS)
    tree = apply_example(scripts_copy(tmp_path), "password-rules")
    assert counts(tree) == (routes, policies, tests)

    c, admin = example_host(tree)
    r = c.create(admin, password="only-letters-here", expect=422)
    assert error_fields(r) == {("password", "body")}, r
    assert r.json()["response_data"]["errors"][0]["code"] == "letter_and_digit", r
    name = unique("carol")
    r = c.create(admin, username=name, password="x" + name.upper() + "-9", expect=422)
    errs = r.json()["response_data"]["errors"]
    assert [(e["field"], e["code"]) for e in errs] == [("password", "contains_username")], r
    # The built-in rules still come first: a short password says so, not the custom rule.
    r = c.create(admin, password="a1", expect=422)
    assert r.json()["response_data"]["errors"][0]["code"] == "too_short", r
    # A password that keeps every rule: created, and it logs in.
    pw = "pw-" + uuid.uuid4().hex[:12] + "7"
    u = c.create(admin, username=name, password=pw).json()["response_data"]
    token = c.token(name, pw)
    # Changing a password goes through the field rule too.
    r = c.put("/users/" + u["id"], {"password": "12345678901"}, token=token)
    assert r.status == 422 and r.json()["response_data"]["errors"][0]["code"] == \
        "letter_and_digit", r
    assert c.put("/users/" + u["id"], {"password": "new-pass-1"}, token=token).status == 200
