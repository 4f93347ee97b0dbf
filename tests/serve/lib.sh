# lib.sh — shared by tests/test_serve*.sh: start `ggx serve` on a free loopback port, wait for
# /health (bounded), always stop it on exit, and count checks.
#
#   source "$GGX_SOURCE_DIR/tests/serve/lib.sh"
#   serve_init test_serve          # skips (77) when there is no model/curl/node or no server
#   serve_start --parallel 4       # sets SERVE_URL, SERVE_PID
#   check "name" test "$a" = "$b"
#   serve_finish                   # prints "test_serve: N passed, M failed", exits
set -u
SERVE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVE_PASS=0
SERVE_FAIL=0
SERVE_PIDS=()
SERVE_TMP=$(mktemp -d)

serve_cleanup() {
    for p in "${SERVE_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${SERVE_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$SERVE_TMP"
}
trap serve_cleanup EXIT

serve_init() {
    SERVE_NAME=$1
    : "${GGX_BIN:?GGX_BIN not set}"
    SERVE_MODEL=${GGX_SERVE_TEST_MODEL:-${GGX_BUILD_DIR:-build}/models/default.ggx}
    for tool in curl node; do
        command -v $tool >/dev/null || { echo "$SERVE_NAME: skipped ($tool not found)"; exit 77; }
    done
    [ -f "$SERVE_MODEL" ] || { echo "$SERVE_NAME: skipped (no model at $SERVE_MODEL)"; exit 77; }
    if "$GGX_BIN" serve --port 0 --bad-option-probe 2>&1 | grep -q "not enabled\|without libmicrohttpd"; then
        echo "$SERVE_NAME: skipped (ggx serve is not enabled in this build)"
        exit 77
    fi
}

serve_free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# serve_start [ggx serve options...]: start a server, wait for /health == 200 (30 s at most).
# A port taken between choosing and binding (tests run in parallel) is retried with another.
serve_start() {
    local port log try
    for try in 1 2 3; do
        port=$(serve_free_port)
        log="$SERVE_TMP/serve.$port.log"
        "$GGX_BIN" serve -m "$SERVE_MODEL" --host 127.0.0.1 --port "$port" -t 1 "$@" >"$log" 2>&1 &
        SERVE_PID=$!
        SERVE_PIDS+=("$SERVE_PID")
        SERVE_URL="http://127.0.0.1:$port"
        SERVE_LOG=$log
        for _ in $(seq 1 300); do
            if [ "$(curl -s -o /dev/null -w '%{http_code}' "$SERVE_URL/health")" = 200 ]; then return 0; fi
            if ! kill -0 "$SERVE_PID" 2>/dev/null; then
                grep -q "cannot listen" "$log" && continue 2
                echo "server exited during startup:"; cat "$log"; return 1
            fi
            sleep 0.1
        done
        echo "server not healthy after 30 s:"; cat "$log"
        return 1
    done
    echo "no free port after 3 tries"; return 1
}

# serve_stop: SIGTERM, then wait (10 s at most) for a clean exit; returns its exit code.
serve_stop() {
    local pid=$SERVE_PID rc
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    wait "$pid"; rc=$?
    return $rc
}

# check NAME CMD...: run CMD, count pass/fail.
check() {
    local name=$1; shift
    if "$@"; then SERVE_PASS=$((SERVE_PASS + 1)); else
        SERVE_FAIL=$((SERVE_FAIL + 1)); echo "FAIL: $name"; fi
}

# check_eq NAME EXPECTED ACTUAL
check_eq() {
    if [ "$2" == "$3" ]; then SERVE_PASS=$((SERVE_PASS + 1)); else
        SERVE_FAIL=$((SERVE_FAIL + 1)); echo "FAIL: $1"; echo "  expected: ${2:0:400}"; echo "  actual:   ${3:0:400}"; fi
}

# jget EXPR < json: print a JS expression over the JSON on stdin (bound to `o`).
jget() { node "$SERVE_DIR/json.js" "$1"; }

# post PATH JSON [curl options]: body on stdout; status in $SERVE_TMP/status
post() {
    local path=$1 body=$2; shift 2
    curl -s -o "$SERVE_TMP/body" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$body" "$@" "$SERVE_URL$path" >"$SERVE_TMP/status"
    cat "$SERVE_TMP/body"
}
last_status() { cat "$SERVE_TMP/status"; }

# metric NAME [curl options]: the value of one Prometheus sample line (exact series text)
metric() { local k=$1; shift; curl -s "$@" "$SERVE_URL/metrics" | awk -v k="$k" '$1 == k { print $2 }'; }

serve_finish() {
    if [ "$SERVE_FAIL" -ne 0 ]; then
        for f in "$SERVE_TMP"/serve.*.log; do echo "--- $f"; tail -n 30 "$f"; done
    fi
    echo "$SERVE_NAME: $SERVE_PASS passed, $SERVE_FAIL failed"
    [ "$SERVE_FAIL" -eq 0 ]
    exit $?
}
