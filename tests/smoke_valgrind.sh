#!/usr/bin/env bash
# A smoke run of the test host (build/luahost-test: the real host plus luahost.test, for /block)
# under valgrind: start it with the runtime fixture scripts, exercise parsing, Lua routes, the
# scheduler, errors and the budget over HTTP, reload it twice (POST /admin/reload, SIGHUP: new
# generations built on the reload thread, the old ones retired), stop it with SIGTERM, and fail on
# any memory error or definite leak.
set -euo pipefail
binary="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
aport=$(free_port)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
LUAHOST_CONFIG="$root/tests/fixtures/empty.conf" LUAHOST_SCRIPTS="$root/tests/fixtures/runtime" \
LUAHOST_LISTEN="127.0.0.1:$port" LUAHOST_ADMIN_LISTEN="127.0.0.1:$aport" LUAHOST_WORKERS=2 LUAHOST_DEV=1 LUAHOST_SCRIPT_BUDGET_MS=300 \
LUAHOST_TEST_POOL_THREADS=2 LUAHOST_TEST_POOL_QUEUE=2 LUAHOST_MONGODB_URI="mongodb://127.0.0.1:1" \
LUAHOST_DB_TIMEOUT_MS=200 LUAHOST_LOG_LEVEL=warn \
  valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
  --suppressions="$root/tests/valgrind.supp" "$binary" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
fail=0
check() { # expected-status path [curl args]
  local want="$1" path="$2"
  shift 2
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' "$@" "http://127.0.0.1:${at:-$port}$path" || true)
  if [[ "$got" != "$want" ]]; then echo "smoke: $path gave $got, expected $want" >&2; fail=1; fi
}
check 200 /healthz
check 200 /hello
check 200 "/query?limit=3"
check 422 "/query?limit=0"
check 201 /json -H 'Content-Type: application/json' --data '{"name":"x"}'
check 422 /json -H 'Content-Type: application/json' --data '{"name":"x","name":"y"}'
check 200 /sleep/20
check 200 /block/20
check 500 /boom
check 500 /loop
check 404 /nope
at=$aport check 200 /metrics
at=$aport check 200 /admin/reload -X POST --max-time 120
kill -HUP $pid
for _ in $(seq 1 150); do
  curl -s "http://127.0.0.1:$aport/admin/reload" | grep -q '"ok":2' && break
  sleep 0.2
done
curl -s "http://127.0.0.1:$aport/admin/reload" | grep -q '"ok":2' ||
  { echo "smoke: SIGHUP did not reload" >&2; fail=1; }
check 200 /hello
check 200 /openapi.json
check 200 /docs
check 200 /docs/swagger-ui.css
check 404 /docs/..%2fconfig%2fluahost.conf
printf 'GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' |
  python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",'"$port"')); s.sendall(sys.stdin.buffer.read()); [None for _ in iter(lambda: s.recv(4096), b"")]'
kill -TERM $pid
code=0
wait $pid || code=$?
if [[ $code -ne 0 ]]; then
  echo "smoke: luahost under valgrind exited with $code" >&2
  cat "$log" >&2
  fail=1
fi
if grep -q "definitely lost\|Invalid read\|Invalid write\|uninitialised" "$log"; then
  cat "$log" >&2
  fail=1
fi
[[ $fail -eq 0 ]] && echo "smoke: 1 passed, 0 failed" || echo "smoke: 0 passed, 1 failed"
exit $fail
