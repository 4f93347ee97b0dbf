#!/usr/bin/env bash
# test_quality_cli_slow.sh — the quality contract through the CLI: `ggx quantize` files scored by
# `ggx perplexity --kl-base f32.ggx` on the first 20,000 bytes of reference/val.txt (~8k tokens;
# tests/test_quality_slow.c measures the whole text and the greedy continuations). Checks the
# last-line format (mean_nll/mean_kl/p99_kl/top1_agree), f32 vs itself (KL 0, agreement 1), and
# in both the prefill (--ctx 512) and the int8-activation decode path (--ctx 1): q8_0
# |delta mean_nll| <= 0.002 and mean KL <= 0.001, q4_x mean KL <= 0.75 x q4_0's.
set -u
BIN=${GGX_BIN:?}
DATA=${GGX_TEST_DATA:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$1"; fi; }

"$BIN" perplexity --help 2>/dev/null | grep -q -- "--kl-base" || { echo "ggx perplexity has no --kl-base"; exit 77; }
"$BIN" convert "$DATA/xlstm-tiny" -o "$T/f32.ggx" --type f32 --quiet || { echo "convert failed"; exit 1; }
head -c 20000 "$DATA/xlstm-tiny/reference/val.txt" > "$T/text.txt"

# value of "KEY = X" among the last lines of a perplexity run
val() { awk -v k="$1" '$1 == k && $2 == "=" {v = $3} END {print v}' "$2"; }

"$BIN" perplexity -m "$T/f32.ggx" -f "$T/text.txt" --kl-base "$T/f32.ggx" -t 2 > "$T/f32.txt" 2>&1
check '[ $? -eq 0 ]'
tail -4 "$T/f32.txt" | head -1 | grep -q "^mean_nll = "; check '[ $? -eq 0 ]'
check '[ "$(tail -1 "$T/f32.txt" | cut -d" " -f1)" = top1_agree ]'
base=$(val mean_nll "$T/f32.txt")
check 'awk -v x="$(val mean_kl "$T/f32.txt")" "BEGIN {exit !(x < 1e-9)}"'
check 'awk -v x="$(val top1_agree "$T/f32.txt")" "BEGIN {exit !(x == 1)}"'

# --ctx 512: prefill path (dequantized tiles into sgemm, f32 activations);
# --ctx 1: decode path (ggx_cpu_qmatmul: activations quantized to int8 per block of 32)
declare -A KL DN
for ctx in 512 1; do
  "$BIN" perplexity -m "$T/f32.ggx" -f "$T/text.txt" --ctx $ctx -t 2 > "$T/f32-$ctx.txt" 2>&1
  base=$(val mean_nll "$T/f32-$ctx.txt")
  for ty in q8_0 q4_0 q4_x; do
    [ -e "$T/$ty.ggx" ] || { "$BIN" quantize "$T/f32.ggx" "$T/$ty.ggx" --type $ty --quiet; check '[ $? -eq 0 ]'; }
    "$BIN" perplexity -m "$T/$ty.ggx" -f "$T/text.txt" --kl-base "$T/f32.ggx" --ctx $ctx -t 2 > "$T/$ty.txt" 2>&1
    check '[ $? -eq 0 ]'
    KL[$ty]=$(val mean_kl "$T/$ty.txt")
    DN[$ty]=$(awk -v a="$(val mean_nll "$T/$ty.txt")" -v b="$base" 'BEGIN {printf "%+.5f", a - b}')
    echo "ctx $ctx $ty: delta mean_nll ${DN[$ty]}  mean_kl ${KL[$ty]}  p99_kl $(val p99_kl "$T/$ty.txt")  top1_agree $(val top1_agree "$T/$ty.txt")"
  done
  check 'awk -v d="${DN[q8_0]}" "BEGIN {exit !(d <= 0.002 && d >= -0.002)}"'
  check 'awk -v k="${KL[q8_0]}" "BEGIN {exit !(k <= 0.001)}"'
  check 'awk -v x="${KL[q4_x]}" -v y="${KL[q4_0]}" "BEGIN {exit !(x > 0 && x <= 0.75 * y)}"'
  check 'awk -v y="${KL[q4_0]}" "BEGIN {exit !(y > 0 && y < 0.05)}"'
done

echo "test_quality_cli_slow: $pass passed, $fail failed"
[ $fail -eq 0 ]
