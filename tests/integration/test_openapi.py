"""The API description: /openapi.json (OpenAPI 3.1, from the serving generation's route
declarations, checked with openapi-spec-validator) and /docs (Swagger UI from the pinned
swagger-ui-dist files, loaded by headless Chromium). Nothing here is skipped: a missing validator,
asset directory or browser fails the test that needs it."""
import os
import re
import shutil
import subprocess

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from conftest import BINARY, FIXTURES, ROOT
from users_helpers import SCRIPTS

ASSETS = os.path.join(ROOT, ".tools", "swagger-ui-dist")
ARTIFACTS = os.path.join(ROOT, "build", "test-artifacts")

# The shipped user service: (method, path) -> (policy, error statuses its declaration gives).
SHIPPED = {
    ("post", "/login"): ("public", {401, 413, 415, 422, 429, 503}),
    ("post", "/logout"): ("authenticated", {401, 503}),
    ("post", "/users/create"): ("admin", {401, 403, 409, 413, 415, 422, 503}),
    ("get", "/users/"): ("admin", {401, 403, 422, 503}),
    ("get", "/users/{user_id}"): ("admin_or_self", {401, 403, 404, 503}),
    ("put", "/users/{user_id}"): ("admin_or_self_update", {401, 403, 404, 409, 413, 415, 422, 503}),
    ("delete", "/users/{user_id}"): ("admin", {401, 403, 404, 409, 503}),
    # the host's reload routes, behind the scripts' admin_policy (scripts/app.lua)
    ("get", "/admin/reload"): ("admin", {401, 403, 503}),
    ("post", "/admin/reload"): ("admin", {401, 403, 422, 503}),
}
ASSET_TYPES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


@pytest.fixture
def users_host(start_host):
    # /openapi.json and /docs need no database: the host serves them before it is ready.
    return start_host(SCRIPTS)


def generation_of(host):
    m = re.search(r'luahost_generation_info\{generation="([0-9a-f]+)"', host.metrics())
    assert m, "no generation in /metrics"
    return m.group(1)


def openapi(host):
    r = host.get("/openapi.json")
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json"
    return r, r.json()


def write_scripts(base, files):
    for rel, src in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(src)
    return str(base)


# ---- /openapi.json ----

