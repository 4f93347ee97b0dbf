#!/usr/bin/env bash
# test_serve_cli.sh — `ggx serve` options and startup failures: --help, usage errors (exit 2),
# a missing model or a busy port (exit 1, message on stderr), --api-key-file.
source "${GGX_SOURCE_DIR:?GGX_SOURCE_DIR not set}/tests/serve/lib.sh" || exit 1
serve_init test_serve_cli

out=$("$GGX_BIN" serve --help); rc=$?
check_eq "--help exit 0" 0 $rc
check "--help has examples" grep -q "examples:" <<<"$out"
for args in "--synthetic x.json" "--type q9_9" "--port 70000" "--parallel 0" "--bogus" "--port" "--backend tpu" "--api-key a --api-key-file /dev/null" "--max-body x"; do
    # shellcheck disable=SC2086
    err=$("$GGX_BIN" serve -m "$SERVE_MODEL" $args 2>&1 >/dev/null); rc=$?
    check_eq "usage error exit 2: $args" 2 $rc
    check "usage error message names the command: $args" grep -q "^ggx serve: " <<<"$err"
done
err=$(timeout 20 "$GGX_BIN" serve -m "$SERVE_TMP/missing.ggx" --port 0 2>&1); rc=$?
check_eq "missing model: exit 1" 1 $rc
check "missing model: message" grep -q "cannot load" <<<"$err"
: >"$SERVE_TMP/empty.key"
"$GGX_BIN" serve -m "$SERVE_MODEL" --api-key-file "$SERVE_TMP/empty.key" --port 0 2>/dev/null
check_eq "empty key file: exit 2" 2 $?

# while the model loads, /health and generation answer 503: a FIFO as the model blocks the loader
# in open() until a writer comes; then EOF makes the load fail and the server exit 1
mkfifo "$SERVE_TMP/slow.ggx"
port=$(serve_free_port)
"$GGX_BIN" serve -m "$SERVE_TMP/slow.ggx" --port "$port" >"$SERVE_TMP/slow.log" 2>&1 &
spid=$!
SERVE_PIDS+=("$spid")
code=000
for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health"); [ "$code" != 000 ] && break; sleep 0.1
done
check_eq "health while loading: 503" 503 "$code"
check_eq "completion while loading: 503" 503 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/completions" -d '{"prompt": "x"}')"
check_eq "metrics while loading: 200" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics")"
: >"$SERVE_TMP/slow.ggx"   # open for writing and close: the loader reads EOF
wait $spid; rc=$?
check_eq "failed load: exit 1" 1 $rc
check "failed load: message" grep -q "cannot load" "$SERVE_TMP/slow.log"

# --synthetic: random weights of the tiny config's shape, the tiny tokenizer
SERVE_MODEL_SAVE=$SERVE_MODEL
port=$(serve_free_port)
"$GGX_BIN" serve --synthetic "$GGX_TEST_DATA/xlstm-tiny/config.json" --type q8_0 \
    --tokenizer "$GGX_TEST_DATA/xlstm-tiny/tokenizer.json" --port "$port" -t 1 2>"$SERVE_TMP/syn.log" &
SERVE_PID=$!; SERVE_PIDS+=("$SERVE_PID"); SERVE_URL="http://127.0.0.1:$port"
for _ in $(seq 1 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$SERVE_URL/health")" = 200 ] && break; sleep 0.1; done
r=$(post /v1/completions '{"prompt": "ROMEO:", "max_tokens": 6, "temperature": 0, "ignore_eos": true}')
check_eq "synthetic: 200" 200 "$(last_status)"
check_eq "synthetic: 6 tokens" 6 "$(echo "$r" | jget o.usage.completion_tokens)"
check_eq "synthetic: model id" synthetic-q8_0 "$(echo "$r" | jget o.model)"
serve_stop
check_eq "synthetic: clean exit" 0 $?
SERVE_MODEL=$SERVE_MODEL_SAVE

# --api-key-file: the first line, trimmed
printf 'sk-from-file  \nsecond line\n' >"$SERVE_TMP/k"
serve_start --api-key-file "$SERVE_TMP/k" || exit 1
check_eq "key from file accepted" 200 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sk-from-file' "$SERVE_URL/v1/models")"
check_eq "second line is not the key" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer second line' "$SERVE_URL/v1/models")"
# the same port twice: the second server fails cleanly
port=${SERVE_URL##*:}
err=$(timeout 20 "$GGX_BIN" serve -m "$SERVE_MODEL" --port "$port" 2>&1); rc=$?
check_eq "busy port: exit 1" 1 $rc
check "busy port: message" grep -q "cannot listen" <<<"$err"
serve_stop
check_eq "clean exit" 0 $?
serve_finish
