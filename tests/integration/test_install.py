"""Install and packaging (cmake/install.cmake, packaging/): `cmake --install` into a staging prefix
gives a layout whose binary serves the installed scripts with the installed configuration from any
directory; the systemd unit passes `systemd-analyze verify`; the .deb built by CPack installs with
`dpkg -i`, serves as the `luahost` user against the test database, and goes with `dpkg -r`/`-P`.

The build directory is the one LH_TEST_BINARY lives in: nothing is rebuilt from scratch."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BINARY, MONGODB_URI, ROOT, SANITIZED, TEST_SECRET, Host, free_port
from users_helpers import ADMIN_NAME, ADMIN_PASSWORD, Client, wait_readyz

BUILD = os.path.dirname(os.path.abspath(BINARY))
SHELL_TOOLS = ("run", "test", "db", "fuzz", "lib.sh")

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")),
                                reason=f"{BUILD} is not a CMake build directory")


def run(*cmd, timeout=300, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode == 0, f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def host_env(db_name, port):
    """Only what a deployment sets in the environment: the database, the secret, the port (and
    the sanitizer options of a sanitizer build, which scripts/test sets)."""
    env = {k: v for k, v in os.environ.items() if k.endswith("SAN_OPTIONS")}
    return env | {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LUAHOST_LISTEN": f"127.0.0.1:{port}",
        # a port of its own: the default 127.0.0.1:9180 may be another test host's
        "LUAHOST_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "LUAHOST_WORKERS": "1",
        "LUAHOST_MONGODB_URI": MONGODB_URI,
        "LUAHOST_DB": db_name,
        "LUAHOST_JWT_SECRET": TEST_SECRET,
        "LUAHOST_DB_TIMEOUT_MS": "3000",
        "LUAHOST_ARGON2_T": "1",
        "LUAHOST_ARGON2_M_KIB": "8192",
        "LUAHOST_ADMIN_USERNAME": ADMIN_NAME,
        "LUAHOST_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LUAHOST_ADMIN_USERAGE": "40",
    }


class InstalledHost(Host):
    """An installed binary started as a service would start it: `--config FILE`, a clean
    environment, a working directory outside the source tree, optionally under another user."""

    def __init__(self, argv, cwd, tmp_path, db_name):
        self.port = free_port()
        self.scripts = None
        self.db_name = db_name
        self.env = host_env(db_name, self.port)
        self.log_path = os.path.join(str(tmp_path), f"installed-{self.port}.log")
        self.log = open(self.log_path, "w+b")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.wait_ready()


def serve_and_log_in(argv, cwd, tmp_path, db_name):
    """Starts argv, proves /healthz, /readyz (the bootstrap admin exists) and a login whose token
    lists users; returns the log."""
    h = InstalledHost(argv, cwd, tmp_path, db_name)
    try:
        assert h.get("/healthz").status == 200
        wait_readyz(h)
        c = Client(h)
        token = c.token(ADMIN_NAME, ADMIN_PASSWORD)
        r = c.get("/users/", token=token)
        assert r.status == 200, r
        assert [u["username"] for u in r.json()["response_data"]] == [ADMIN_NAME], r
        assert c.login(ADMIN_NAME, "wrong password").status == 401
        # /docs with the installed Swagger UI files, and the API's description
        assert h.get("/docs").status == 200
        assert h.get("/openapi.json").json()["openapi"] == "3.1.0"
    finally:
        rc = h.stop()
    assert rc == 0, h.logs()
    return h.logs()


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """`cmake --install` of the existing build directory into a fresh staging prefix. The build
    step only brings the directory up to date (install rules included); it reuses every object."""
    run("cmake", "--build", BUILD, "--target", "luahost", timeout=600)
    prefix = tmp_path_factory.mktemp("stage") / "prefix"
    run("cmake", "--install", BUILD, "--prefix", str(prefix))
    return prefix


def read_unit(path):
    """The [Service] and other sections of a unit file as {section: [(key, value), ...]}."""
    sections, cur = {}, None
    for line in open(path):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            cur = sections.setdefault(m.group(1), [])
            continue
        assert cur is not None and "=" in line, f"{path}: not a unit line: {line!r}"
        k, v = line.split("=", 1)
        cur.append((k, v))
    return sections


def test_the_staged_layout_has_the_product_and_nothing_else(stage):
    assert os.access(stage / "bin" / "luahost", os.X_OK)
    # The test host (luahost.test) is never installed; nor are the shell tools beside the scripts.
    found = {p.name for p in stage.rglob("*")}
    assert "luahost-test" not in found
    scripts = stage / "share" / "luahost" / "scripts"
    for tool in SHELL_TOOLS:
        assert not (scripts / tool).exists(), tool
    # Every Lua file of the product's scripts, byte for byte, and nothing more.
    src = os.path.join(ROOT, "scripts")
    want = {os.path.relpath(os.path.join(d, f), src) for d, _, fs in os.walk(src) for f in fs
            if f.endswith(".lua")}
    got = {str(p.relative_to(scripts)) for p in scripts.rglob("*") if p.is_file()}
    assert got == want and "app.lua" in got and "routes/users.lua" in got
    for rel in want:
        assert (scripts / rel).read_bytes() == open(os.path.join(src, rel), "rb").read(), rel
    assert (stage / "share" / "luahost" / "examples" / "notes" / "routes" / "notes.lua").is_file()
    assert (stage / "share" / "luahost" / "examples" / "README.md").is_file()
    assert (stage / "share" / "doc" / "luahost" / "operations.md").is_file()


def test_the_installed_configuration_is_the_documented_one_naming_the_installed_scripts(stage):
    conf = (stage / "etc" / "luahost" / "luahost.conf").read_text()
    src = open(os.path.join(ROOT, "config", "luahost.conf")).read()
    scripts = stage / "share" / "luahost" / "scripts"
    assert f'  scripts = "{scripts}",\n' in conf
    # One source of truth: the documented file with that one line changed.
    docs = stage / "share" / "luahost" / "swagger-ui-dist"
    assert conf == src.replace('  scripts = "scripts",\n', f'  scripts = "{scripts}",\n', 1).replace(
        '  docs_assets = ".tools/swagger-ui-dist",\n', f'  docs_assets = "{docs}",\n', 1)
    assert (docs / "swagger-ui-bundle.js").is_file()
    assert conf != src


def test_destdir_stages_without_writing_the_staging_path_into_the_files(stage, tmp_path):
    # `stage` brought the build directory up to date.
    dest = tmp_path / "destdir"
    run("cmake", "--install", BUILD, "--prefix", "/usr", env=dict(os.environ, DESTDIR=str(dest)))
    assert os.access(dest / "usr" / "bin" / "luahost", os.X_OK)
    conf = (dest / "etc" / "luahost" / "luahost.conf").read_text()  # /usr keeps it in /etc
    assert '  scripts = "/usr/share/luahost/scripts",\n' in conf
    assert (dest / "usr" / "share" / "luahost" / "scripts" / "app.lua").is_file()
    svc = dict(read_unit(dest / "usr" / "lib" / "systemd" / "system" / "luahost.service")["Service"])
    assert svc["ExecStart"] == "/usr/bin/luahost --config /etc/luahost/luahost.conf"
    assert str(dest) not in conf and str(dest) not in str(svc)


def test_the_installed_binary_checks_and_serves_from_any_directory(stage, tmp_path):
    conf = str(stage / "etc" / "luahost" / "luahost.conf")
    binary = str(stage / "bin" / "luahost")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = host_env("unused", free_port())
    p = subprocess.run([binary, "--config", conf, "check"], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("luahost check: ok: ") and \
        f"(configuration {conf}, scripts {stage}/share/luahost/scripts)" in p.stdout, p.stdout
    db = "lh_test_install_" + os.urandom(5).hex()
    serve_and_log_in([binary, "--config", conf], elsewhere, tmp_path, db)


def test_the_systemd_unit(stage):
    unit = stage / "lib" / "systemd" / "system" / "luahost.service"
    sections = read_unit(unit)
    assert set(sections) == {"Unit", "Service", "Install"}
    svc = sections["Service"]
    keys = dict(svc)
    binary, conf = stage / "bin" / "luahost", stage / "etc" / "luahost" / "luahost.conf"
    assert keys["ExecStart"] == f"{binary} --config {conf}"
    reload_ = [v for k, v in svc if k == "ExecReload"]
    assert reload_ == [f"{binary} --config {conf} check", "/bin/kill -HUP $MAINPID"]
    assert keys["User"] == "luahost" and keys["Group"] == "luahost"
    assert keys["NoNewPrivileges"] == "yes" and keys["ProtectSystem"] == "strict"
    assert keys["ProtectHome"] == "yes" and keys["PrivateTmp"] == "yes"
    assert keys["CapabilityBoundingSet"] == ""
    assert keys["EnvironmentFile"] == f"-{stage}/etc/luahost/luahost.env"
    assert dict(sections["Install"])["WantedBy"] == "multi-user.target"
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (scripts/lib.sh installs systemd)")
    # verify reports unknown keys and commands that are not executable; with no systemd running
    # it still checks the file offline.
    p = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stdout + p.stderr


def dpkg_installed(name):
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return p.returncode == 0 and "install ok installed" in p.stdout


def dpkg_known(name):
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return p.returncode == 0 and "not-installed" not in p.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i needs root")
@pytest.mark.skipif(not shutil.which("dpkg-shlibdeps"), reason="needs dpkg-dev (dpkg-shlibdeps)")
def test_the_deb_installs_serves_and_goes(stage, tmp_path):
    if dpkg_known("luahost"):
        pytest.skip("a luahost package is already on this machine: not replacing it")
    out = tmp_path / "cpack"
    run("cpack", "-G", "DEB", "-B", str(out), "--config", os.path.join(BUILD, "CPackConfig.cmake"))
    debs = list(out.glob("luahost_*.deb"))
    assert len(debs) == 1, list(out.iterdir())
    deb = str(debs[0])
    info = run("dpkg-deb", "-f", deb, "Depends").stdout
    for lib in ("libluajit2-5.1-2", "libuv1", "libmongoc-1.0-0", "libsodium23", "libicu72"):
        assert lib in info, info
    files = run("dpkg-deb", "-c", deb).stdout
    assert "./usr/bin/luahost\n" in files and "luahost-test" not in files
    # Debian leaves a package's system user after a purge; the test leaves the machine as it found
    # it, so that each run proves the postinst creates the user.
    user_existed = subprocess.run(["getent", "passwd", "luahost"], capture_output=True).returncode == 0
    try:
        run("dpkg", "-i", deb)
        assert dpkg_installed("luahost")
        assert os.access("/usr/bin/luahost", os.X_OK)
        # Stripped, and with no path into the source tree (host/lua is embedded). A sanitizer
        # build (never a release) carries its sources' paths in the sanitizers' own metadata.
        if not SANITIZED:
            with open("/usr/bin/luahost", "rb") as f:
                assert ROOT.encode() not in f.read()
        conf = open("/etc/luahost/luahost.conf").read()
        assert '  scripts = "/usr/share/luahost/scripts",\n' in conf
        assert os.path.isfile("/usr/share/luahost/scripts/routes/users.lua")
        unit = read_unit("/usr/lib/systemd/system/luahost.service")
        assert dict(unit["Service"])["ExecStart"] == \
            "/usr/bin/luahost --config /etc/luahost/luahost.conf"
        # postinst: the system user, and a secret only root can read.
        run("getent", "passwd", "luahost")
        st = os.stat("/etc/luahost/luahost.env")
        assert st.st_uid == 0 and st.st_mode & 0o077 == 0, oct(st.st_mode)
        assert re.search(r"^LUAHOST_JWT_SECRET=[0-9a-f]{64}$",
                         open("/etc/luahost/luahost.env").read(), re.M)
        conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "luahost").stdout
        assert "/etc/luahost/luahost.conf" in conffiles, conffiles
        # As the unit runs it: the service user, the installed configuration, from /.
        as_user = ["setpriv", "--reuid=luahost", "--regid=luahost", "--init-groups"]
        db = "lh_test_deb_" + os.urandom(5).hex()
        serve_and_log_in(as_user + ["/usr/bin/luahost", "--config", "/etc/luahost/luahost.conf"],
                         "/", tmp_path, db)

        run("dpkg", "-r", "luahost")
        assert not os.path.exists("/usr/bin/luahost")
        assert not os.path.exists("/usr/share/luahost")
        assert os.path.exists("/etc/luahost/luahost.conf")  # a conffile stays until purge
        run("dpkg", "-P", "luahost")
        assert not os.path.exists("/etc/luahost")
        assert not dpkg_known("luahost")
    finally:
        if dpkg_known("luahost"):
            subprocess.run(["dpkg", "-P", "luahost"], capture_output=True, timeout=120)
        if not user_existed:
            subprocess.run(["userdel", "luahost"], capture_output=True, timeout=60)
