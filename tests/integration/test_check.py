"""`luahost check` over the real binary: validates configuration and scripts and runs the policy
tests without serving; exit 0 with a one-line summary, exit 1 naming the file and line or the
failing policy test and what it got. Trees are copies of the shipped scripts with one change."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BINARY, FIXTURES, ROOT, TEST_SECRET

SCRIPTS = os.path.join(ROOT, "scripts")
NOTES = os.path.join(ROOT, "examples", "notes")
SUMMARY = re.compile(r"^luahost check: ok: generation [0-9a-f]{16}, (\d+) routes, (\d+) policies, "
                     r"(\d+) policy tests passed \(configuration .*, scripts .*\)$")


def check(scripts, *args):
    # No database is reached: check validates the URI, it does not connect.
    env = {"PATH": "/usr/bin:/bin", "LUAHOST_CONFIG": os.path.join(FIXTURES, "empty.conf"),
           "LUAHOST_SCRIPTS": str(scripts), "LUAHOST_JWT_SECRET": TEST_SECRET}
    p = subprocess.run([BINARY, *(args or ("check",))], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def tree(tmp_path):
    """A copy of the shipped scripts (only the product's Lua, not the shell tools beside it)."""
    dst = tmp_path / "scripts"
    for sub in ("routes", "policies", "lib"):
        shutil.copytree(os.path.join(SCRIPTS, sub), dst / sub)
    shutil.copy(os.path.join(SCRIPTS, "app.lua"), dst / "app.lua")
    return dst


def edit(path, old, new):
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def line_of(path, needle):
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_the_shipped_scripts_pass_with_a_one_line_summary():
    rc, out, err = check(SCRIPTS)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and SUMMARY.match(lines[0]), out
    routes, policies, tests = map(int, SUMMARY.match(lines[0]).groups())
    assert routes == 9 and policies == 4 and tests >= 30, out  # 7 + GET/POST /admin/reload


def test_the_aliases_run_the_same_check():
    rc, out, _ = check(SCRIPTS, "check")
    for alias in ("-t", "--check"):
        rc2, out2, err2 = check(SCRIPTS, alias)
        assert (rc2, out2) == (rc, out), err2


def test_the_notes_example_passes_its_policy_tests():
    rc, out, err = check(NOTES)
    assert rc == 0, err
    assert SUMMARY.match(out.strip()).groups() == ("4", "2", "2"), out


def test_a_copy_of_the_shipped_tree_passes(tree):
    rc, out, err = check(tree)
    assert rc == 0, err
    # The generation id is the content hash: the same scripts, the same id.
    assert out.split(",")[0].split()[-1] == check(SCRIPTS)[1].split(",")[0].split()[-1]


def test_a_syntax_error_names_file_and_line(tree):
    f = tree / "routes" / "users.lua"
    edit(f, "local function delete_user(req)", "local function delete_user(req) end end")
    rc, out, err = check(tree)
    assert rc == 1 and out == ""
    # Lua shortens a long chunk name from the left ("...scripts/routes/users.lua"): the file's
    # name and the line stay.
    assert f"scripts/routes/users.lua:{line_of(f, 'delete_user(req) end end')}: '<eof>' expected" \
        in err, err


def test_a_failing_policy_test_names_the_test_and_what_it_got(tree):
    f = tree / "policies" / "rbac.lua"
    # Users may now read any account: the matrix notices.
    edit(f, '["users.read"]     = { any = { admin = true }, self = true },',
         '["users.read"]     = { any = { admin = true, user = true }, self = true },')
    rc, out, err = check(tree)
    assert rc == 1 and out == ""
    t = tree / "policies" / "rbac_tests.lua"
    assert (f"{t}:{line_of(t, 'user may not read another account')}: policy test 'user may not "
            "read another account' (admin_or_self, GET /users/65a1b2c3d4e5f60718293a4d): "
            "expected deny, got allow") in err, err
    assert "2 of " in err and " policy tests failed" in err, err  # and the id that does not exist


def test_a_test_expecting_allow_that_is_denied_says_status_and_code(tree):
    t = tree / "policies" / "rbac_tests.lua"
    edit(t, 'name = "user may not list users", policy = "admin", user = USER,\n'
            '    request = { method = "GET", path = "/users/" }, expect = "deny" }',
         'name = "user may not list users", policy = "admin", user = USER,\n'
         '    request = { method = "GET", path = "/users/" }, expect = "allow" }')
    rc, _, err = check(tree)
    assert rc == 1
    assert "policy test 'user may not list users' (admin, GET /users/): expected allow, got deny " \
           "(403 forbidden)" in err, err


def test_a_duplicate_route_names_file_and_line(tree):
    f = tree / "routes" / "users.lua"
    edit(f, '{ method = "DELETE", path = "/users/{user_id}"', '{ method = "GET", path = "/users/{id}"')
    rc, _, err = check(tree)
    assert rc == 1
    assert re.search(re.escape(str(f)) + r":\d+: route GET /users/\{id\}: .*", err), err


def test_an_unknown_policy_names_file_and_line(tree):
    f = tree / "routes" / "users.lua"
    edit(f, 'policy = "admin_or_self", handler = get_user', 'policy = "admin_or_slef", handler = get_user')
    rc, _, err = check(tree)
    assert rc == 1
    assert re.search(re.escape(str(f)) + r":\d+: unknown policy 'admin_or_slef'", err), err


def test_a_policy_test_naming_an_unknown_policy_names_file_and_line(tree):
    t = tree / "policies" / "rbac_tests.lua"
    edit(t, 'name = "admin may log out", policy = "authenticated"',
         'name = "admin may log out", policy = "authenticatd"')
    rc, _, err = check(tree)
    assert rc == 1
    assert (f"{t}:{line_of(t, 'admin may log out')}: policy test 'admin may log out': unknown "
            "policy 'authenticatd'") in err, err


def test_a_bad_schema_names_file_and_line(tree):
    f = tree / "routes" / "users.lua"
    edit(f, 'policy = "admin", query = schemas.list_query,',
         'policy = "admin", query = { fields = { limit = { type = "integr" } } },')
    rc, _, err = check(tree)
    assert rc == 1
    assert re.search(re.escape(str(f)) + r":\d+: route #2: 'query' schema: field 'limit': 'type' must be one of", err), err


def test_a_policy_test_whose_request_matches_no_route(tree):
    t = tree / "policies" / "rbac_tests.lua"
    edit(t, 'name = "admin may log out", policy = "authenticated", user = ADMIN,\n'
            '    request = { method = "POST", path = "/logout" }',
         'name = "admin may log out", policy = "authenticated", user = ADMIN,\n'
         '    request = { method = "POST", path = "/log-out" }')
    rc, _, err = check(tree)
    assert rc == 1
    assert (f"{t}:{line_of(t, 'admin may log out')}: policy test 'admin may log out' "
            "(authenticated, POST /log-out): the request matches no route") in err, err


def test_a_malformed_policy_test_names_file_and_line(tree):
    t = tree / "policies" / "rbac_tests.lua"
    edit(t, 'name = "user may log out", policy = "authenticated", user = USER,',
         'name = "user may log out", policy = "authenticated", user = USER, expected = "allow",')
    rc, _, err = check(tree)
    assert rc == 1
    assert (f"{t}:{line_of(t, 'user may log out')}: policy test 'user may log out': unknown key "
            "'expected'") in err, err


def test_a_bad_configuration_fails_before_the_scripts():
    env = {"PATH": "/usr/bin:/bin", "LUAHOST_CONFIG": os.path.join(FIXTURES, "empty.conf"),
           "LUAHOST_SCRIPTS": SCRIPTS, "LUAHOST_JWT_SECRET": "short"}
    p = subprocess.run([BINARY, "check"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1 and "LUAHOST_JWT_SECRET" in p.stderr and p.stdout == ""
