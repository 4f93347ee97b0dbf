#!/usr/bin/env bash
# bench_cache.sh — what the prefix-state cache saves: chat requests sharing one long system
# message, time to first token with the cache off and on (docs/benchmarks.md "Serving").
#   tests/serve/bench_cache.sh [BUILD_DIR] [MODEL] [SYSTEM_WORDS] [CONCURRENCY]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
model=${2:-$build/models/default.ggx}
words=${3:-1500}
conc=${4:-4}
threads=${THREADS:-1}
for mb in 0 256; do
    port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
    "$build/ggx" serve -m "$model" --port "$port" --parallel "$conc" -t "$threads" --prefix-cache-mb $mb --quiet &
    pid=$!
    for _ in $(seq 1 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break; sleep 0.1
    done
    url="http://127.0.0.1:$port"
    # one request first (fills the cache when on), then the measured ones
    node "$here/load.mjs" --url "$url" --chat --system-words "$words" --requests 1 --max-tokens 1 >/dev/null
    r=$(node "$here/load.mjs" --url "$url" --chat --system-words "$words" --concurrency "$conc" \
        --requests $((4 * conc)) --prompts 16 --max-tokens 16 --ignore-eos --stream)
    pt=$(curl -s "$url/metrics" | awk '$1 == "ggx_prompt_tokens_total" {print $2}')
    saved=$(curl -s "$url/metrics" | awk '$1 == "ggx_prefix_cache_tokens_saved_total" {print $2}')
    echo "cache ${mb} MB: $(echo "$r" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);
      console.log(`ok ${o.ok}/${o.requests}, TTFT p50 ${o.ttft_ms.p50} ms p95 ${o.ttft_ms.p95} ms, latency p50 ${o.latency_ms.p50} ms, ${o.req_per_s} req/s`)})'), prompt tokens $pt, saved by the cache $saved"
    kill $pid; wait $pid 2>/dev/null || true
done
