#!/usr/bin/env bash
# test_serve_concurrent.sh — 32 concurrent clients (half streaming) against a server with fewer
# slots than clients: every request completes, none is lost, and each greedy output equals the
# output of the same prompt sent by a single client. Then 32 chat requests the same way.
source "${GGX_SOURCE_DIR:?GGX_SOURCE_DIR not set}/tests/serve/lib.sh" || exit 1
serve_init test_serve_concurrent
serve_start --parallel 8 --max-queue 64 || exit 1
L="$SERVE_DIR/load.mjs"

node "$L" --url "$SERVE_URL" --concurrency 1 --requests 8 --prompts 8 --max-tokens 20 --outputs >"$SERVE_TMP/single.json"
node "$L" --url "$SERVE_URL" --concurrency 32 --requests 32 --prompts 8 --max-tokens 20 --mixed --outputs >"$SERVE_TMP/multi.json"
for f in single multi; do
    check "$f: all ok, none lost" node -e '
const o = JSON.parse(require("fs").readFileSync(process.argv[1]));
if (o.ok !== o.requests || o.failed || o.lost) { console.error(JSON.stringify(o).slice(0, 1500)); process.exit(1); }' "$SERVE_TMP/$f.json"
done
check "32 concurrent outputs == single-client outputs" node -e '
const fs = require("fs");
const one = JSON.parse(fs.readFileSync(process.argv[1])).outputs, many = JSON.parse(fs.readFileSync(process.argv[2])).outputs;
if (many.length !== 32) process.exit(1);
let bad = 0;
for (const r of many) { const ref = one[r.prompt];
  if (r.text !== ref.text || r.finish !== ref.finish) { bad++; console.error(`request ${r.i}: ${JSON.stringify(r.text)} != ${JSON.stringify(ref.text)}`); } }
process.exit(bad ? 1 : 0);' "$SERVE_TMP/single.json" "$SERVE_TMP/multi.json"

# chat: same comparison
node "$L" --url "$SERVE_URL" --chat --concurrency 1 --requests 4 --prompts 4 --max-tokens 16 --outputs >"$SERVE_TMP/csingle.json"
node "$L" --url "$SERVE_URL" --chat --concurrency 32 --requests 32 --prompts 4 --max-tokens 16 --mixed --outputs >"$SERVE_TMP/cmulti.json"
check "chat: 32 concurrent outputs == single-client outputs" node -e '
const fs = require("fs");
const a = JSON.parse(fs.readFileSync(process.argv[1])), b = JSON.parse(fs.readFileSync(process.argv[2]));
if (a.ok !== 4 || b.ok !== 32 || b.lost) { console.error(JSON.stringify(b).slice(0, 1500)); process.exit(1); }
let bad = 0; for (const r of b.outputs) if (r.text !== a.outputs[r.prompt].text) bad++;
process.exit(bad ? 1 : 0);' "$SERVE_TMP/csingle.json" "$SERVE_TMP/cmulti.json"

# metrics saw them and the batch drained
check_eq "running batch drained" 0 "$(metric ggx_running_batch_size)"
check_eq "queue drained" 0 "$(metric ggx_queue_depth)"
n200=$(metric 'ggx_requests_total{endpoint="/v1/completions",status="200"}')
check_eq "40 completions counted" 40 "$n200"

# a full queue answers 503 with Retry-After (1 slot, queue 0, a long request holding the slot)
serve_stop
serve_start --parallel 1 --max-queue 0 || exit 1
curl -s "$SERVE_URL/v1/completions" -d '{"prompt": "KING:", "max_tokens": 400, "temperature": 0.9, "ignore_eos": true}' >/dev/null &
bg=$!
for _ in $(seq 1 50); do [ "$(metric ggx_running_batch_size)" = 1 ] && break; sleep 0.05; done
code=$(curl -s -D "$SERVE_TMP/h" -o "$SERVE_TMP/b" -w '%{http_code}' "$SERVE_URL/v1/completions" -d '{"prompt": "QUEEN:", "max_tokens": 4}')
check_eq "full queue -> 503" 503 "$code"
check "503 has Retry-After" grep -qi '^retry-after:' "$SERVE_TMP/h"
check_eq "503 error type" server_busy "$(jget o.error.type <"$SERVE_TMP/b")"
wait $bg
serve_finish
