# scripts/lib.sh: shared by scripts/run and scripts/test (sourced, not run). Installs what the
# project needs on a fresh Debian 12 machine and builds it. Every step checks before it acts, so a
# second run on a warm machine costs seconds.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"

# Debian packages: the C stack, the Lua test runner, and the tools the tests and benchmarks use.
LH_APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libluajit2-5.1-dev luajit2 libuv1-dev libmongoc-dev libjwt-dev libjansson-dev
  libsodium-dev libcrypt-dev libicu-dev lua-busted
  valgrind wrk nginx libnginx-mod-http-lua python3-venv curl clang-format clang
  libclang-rt-14-dev # the sanitizer and libFuzzer runtimes of scripts/fuzz (a clang Recommends)
  dpkg-dev patch systemd  # test_install (cpack's dpkg-shlibdeps, systemd-analyze), the examples' patches
  prometheus # promtool: tests/integration/test_metrics.py checks /metrics with it
  chromium # tests/integration/test_openapi.py loads /docs in it
)

log() { echo "==> $*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  for p in "${LH_APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    # luajit2 (OpenResty's branch) conflicts with Debian's luajit: never install both.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

# Python for the black-box tests (pytest, and pymongo to look at the database directly).
install_test_venv() {
  local venv="$TOOLS/venv"
  if [[ ! -x "$venv/bin/pytest" ]] || ! "$venv/bin/python" -c "import pymongo" 2>/dev/null; then
    log "creating the test virtualenv in .tools/venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check pytest pymongo
  fi
  # The OpenAPI 3.1 validator that tests/integration/test_openapi.py checks /openapi.json with.
  if ! "$venv/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('openapi-spec-validator') != sys.argv[1])" "$OPENAPI_SPEC_VALIDATOR_VERSION" \
    2>/dev/null; then
    log "installing openapi-spec-validator in .tools/venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION"
  fi
}
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0

# Swagger UI's files for /docs: npm's swagger-ui-dist, pinned by version and by the registry's
# sha512 integrity, unpacked into .tools/swagger-ui-dist (the default of the docs_assets option).
# Only the files the host serves are kept, with the package's licence and package.json.
SWAGGER_UI_VERSION=5.35.0
SWAGGER_UI_INTEGRITY=sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==
SWAGGER_UI_DIR="$TOOLS/swagger-ui-dist"
SWAGGER_UI_FILES=(swagger-ui.css swagger-ui-bundle.js swagger-ui-standalone-preset.js
  favicon-32x32.png LICENSE NOTICE package.json)
install_swagger_ui() {
  if [[ -f "$SWAGGER_UI_DIR/package.json" ]] &&
    grep -q "\"version\": \"$SWAGGER_UI_VERSION\"" "$SWAGGER_UI_DIR/package.json"; then
    return 0
  fi
  # npm comes with the machine's Node (NodeSource's nodejs package bundles it and conflicts with
  # Debian's npm); only a machine without any npm gets Debian's.
  if ! command -v npm >/dev/null; then
    log "installing Debian package: npm"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm \
      >/dev/null
  fi
  log "fetching swagger-ui-dist $SWAGGER_UI_VERSION (npm, integrity-pinned) into ${SWAGGER_UI_DIR#$ROOT/}"
  local tmp got
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" >/dev/null); then
    rm -rf "$tmp"
    log "could not fetch swagger-ui-dist $SWAGGER_UI_VERSION"
    return 1
  fi
  got=$(python3 -c 'import base64, hashlib, sys
print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' \
    "$tmp/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz")
  if [[ "$got" != "$SWAGGER_UI_INTEGRITY" ]]; then
    rm -rf "$tmp"
    log "swagger-ui-dist $SWAGGER_UI_VERSION: integrity mismatch ($got)"
    return 1
  fi
  tar -xzf "$tmp/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz" -C "$tmp"
  rm -rf "$SWAGGER_UI_DIR.part"
  mkdir -p "$SWAGGER_UI_DIR.part"
  local f
  for f in "${SWAGGER_UI_FILES[@]}"; do cp "$tmp/package/$f" "$SWAGGER_UI_DIR.part/"; done
  rm -rf "$tmp" "$SWAGGER_UI_DIR"
  mv "$SWAGGER_UI_DIR.part" "$SWAGGER_UI_DIR"
}

# llhttp's C sources, pinned by version and hash. Debian bookworm's node-llhttp is 8.1, which ends a
# header line at a bare CR (CVE-2023-30589: one request parsed as two). PyPI's llhttp source
# distribution ships the generated C of that release; only its lib/ directory is used.
LLHTTP_VERSION=9.3.0.0
LLHTTP_SHA256=0d989363e7fb6f270b9d49956e7a3945c26778f8c70a166815264309ac6a8295
LLHTTP_DIR="$TOOLS/llhttp-$LLHTTP_VERSION"
install_llhttp() {
  [[ -f "$LLHTTP_DIR/llhttp.h" ]] && return 0
  log "fetching llhttp $LLHTTP_VERSION sources (PyPI sdist, hash-pinned) into ${LLHTTP_DIR#$ROOT/}"
  local tmp
  tmp=$(mktemp -d)
  python3 -m venv "$tmp/venv"
  echo "llhttp==$LLHTTP_VERSION --hash=sha256:$LLHTTP_SHA256" >"$tmp/req.txt"
  if ! "$tmp/venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
    --require-hashes -r "$tmp/req.txt" -d "$tmp/dl"; then
    rm -rf "$tmp"
    log "could not fetch llhttp $LLHTTP_VERSION"
    return 1
  fi
  tar -xzf "$tmp/dl/llhttp-$LLHTTP_VERSION.tar.gz" -C "$tmp"
  mkdir -p "$LLHTTP_DIR.part"
  cp "$tmp/llhttp-$LLHTTP_VERSION"/lib/{llhttp.h,llhttp.c,api.c,http.c} \
    "$tmp/llhttp-$LLHTTP_VERSION/LICENSE" "$LLHTTP_DIR.part/"
  rm -rf "$tmp" "$LLHTTP_DIR"
  mv "$LLHTTP_DIR.part" "$LLHTTP_DIR"
}

# build DIR [cmake args...]
build() {
  local dir="$1"
  shift
  install_llhttp
  if [[ ! -f "$ROOT/$dir/build.ninja" ]]; then
    cmake -S "$ROOT" -B "$ROOT/$dir" -G Ninja "$@" >/dev/null
  fi
  ninja -C "$ROOT/$dir" >&2
}
