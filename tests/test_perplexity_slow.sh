#!/usr/bin/env bash
# test_perplexity_slow.sh — `ggx perplexity` on the held-out text: mean_nll within 1e-3 of the
# transformers stream value 3.8494 (f32 and bf16 files, different --ctx chunkings), and the
# --kl-base report (q8_0 vs f32: small positive KL, high top-1 agreement; a model against
# itself: KL 0, agreement 1). Bad input fails with a message.
set -u
BIN=${GGX_BIN:?}
DATA=${GGX_TEST_DATA:?}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
test_tmpdir T ggx-perplexity
VAL="$DATA/xlstm-tiny/reference/val.txt"
"$BIN" convert "$DATA/xlstm-tiny" -o "$T/f32.ggx" --type f32 --quiet || { echo "convert failed"; exit 1; }
"$BIN" convert "$DATA/xlstm-tiny" -o "$T/bf16.ggx" --type bf16 --quiet || { echo "convert failed"; exit 1; }

val() { sed -n "s/^$1 = //p" "$2" | tail -1; }
within() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }

for spec in "f32 512" "bf16 333"; do
  set -- $spec
  "$BIN" perplexity -m "$T/$1.ggx" -f "$VAL" --ctx $2 -t 2 --quiet > "$T/out.txt" 2>&1 || bad "$1: run failed: $(cat "$T/out.txt")"
  last=$(tail -1 "$T/out.txt")
  nll=$(val mean_nll "$T/out.txt")
  echo "$1 --ctx $2: $last"
  case "$last" in mean_nll*) ok ;; *) bad "$1: last line is '$last'" ;; esac
  [ -n "$nll" ] && within "$nll" 3.8494 1e-3 && ok || bad "$1: mean_nll $nll not within 1e-3 of 3.8494"
done

if "$BIN" convert "$DATA/xlstm-tiny" -o "$T/q8.ggx" --type q8_0 --quiet 2>/dev/null; then
  "$BIN" perplexity -m "$T/q8.ggx" -f "$VAL" --kl-base "$T/f32.ggx" --quiet > "$T/kl.txt" 2>&1 || bad "kl run: $(cat "$T/kl.txt")"
  tail -4 "$T/kl.txt"
  [ "$(tail -3 "$T/kl.txt" | head -1 | cut -d' ' -f1)" = mean_kl ] && ok || bad "kl: line order"
  [ "$(tail -1 "$T/kl.txt" | cut -d' ' -f1)" = top1_agree ] && ok || bad "kl: last line"
  kl=$(val mean_kl "$T/kl.txt"); p99=$(val p99_kl "$T/kl.txt"); ag=$(val top1_agree "$T/kl.txt")
  awk -v k="$kl" -v p="$p99" -v a="$ag" 'BEGIN { exit !(k > 0 && k < 0.05 && p >= k && a > 0.9 && a <= 1) }' && ok || bad "q8_0 vs f32: kl $kl p99 $p99 agree $ag"
else
  echo "q8_0 conversion not available; skipping the quantized KL check"
fi
head -c 20000 "$VAL" > "$T/short.txt"
"$BIN" perplexity -m "$T/bf16.ggx" -f "$T/short.txt" --kl-base "$T/bf16.ggx" --quiet > "$T/self.txt" 2>&1 || bad "self kl run"
[ "$(val mean_kl "$T/self.txt")" = 0 ] && [ "$(val top1_agree "$T/self.txt")" = 1.000000 ] && ok || bad "self KL: $(tail -3 "$T/self.txt")"

# bad input
printf 'a' > "$T/one.txt"
msg=$("$BIN" perplexity -m "$T/f32.ggx" -f "$T/one.txt" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$msg" | grep -q "need at least 2" && ok || bad "1-token text: rc=$rc $msg"
msg=$("$BIN" perplexity -m "$T/f32.ggx" -f "$T/missing.txt" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$msg" | grep -q "missing.txt" && ok || bad "missing text: rc=$rc $msg"
msg=$("$BIN" perplexity -f "$VAL" 2>&1); rc=$?
[ $rc -eq 2 ] && ok || bad "no -m: rc=$rc"

test_finish test_perplexity_slow