def test_openapi_json_is_valid_openapi_3_1(users_host):
    _, doc = openapi(users_host)
    assert doc["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(doc).validate()
    validate(doc)  # and the validator's own choice of version agrees
    assert doc["info"]["version"] == generation_of(users_host)


def test_openapi_json_has_every_shipped_route_with_policy_security_and_errors(users_host):
    _, doc = openapi(users_host)
    ops = {(m, p): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert set(ops) == set(SHIPPED)
    ids = set()
    for key, (policy, errors) in SHIPPED.items():
        op = ops[key]
        assert op["x-luahost-policy"] == policy, key
        assert op["summary"], key
        ids.add(op["operationId"])
        statuses = {int(s) for s in op["responses"] if int(s) >= 400}
        assert statuses == errors, (key, statuses)
        for s in statuses:
            assert op["responses"][str(s)] == {"$ref": f"#/components/responses/{s}"}
        if policy == "public":
            assert "security" not in op, key
        else:
            assert op["security"] == [{"bearerAuth": []}], key
    assert len(ids) == len(SHIPPED)
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]}
    # Each error status has the error envelope, 422 the validation one.
    responses = doc["components"]["responses"]
    for s in {s for _, errors in SHIPPED.values() for s in errors}:
        schema = responses[str(s)]["content"]["application/json"]["schema"]["$ref"]
        want = "ValidationErrorEnvelope" if s == 422 else "ErrorEnvelope"
        assert schema == f"#/components/schemas/{want}", s
    assert "Retry-After" in responses["429"]["headers"]
    assert "Retry-After" in responses["503"]["headers"]
    assert "WWW-Authenticate" in responses["401"]["headers"]
    assert ops[("post", "/users/create")]["responses"]["201"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/Envelope"}
    env = doc["components"]["schemas"]["ErrorEnvelope"]
    assert env["required"] == ["message", "response_status", "response_data"]
    assert env["properties"]["response_data"]["required"] == ["code"]


def test_openapi_json_describes_parameters_and_bodies(users_host):
    _, doc = openapi(users_host)
    users = doc["paths"]["/users/"]["get"]
    q = {p["name"]: p for p in users["parameters"]}
    assert set(q) == {"username", "min_age", "max_age", "skip", "limit", "sort_by", "sort_order"}
    assert all(p["in"] == "query" and p["required"] is False for p in q.values())
    assert q["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
    assert q["skip"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 10000, "default": 0}
    assert q["sort_by"]["schema"]["enum"] == ["username", "userage", "created_at"]
    assert q["sort_by"]["schema"]["default"] == "username"
    assert q["sort_order"]["schema"]["enum"] == ["asc", "desc"]
    assert q["username"]["schema"]["maxLength"] == 64

    one = doc["paths"]["/users/{user_id}"]
    for method in ("get", "put", "delete"):
        assert one[method]["parameters"][0] == {
            "name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}}

    create = doc["paths"]["/users/create"]["post"]["requestBody"]
    assert create["required"] is True
    assert list(create["content"]) == ["application/json"]
    body = create["content"]["application/json"]["schema"]
    assert body["required"] == ["password", "userage", "username"]
    assert body["additionalProperties"] is False
    assert body["properties"]["userage"] == {"type": "integer", "minimum": 0, "maximum": 150}
    assert body["properties"]["username"]["minLength"] == 1
    assert body["properties"]["username"]["maxLength"] == 64
    assert body["properties"]["role"]["enum"] == ["user", "admin"]
    assert body["properties"]["role"]["default"] == "user"
    update = doc["paths"]["/users/{user_id}"]["put"]["requestBody"]["content"]
    assert "required" not in update["application/json"]["schema"]

    # The login form, first (Swagger UI offers the first media type), as OAuth2 clients send it.
    # /login answers the bare token object, not the envelope, and says so
    ok = doc["paths"]["/login"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["token_type"]["enum"] == ["bearer"], ok
    assert set(ok["required"]) == {"access_token", "token_type"}, ok
    login = doc["paths"]["/login"]["post"]["requestBody"]["content"]
    assert list(login)[0] == "application/x-www-form-urlencoded"
    form = login["application/x-www-form-urlencoded"]["schema"]
    assert form["required"] == ["password", "username"]
    assert {"username", "password", "grant_type", "scope", "client_id",
            "client_secret"} == set(form["properties"])


def test_openapi_json_caching_follows_the_generation(users_host):
    r, _ = openapi(users_host)
    assert r.headers["etag"] == '"%s"' % generation_of(users_host)
    assert r.headers["cache-control"] == "no-cache"
    r304 = users_host.get("/openapi.json", headers={"If-None-Match": r.headers["etag"]})
    assert r304.status == 304 and r304.body == b""
    assert r304.headers["etag"] == r.headers["etag"]
    weak = users_host.get("/openapi.json", headers={"If-None-Match": 'W/"zz", W/' + r.headers["etag"]})
    assert weak.status == 304
    other = users_host.get("/openapi.json", headers={"If-None-Match": '"0000000000000000"'})
    assert other.status == 200 and other.body == r.body
    head = users_host.request("HEAD", "/openapi.json")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) == len(r.body)
    post = users_host.post("/openapi.json", body={})
    assert post.status == 405 and post.headers["allow"] == "GET, HEAD"


def test_openapi_json_comes_from_the_scripts_generation(start_host, tmp_path):
    scripts = write_scripts(tmp_path / "s", {"routes/things.lua": """
return { routes = {
  { method = "GET", path = "/things/{thing_id}", name = "things.read",
    description = "Read a thing", responses = { 410 },
    query = { fields = { verbose = { type = "boolean", default = false },
                         level = { type = "number", min = 0.5, max = 2.5 } } },
    handler = function() return 200, { ok = true } end },
  { method = "PATCH", path = "/things/{id}/", name = "things.patch",
    accepts = { "form" }, body = { fields = { n = { type = "integer", required = true } } },
    handler = function() return 200, { ok = true } end },
} }
"""})
    h = start_host(scripts)
    _, doc = openapi(h)
    OpenAPIV31SpecValidator(doc).validate()
    assert list(doc["paths"]) == ["/things/{thing_id}"]  # equivalent paths are one path item
    read = doc["paths"]["/things/{thing_id}"]["get"]
    assert read["operationId"] == "things.read" and read["summary"] == "Read a thing"
    assert {int(s) for s in read["responses"]} == {200, 404, 410, 422, 503}
    q = {p["name"]: p["schema"] for p in read["parameters"]}
    assert q["verbose"] == {"type": "boolean", "default": False}
    assert q["level"] == {"type": "number", "minimum": 0.5, "maximum": 2.5}
    patch = doc["paths"]["/things/{thing_id}"]["patch"]
    assert patch["parameters"][0]["name"] == "thing_id"
    assert list(patch["requestBody"]["content"]) == ["application/x-www-form-urlencoded"]
    assert patch["x-luahost-policy"] == "public"
    assert h.get("/things/1").status == 200


def test_a_description_that_cannot_be_built_never_rejects_the_scripts(start_host, tmp_path):
    scripts = tmp_path / "s"
    (scripts / "routes").mkdir(parents=True)
    (scripts / "routes" / "a.lua").write_bytes(
        b'return { routes = { { method = "GET", path = "/a", description = "caf\\233",\n'
        b'  handler = function() return 200, { ok = true } end } } }\n')
    h = start_host(str(scripts))
    assert h.get("/a").status == 200
    _, doc = openapi(h)
    OpenAPIV31SpecValidator(doc).validate()
    assert doc["paths"] == {}
    assert doc["info"]["version"] == generation_of(h)
    assert "could not be built" in h.logs() and "not valid UTF-8" in h.logs()


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/docs/x", "/openapi.json/x"])
def test_scripts_may_not_declare_the_description_paths(tmp_path, path):
    scripts = write_scripts(tmp_path / "s", {"routes/a.lua": (
        'return { routes = { { method = "GET", path = "%s", handler = function() end } } }' % path)})
    env = {"PATH": "/usr/bin:/bin", "LUAHOST_SCRIPTS": scripts,
           "LUAHOST_CONFIG": os.path.join(FIXTURES, "empty.conf"), "LUAHOST_JWT_SECRET": "c" * 40}
    p = subprocess.run([BINARY, "--check"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0
    assert "reserved" in p.stdout + p.stderr, p.stdout + p.stderr


# ---- /docs ----

def test_docs_page_and_assets(users_host):
    page = users_host.get("/docs")
    assert page.status == 200, page
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    html = page.body.decode()
    assert 'url: "/openapi.json"' in html
    for alias in ("/docs/", "/docs/index.html"):
        assert users_host.get(alias).body == page.body
    refs = dict(re.findall(r'"/docs/([\w.-]+)\?v=([0-9a-f]{16})"', html))
    assert set(refs) == set(ASSET_TYPES)
    for name, ctype in ASSET_TYPES.items():
        r = users_host.get(f"/docs/{name}?v={refs[name]}")
        assert r.status == 200, (name, r)
        assert r.headers["content-type"] == ctype
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["etag"] == f'"{refs[name]}"'
        with open(os.path.join(ASSETS, name), "rb") as f:
            assert r.body == f.read(), name
        again = users_host.get(f"/docs/{name}", headers={"If-None-Match": r.headers["etag"]})
        assert again.status == 304 and again.body == b""
    head = users_host.request("HEAD", "/docs/swagger-ui-bundle.js")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) == os.path.getsize(
        os.path.join(ASSETS, "swagger-ui-bundle.js"))
    r = users_host.post("/docs", body={})
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", [
    "/docs/../config/luahost.conf",
    "/docs/..%2fconfig%2fluahost.conf",
    "/docs/%2e%2e/%2e%2e/etc/passwd",
    "/docs/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/docs/....//....//etc/passwd",
    "/docs//etc/passwd",
    "/docs/./swagger-ui.css",
    "/docs/swagger-ui.css/..",
    "/docs/swagger-ui.css%00.png",
    "/docs/%73wagger-ui.css",
    "/docs/package.json",
    "/docs/LICENSE",
    "/docs/swagger-ui-bundle.js.map",
    "/docs/SWAGGER-UI.CSS",
    "/docs/x/swagger-ui.css",
])
def test_docs_serve_no_other_file(users_host, path):
    r = users_host.get(path)
    assert r.status in (400, 404), (path, r)
    if r.status == 404:
        assert r.json()["response_data"]["code"] == "not_found"
    assert b"root:" not in r.body and b"listen" not in r.body and b"swagger" not in r.body.lower()


def test_docs_can_be_turned_off_and_openapi_json_stays(start_host):
    h = start_host(SCRIPTS, env={"LUAHOST_DOCS": "false"})
    for path in ("/docs", "/docs/", "/docs/swagger-ui.css"):
        r = h.get(path)
        assert r.status == 404 and r.json()["response_data"]["code"] == "not_found", path
    assert openapi(h)[1]["paths"]


def test_missing_assets_are_a_warning_and_a_clear_404(start_host, tmp_path):
    h = start_host(SCRIPTS, env={"LUAHOST_DOCS_ASSETS": str(tmp_path / "none")})
    r = h.get("/docs")
    assert r.status == 404
    assert r.json()["response_data"]["code"] == "docs_unavailable"
    assert "docs_assets" in h.logs()
    assert openapi(h)[1]["paths"]


def test_docs_in_a_real_browser_shows_the_user_operations(users_host, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (scripts/lib.sh installs it)"
    url = f"http://127.0.0.1:{users_host.port}/docs"
    common = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000"]
    p = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    shown = set(re.findall(r'class="opblock opblock-(\w+)[^"]*".*?data-path="([^"]+)"', dom, re.S))
    assert shown == {(m, path) for m, path in SHIPPED}, shown
    for summary in ("Create a user (admins)", "Log in with a username and password",
                    "Read a user (admins, or the user itself)"):
        assert summary in dom, summary
    assert "Failed to load API definition" not in dom
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "docs.png")
    if os.path.exists(shot):
        os.unlink(shot)
    p = subprocess.run(common + ["--window-size=1280,1600", f"--screenshot={shot}", url],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
