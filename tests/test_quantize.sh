#!/usr/bin/env bash
# test_quantize.sh — `ggx quantize` end to end on the tiny model: --list-types, --dry-run writes
# nothing, q8_0/q4_0/q4_x from f32 and bf16 sources (types per the policy, metadata copied,
# general.file_type updated, CRCs verify), requantization refused without --allow-requantize,
# --tensor-type overrides, and usage errors (exit 2, message on stderr, no output file).
set -u
BIN=${GGX_BIN:?}
DATA=${GGX_TEST_DATA:?}
command -v python3 >/dev/null || { echo "python3 missing"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$1"; fi; }

"$BIN" convert "$DATA/xlstm-tiny" -o "$T/f32.ggx" --type f32 --quiet || { echo "convert failed"; exit 1; }
"$BIN" convert "$DATA/xlstm-tiny" -o "$T/bf16.ggx" --type bf16 --quiet || { echo "convert failed"; exit 1; }

# json summary of a file: file_type, then "name type" per tensor
summ() { "$BIN" inspect "$1" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("file_type", d["metadata"].get("general.file_type"))
print("n_meta", len(d["metadata"]))
for t in d["tensors"]: print(t["name"], t["type"])'; }

# --list-types: NAME BITS description, q4_x <= 5 bits
"$BIN" quantize --list-types > "$T/types.txt"; check '[ $? -eq 0 ]'
check 'grep -Eq "^q8_0 8\.50 " "$T/types.txt"'
check 'grep -Eq "^q4_0 4\.50 " "$T/types.txt"'
check 'awk "\$1==\"q4_x\" && \$2 <= 5.0 {f=1} END {exit !f}" "$T/types.txt"'
check '[ $(wc -l < "$T/types.txt") -eq 6 ]'
"$BIN" quantize --help | grep -q "examples:"; check '[ $? -eq 0 ]'

# --dry-run: plan printed, nothing written
"$BIN" quantize "$T/f32.ggx" "$T/dry.ggx" --type q4_x --dry-run > "$T/plan.txt"; check '[ $? -eq 0 ]'
check '[ ! -e "$T/dry.ggx" ]'
check 'grep -Eq "mlstm_layer\.igate_preact\.weight .* f32 +-> f32 .*gate" "$T/plan.txt"'
check 'grep -Eq "ffn\.proj_down\.weight .* f32 +-> q4_x" "$T/plan.txt"'
check 'grep -Eq "embeddings\.weight .* f32 +-> q8_0 .*embedding" "$T/plan.txt"'
check 'grep -Eq "^total|^  total" "$T/plan.txt"'

for src in f32 bf16; do
  for ty in q8_0 q4_0 q4_x; do
    out="$T/$src-$ty.ggx"
    "$BIN" quantize "$T/$src.ggx" "$out" --type $ty -t 2 --quiet; check '[ $? -eq 0 ]'
    "$BIN" inspect "$out" --verify --quiet; check '[ $? -eq 0 ]'
    summ "$out" > "$T/s.txt"
    check 'grep -q "^file_type $ty$" "$T/s.txt"'
    check 'grep -q "^backbone.blocks.1.mlstm_layer.q.weight $ty$" "$T/s.txt"'
    check 'grep -q "^backbone.blocks.2.ffn.proj_down.weight $ty$" "$T/s.txt"'
    check 'grep -q "^backbone.blocks.0.mlstm_layer.fgate_preact.weight f32$" "$T/s.txt"'
    check 'grep -q "^backbone.blocks.0.mlstm_layer.igate_preact.bias f32$" "$T/s.txt"'
    check 'grep -q "^backbone.out_norm.weight f32$" "$T/s.txt"'
    # the policy: embedding and lm_head q8_0 for every quantized base type
    check 'grep -q "^backbone.embeddings.weight q8_0$" "$T/s.txt"'
    check 'grep -q "^lm_head.weight q8_0$" "$T/s.txt"'
    # every metadata key is copied (file_type replaced, not duplicated)
    summ "$T/$src.ggx" | grep n_meta > "$T/m0.txt"; grep n_meta "$T/s.txt" > "$T/m1.txt"
    check 'cmp -s "$T/m0.txt" "$T/m1.txt"'
  done
done
# the output does not depend on the thread count
"$BIN" quantize "$T/bf16.ggx" "$T/t1.ggx" --type q4_x -t 1 --quiet; check '[ $? -eq 0 ]'
"$BIN" quantize "$T/bf16.ggx" "$T/t3.ggx" --type q4_x -t 3 --quiet; check '[ $? -eq 0 ]'
check 'cmp -s "$T/t1.ggx" "$T/t3.ggx" && cmp -s "$T/t1.ggx" "$T/bf16-q4_x.ggx"'
# 4-bit files are about a third of f32 or smaller
check '[ $(stat -c %s "$T/f32-q4_x.ggx") -lt $(( $(stat -c %s "$T/f32.ggx") / 4 )) ]'

# requantizing is refused without --allow-requantize (and nothing is written)
"$BIN" quantize "$T/f32-q8_0.ggx" "$T/rq.ggx" --type q4_0 --quiet 2> "$T/err.txt"; rc=$?
check '[ $rc -eq 2 ]'
check 'grep -q "already q8_0" "$T/err.txt" && grep -q "allow-requantize" "$T/err.txt"'
check '[ ! -e "$T/rq.ggx" ]'
"$BIN" quantize "$T/f32-q8_0.ggx" "$T/rq.ggx" --type q4_0 --allow-requantize --quiet; check '[ $? -eq 0 ]'
check 'summ "$T/rq.ggx" | grep -q "^backbone.blocks.0.ffn.proj_up.weight q4_0$"'
# same type: copied, no requantization needed
"$BIN" quantize "$T/f32-q8_0.ggx" "$T/same.ggx" --type q8_0 --quiet; check '[ $? -eq 0 ]'

# --tensor-type overrides (first match wins)
"$BIN" quantize "$T/f32.ggx" "$T/ov.ggx" --type q4_0 --tensor-type 'proj_down=q8_0' \
  --tensor-type 'blocks\.[12]\..*proj_down=f16' --tensor-type '^lm_head=q4_x' --quiet; check '[ $? -eq 0 ]'
summ "$T/ov.ggx" > "$T/s.txt"
check 'grep -q "^backbone.blocks.2.ffn.proj_down.weight q8_0$" "$T/s.txt"'
check 'grep -q "^lm_head.weight q4_x$" "$T/s.txt"'
check 'grep -q "^backbone.blocks.0.ffn.proj_up.weight q4_0$" "$T/s.txt"'

# usage errors: exit 2, a message naming the problem, no output
"$BIN" quantize "$T/f32.ggx" "$T/e.ggx" --type q3_k 2> "$T/err.txt"; check '[ $? -eq 2 ] && grep -q "unknown --type" "$T/err.txt"'
"$BIN" quantize "$T/f32.ggx" "$T/e.ggx" --type q4_0 --tensor-type 'igate=q4_0' 2> "$T/err.txt"
check '[ $? -eq 2 ] && grep -q "igate_preact.weight" "$T/err.txt" && grep -q "stay f32" "$T/err.txt"'
"$BIN" quantize "$T/f32.ggx" "$T/e.ggx" --type q4_0 --tensor-type '(unclosed=q8_0' 2> "$T/err.txt"
check '[ $? -eq 2 ] && grep -q "bad regex" "$T/err.txt"'
"$BIN" quantize "$T/f32.ggx" "$T/e.ggx" --type q4_0 --tensor-type 'noequals' 2> "$T/err.txt"
check '[ $? -eq 2 ] && grep -q "REGEX=TYPE" "$T/err.txt"'
"$BIN" quantize "$T/f32.ggx" "$T/f32.ggx" --type q4_0 2> "$T/err.txt"; check '[ $? -eq 2 ]'
"$BIN" quantize "$T/f32.ggx" --type q4_0 2> /dev/null; check '[ $? -eq 2 ]'
"$BIN" quantize "$T/f32.ggx" "$T/e.ggx" --type q4_0 -t 0 2> /dev/null; check '[ $? -eq 2 ]'
check '[ ! -e "$T/e.ggx" ]'
# runtime errors: exit 1
"$BIN" quantize "$T/missing.ggx" "$T/e.ggx" --type q4_0 2> "$T/err.txt"; check '[ $? -eq 1 ] && [ -s "$T/err.txt" ]'
head -c 5000 "$T/f32.ggx" > "$T/trunc.ggx"
"$BIN" quantize "$T/trunc.ggx" "$T/e.ggx" --type q4_0 2> "$T/err.txt"; check '[ $? -eq 1 ] && [ -s "$T/err.txt" ]'
# a corrupted input (one flipped byte in a tensor's data) is refused, naming the tensor
off=$("$BIN" inspect "$T/f32.ggx" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
t = [t for t in d["tensors"] if t["name"] == "backbone.blocks.1.ffn.proj_up.weight"][0]
print(t["offset"] + 1000)')
cp "$T/f32.ggx" "$T/bad.ggx"
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); o = int(sys.argv[2]); f.seek(o); b = f.read(1); f.seek(o); f.write(bytes([b[0] ^ 0x10]))' "$T/bad.ggx" "$off"
"$BIN" quantize "$T/bad.ggx" "$T/e.ggx" --type q4_0 --quiet 2> "$T/err.txt"; rc=$?
check '[ $rc -eq 1 ] && grep -q "blocks.1.ffn.proj_up.weight" "$T/err.txt" && grep -q "checksum" "$T/err.txt"'
check '[ ! -e "$T/e.ggx" ] && [ -z "$(ls "$T" | grep -v "\.ggx$\|\.txt$")" ]'

echo "test_quantize: $pass passed, $fail failed"
[ $fail -eq 0 ]
