#!/usr/bin/env bash
# bench_curl.sh — serving throughput and latency vs concurrency with curl only (for machines
# without Node, e.g. the GPU machine). Same workload as bench.sh's non-streaming rows: 2*C
# requests (at least 8) per concurrency C, greedy, every request exactly MAX_TOKENS
# (ignore_eos), C in flight at a time (xargs -P), distinct prompts.
#
#   tests/serve/bench_curl.sh [BUILD_DIR] [MODEL] [CONCURRENCIES] [MAX_TOKENS]
#   MODEL_ARGS="--synthetic tests/data/configs/xlstm-7b/config.json --type q4_0" \
#     TOKENIZER=tests/data/tokenizers/gpt-neox-20b/tokenizer.json BACKEND=cuda \
#     tests/serve/bench_curl.sh build "" "1 8 32 64" 64
#
# Prints a markdown table: generated tok/s (all requests' tokens / wall time), requests/s,
# latency p50 / p95 (curl's time_total per request).
set -euo pipefail
build=${1:-build}
model=${2:-$build/models/default.ggx}
concs=${3:-"1 8 32 64"}
maxt=${4:-64}
threads=${THREADS:-2}
read -r -a margs <<<"${MODEL_ARGS:-}"
[ ${#margs[@]} -eq 0 ] && margs=(-m "$model")
serve_extra=(); [ -n "${TOKENIZER:-}" ] && serve_extra=(--tokenizer "$TOKENIZER")
maxc=0; for c in $concs; do [ "$c" -gt "$maxc" ] && maxc=$c; done
port=${PORT:-18431}
"$build/ggx" serve "${margs[@]}" "${serve_extra[@]}" --backend "${BACKEND:-cpu}" --port "$port" \
    --parallel "$maxc" --max-queue 1024 -t "$threads" --quiet &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
url="http://127.0.0.1:$port"
up=0
for _ in $(seq 1 1200); do
    kill -0 $pid 2>/dev/null || break
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && { up=1; break; }
    sleep 0.1
done
[ $up = 1 ] || { echo "bench_curl: the server did not come up" >&2; exit 1; }
tmp=$(mktemp -d)
one() { # $1 = request index: prints "http_code time_total completion_tokens"
    local body out
    body=$(printf '{"prompt": "Request %d: once upon a time in a land far away,", "max_tokens": %d, "temperature": 0, "ignore_eos": true}' "$1" "$maxt")
    out=$(curl -s -o "$tmp/r$1" -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' \
        -d "$body" "$url/v1/completions")
    echo "$out $(grep -o '"completion_tokens": *[0-9]*' "$tmp/r$1" | grep -o '[0-9]*$' || echo 0)"
}
export -f one
export url maxt tmp
seq 1 4 | xargs -P 2 -I{} bash -c 'one {}' >/dev/null # warm-up (captures the decode graphs)
echo "| concurrency | requests | ok | gen tok/s | req/s | latency p50 / p95 (ms) |"
echo "|---|---|---|---|---|---|"
for c in $concs; do
    n=$((2 * c)); [ $n -lt 8 ] && n=8
    t0=$(date +%s.%N)
    seq 1 "$n" | xargs -P "$c" -I{} bash -c 'one {}' >"$tmp/res"
    t1=$(date +%s.%N)
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    ok=$(awk '$1 == 200' "$tmp/res" | wc -l)
    tok=$(awk '{ s += $3 } END { print s + 0 }' "$tmp/res")
    awk '{ printf "%.0f\n", $2 * 1000 }' "$tmp/res" | sort -n >"$tmp/lat"
    p50=$(sed -n "$(( (n + 1) / 2 ))p" "$tmp/lat")
    p95=$(sed -n "$(( (n * 95 + 99) / 100 ))p" "$tmp/lat")
    awk -v c="$c" -v n="$n" -v ok="$ok" -v tok="$tok" -v dt="$dt" -v p50="$p50" -v p95="$p95" \
        'BEGIN { printf "| %d | %d | %d | %.1f | %.2f | %s / %s |\n", c, n, ok, tok / dt, n / dt, p50, p95 }' 
done
echo
curl -s "$url/metrics" | grep -E '^ggx_(tokens_per_second|eval_tokens_per_second|scheduler_steps_total|generated_tokens_total) ' || true
rm -rf "$tmp"
