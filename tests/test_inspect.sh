#!/usr/bin/env bash
# test_inspect.sh — `ggx inspect` on a converted fixture: metadata, tensor table, totals, JSON,
# --verify on a good file, on a flipped data byte (exit 1 naming the tensor), on a flipped header
# byte and on a truncated file.
set -u
: "${GGX_BIN:?}" "${GGX_TEST_DATA:?}"
T=$(mktemp -d "${TMPDIR:-/tmp}/ggx-inspect.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }

"$GGX_BIN" convert "$GGX_TEST_DATA/xlstm-tiny" -o "$T/t.ggx" --type f32 --quiet >"$T/conv.out" 2>&1
check "convert --quiet exit 0" test $? -eq 0
check "convert --quiet prints nothing" test ! -s "$T/conv.out"

"$GGX_BIN" inspect "$T/t.ggx" >"$T/out" 2>"$T/err"
check "inspect exit 0" test $? -eq 0
check "arch" grep -q 'general.architecture *string *"xlstm"' "$T/out"
check "num_blocks" grep -qE 'xlstm.num_blocks +u32 +3$' "$T/out"
check "ffn_dim" grep -qE 'xlstm.ffn_dim +u32 +704$' "$T/out"
check "qk_head_dim" grep -qE 'xlstm.qk_head_dim +u32 +32$' "$T/out"
check "blob summarized" grep -qE 'tokenizer.json +blob +<118689 bytes>' "$T/out"
check "lm_head row" grep -qE 'lm_head.weight +f32 +\[2048, 256\] +2097152' "$T/out"
check "gate row" grep -qE 'blocks.2.mlstm_layer.fgate_preact.bias +f32 +\[4\] +16' "$T/out"
check "totals" grep -qE '^  total +48 +3465752' "$T/out"
check "long lines summarized" test "$(awk '{ if (length($0) > m) m = length($0) } END { print m }' "$T/out")" -lt 300

"$GGX_BIN" inspect "$T/t.ggx" --verify >"$T/out" 2>"$T/err"
check "verify exit 0" test $? -eq 0
check "verify message" grep -q 'all 48 tensor checksums OK' "$T/out"

"$GGX_BIN" inspect "$T/t.ggx" --json --verify >"$T/json" 2>"$T/err"
check "json exit 0" test $? -eq 0
check "json num_blocks" grep -qE '"xlstm.num_blocks":[[:space:]]*3' "$T/json"
check "json tensor" grep -qE '"name":[[:space:]]*"backbone.embeddings.weight"' "$T/json"
check "json verified" grep -qE '"verified":[[:space:]]*true' "$T/json"

# flip one byte in the middle of lm_head.weight's data
off=$("$GGX_BIN" inspect "$T/t.ggx" | awk '$2 == "lm_head.weight" { print $7 }')
check "found lm_head offset" test -n "$off"
cp "$T/t.ggx" "$T/flip.ggx"
pos=$((off + 1000))
orig=$(od -An -tu1 -j "$pos" -N1 "$T/flip.ggx" | tr -d ' ')
printf "$(printf '\\%03o' $(((orig + 1) % 256)))" | dd of="$T/flip.ggx" bs=1 seek="$pos" conv=notrunc status=none
"$GGX_BIN" inspect "$T/flip.ggx" --quiet
check "flipped data: plain inspect still opens" test $? -eq 0
"$GGX_BIN" inspect "$T/flip.ggx" --verify >"$T/out" 2>"$T/err"
check "flipped data: verify exit 1" test $? -eq 1
check "flipped data: names the tensor" grep -q "tensor 'lm_head.weight'" "$T/err"
check "flipped data: says CRC" grep -q 'CRC32' "$T/err"
check "flipped data: error prefix" grep -q '^ggx inspect: ' "$T/err"

# flip a header byte (file_size field): the header CRC catches it at open
cp "$T/t.ggx" "$T/hdr.ggx"
printf '\377' | dd of="$T/hdr.ggx" bs=1 seek=20 conv=notrunc status=none
"$GGX_BIN" inspect "$T/hdr.ggx" >"$T/out" 2>"$T/err"
check "flipped header: exit 1" test $? -eq 1
check "flipped header: CRC message" grep -q 'header: CRC32' "$T/err"

# truncated in the data section and inside the tensor table
size=$(stat -c %s "$T/t.ggx")
head -c $((size - 100)) "$T/t.ggx" >"$T/cut.ggx"
"$GGX_BIN" inspect "$T/cut.ggx" >"$T/out" 2>"$T/err"
check "truncated: exit 1" test $? -eq 1
check "truncated: names the section" grep -q 'data section .*extends past the end of the file' "$T/err"
head -c 100000 "$T/t.ggx" >"$T/cut2.ggx"
"$GGX_BIN" inspect "$T/cut2.ggx" >"$T/out" 2>"$T/err"
check "truncated in metadata: exit 1" test $? -eq 1
check "truncated in metadata: message" grep -qE '(kv section|tensor table) .*extends past the end' "$T/err"

# usage
"$GGX_BIN" inspect >/dev/null 2>&1
check "no args: exit 2" test $? -eq 2
"$GGX_BIN" inspect --bogus "$T/t.ggx" >/dev/null 2>&1
check "unknown option: exit 2" test $? -eq 2
"$GGX_BIN" inspect --help >"$T/out" 2>&1
check "help: exit 0" test $? -eq 0
check "help text" grep -q 'usage: ggx inspect' "$T/out"
"$GGX_BIN" inspect "$T/nonexistent.ggx" >/dev/null 2>"$T/err"
check "missing file: exit 1" test $? -eq 1
check "missing file: message" grep -q 'cannot open' "$T/err"

echo "test_inspect: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
