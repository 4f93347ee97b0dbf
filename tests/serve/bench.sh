#!/usr/bin/env bash
# bench.sh — serving throughput and latency vs concurrency (docs/benchmarks.md "Serving").
#
#   tests/serve/bench.sh [BUILD_DIR] [MODEL] [CONCURRENCIES] [MAX_TOKENS]
#   tests/serve/bench.sh build models/default.ggx "1 8 32 64" 64
#   # the synthetic 7B on the GPU (MODEL_ARGS replaces "-m MODEL" for serve and bench):
#   MODEL_ARGS="--synthetic tests/data/configs/xlstm-7b/config.json --type q4_0" \
#     TOKENIZER=tests/data/tokenizers/gpt-neox-20b/tokenizer.json BACKEND=cuda \
#     tests/serve/bench.sh build "" "1 8 32 64" 64
#
# Starts `ggx serve` (--parallel = the largest concurrency, -t $THREADS, REPS runs per row, best
# printed), runs tests/serve/load.mjs
# with 2*C requests (at least 8) per concurrency C, greedy, every request exactly MAX_TOKENS
# (ignore_eos), non-streaming and streaming, and prints
# a markdown table; then `ggx bench` decode at the same batch sizes (the model-only floor).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
model=${2:-$build/models/default.ggx}
concs=${3:-"1 8 32 64"}
maxt=${4:-64}
threads=${THREADS:-2}
reps=${REPS:-1}  # runs per row; the best (highest gen tok/s) is printed
read -r -a margs <<<"${MODEL_ARGS:-}"
[ ${#margs[@]} -eq 0 ] && margs=(-m "$model")
extra=(--backend "${BACKEND:-cpu}")
serve_extra=(); [ -n "${TOKENIZER:-}" ] && serve_extra=(--tokenizer "$TOKENIZER")
maxc=0; for c in $concs; do [ "$c" -gt "$maxc" ] && maxc=$c; done
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
"$build/ggx" serve "${margs[@]}" "${serve_extra[@]}" "${extra[@]}" --port "$port" --parallel "$maxc" \
    --max-queue 1024 -t "$threads" --quiet &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 1200); do  # (the synthetic 7B takes a while to build)
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break; sleep 0.1
done
url="http://127.0.0.1:$port"
node "$here/load.mjs" --url "$url" --concurrency 2 --requests 4 --max-tokens 8 >/dev/null  # warm-up
echo "| concurrency | mode | requests | ok | gen tok/s | req/s | latency p50 / p95 (ms) | TTFT p50 / p95 (ms) |"
echo "|---|---|---|---|---|---|---|---|"
for c in $concs; do
    n=$((2 * c)); [ $n -lt 8 ] && n=8
    for mode in plain stream; do
        flag=(); [ $mode = stream ] && flag=(--stream)
        for _ in $(seq 1 "$reps"); do
            node "$here/load.mjs" --url "$url" --concurrency "$c" --requests "$n" --prompts 64 \
                --max-tokens "$maxt" --ignore-eos "${flag[@]}"
        done | node -e '
let s = ""; process.stdin.on("data", (d) => (s += d)); process.stdin.on("end", () => {
  const runs = s.trim().split("\n").map((l) => JSON.parse(l));
  const o = runs.reduce((a, b) => (b.gen_tok_per_s > a.gen_tok_per_s ? b : a)); // best run
  const m = process.argv[1];
  console.log(`| ${o.concurrency} | ${m} | ${o.requests} | ${o.ok} | ${o.gen_tok_per_s} | ${o.req_per_s} | ${o.latency_ms.p50} / ${o.latency_ms.p95} | ${o.ttft_ms.p50} / ${o.ttft_ms.p95} |`); });' "$mode"
    done
done
echo
curl -s "$url/metrics" | grep -E '^ggx_(tokens_per_second|eval_tokens_per_second|scheduler_steps_total|generated_tokens_total) '
kill $pid; wait $pid 2>/dev/null || true
trap - EXIT
echo
bs=$(echo $concs | tr ' ' ',')
"$build/ggx" bench "${margs[@]}" "${extra[@]}" -p 0 -n "$maxt" -b "$bs" -t "$threads" -r "$reps" -q
