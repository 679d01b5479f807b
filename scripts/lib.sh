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
  dpkg-dev patch systemd  # test_install (cpack's dpkg-shlibdeps, systemd-analyze), the examples' patches
  prometheus # promtool: tests/integration/test_metrics.py checks /metrics with it
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
