#!/usr/bin/env bash
# test_inspect.sh — `ggx inspect` on a converted fixture: metadata, tensor table, totals, JSON,
# --verify on a good file, on a flipped data byte (exit 1 naming the tensor), on a flipped header
# byte and on a truncated file.
set -u
: "${GGX_BIN:?}" "${GGX_TEST_DATA:?}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
test_tmpdir T ggx-inspect

"$GGX_BIN" convert "$GGX_TEST_DATA/xlstm-tiny" -o "$T/t.ggx" --type f32 --quiet >"$T/conv.out" 2>&1
check_cmd "convert --quiet exit 0" test $? -eq 0
check_cmd "convert --quiet prints nothing" test ! -s "$T/conv.out"

"$GGX_BIN" inspect "$T/t.ggx" >"$T/out" 2>"$T/err"
check_cmd "inspect exit 0" test $? -eq 0
check_cmd "arch" grep -q 'general.architecture *string *"xlstm"' "$T/out"
check_cmd "num_blocks" grep -qE 'xlstm.num_blocks +u32 +3$' "$T/out"
check_cmd "ffn_dim" grep -qE 'xlstm.ffn_dim +u32 +704$' "$T/out"
check_cmd "qk_head_dim" grep -qE 'xlstm.qk_head_dim +u32 +32$' "$T/out"
check_cmd "blob summarized" grep -qE 'tokenizer.json +blob +<118689 bytes>' "$T/out"
check_cmd "lm_head row" grep -qE 'lm_head.weight +f32 +\[2048, 256\] +2097152' "$T/out"
check_cmd "gate row" grep -qE 'blocks.2.mlstm_layer.fgate_preact.bias +f32 +\[4\] +16' "$T/out"
check_cmd "totals" grep -qE '^  total +48 +3465752' "$T/out"
check_cmd "long lines summarized" test "$(awk '{ if (length($0) > m) m = length($0) } END { print m }' "$T/out")" -lt 300

"$GGX_BIN" inspect "$T/t.ggx" --verify >"$T/out" 2>"$T/err"
check_cmd "verify exit 0" test $? -eq 0
check_cmd "verify message" grep -q 'all 48 tensor checksums OK' "$T/out"

"$GGX_BIN" inspect "$T/t.ggx" --json --verify >"$T/json" 2>"$T/err"
check_cmd "json exit 0" test $? -eq 0
check_cmd "json num_blocks" grep -qE '"xlstm.num_blocks":[[:space:]]*3' "$T/json"
check_cmd "json tensor" grep -qE '"name":[[:space:]]*"backbone.embeddings.weight"' "$T/json"
check_cmd "json verified" grep -qE '"verified":[[:space:]]*true' "$T/json"

# flip one byte in the middle of lm_head.weight's data
off=$("$GGX_BIN" inspect "$T/t.ggx" | awk '$2 == "lm_head.weight" { print $7 }')
check_cmd "found lm_head offset" test -n "$off"
cp "$T/t.ggx" "$T/flip.ggx"
pos=$((off + 1000))
orig=$(od -An -tu1 -j "$pos" -N1 "$T/flip.ggx" | tr -d ' ')
printf "$(printf '\\%03o' $(((orig + 1) % 256)))" | dd of="$T/flip.ggx" bs=1 seek="$pos" conv=notrunc status=none
"$GGX_BIN" inspect "$T/flip.ggx" --quiet
check_cmd "flipped data: plain inspect still opens" test $? -eq 0
"$GGX_BIN" inspect "$T/flip.ggx" --verify >"$T/out" 2>"$T/err"
check_cmd "flipped data: verify exit 1" test $? -eq 1
check_cmd "flipped data: names the tensor" grep -q "tensor 'lm_head.weight'" "$T/err"
check_cmd "flipped data: says CRC" grep -q 'CRC32' "$T/err"
check_cmd "flipped data: error prefix" grep -q '^ggx inspect: ' "$T/err"

# flip a header byte (file_size field): the header CRC catches it at open
cp "$T/t.ggx" "$T/hdr.ggx"
printf '\377' | dd of="$T/hdr.ggx" bs=1 seek=20 conv=notrunc status=none
"$GGX_BIN" inspect "$T/hdr.ggx" >"$T/out" 2>"$T/err"
check_cmd "flipped header: exit 1" test $? -eq 1
check_cmd "flipped header: CRC message" grep -q 'header: CRC32' "$T/err"

# truncated in the data section and inside the tensor table
size=$(stat -c %s "$T/t.ggx")
head -c $((size - 100)) "$T/t.ggx" >"$T/cut.ggx"
"$GGX_BIN" inspect "$T/cut.ggx" >"$T/out" 2>"$T/err"
check_cmd "truncated: exit 1" test $? -eq 1
check_cmd "truncated: names the section" grep -q 'data section .*extends past the end of the file' "$T/err"
head -c 100000 "$T/t.ggx" >"$T/cut2.ggx"
"$GGX_BIN" inspect "$T/cut2.ggx" >"$T/out" 2>"$T/err"
check_cmd "truncated in metadata: exit 1" test $? -eq 1
check_cmd "truncated in metadata: message" grep -qE '(kv section|tensor table) .*extends past the end' "$T/err"

# usage
"$GGX_BIN" inspect >/dev/null 2>&1
check_cmd "no args: exit 2" test $? -eq 2
"$GGX_BIN" inspect --bogus "$T/t.ggx" >/dev/null 2>&1
check_cmd "unknown option: exit 2" test $? -eq 2
"$GGX_BIN" inspect --help >"$T/out" 2>&1
check_cmd "help: exit 0" test $? -eq 0
check_cmd "help text" grep -q 'usage: ggx inspect' "$T/out"
"$GGX_BIN" inspect "$T/nonexistent.ggx" >/dev/null 2>"$T/err"
check_cmd "missing file: exit 1" test $? -eq 1
check_cmd "missing file: message" grep -q 'cannot open' "$T/err"

test_finish test_inspect
