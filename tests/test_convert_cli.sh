#!/usr/bin/env bash
# test_convert_cli.sh — `ggx convert` as a user meets it: help, usage errors (exit 2), runtime
# errors (exit 1, "ggx convert: ..." on stderr, nothing at the output path), the summary table,
# and each output type passing `ggx inspect --verify`.
set -u
: "${GGX_BIN:?}" "${GGX_TEST_DATA:?}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
test_tmpdir T ggx-convert-cli
TINY="$GGX_TEST_DATA/xlstm-tiny"

"$GGX_BIN" convert --help >"$T/out" 2>&1
check_cmd "help exit 0" test $? -eq 0
check_cmd "help has examples" grep -q 'examples:' "$T/out"
"$GGX_BIN" convert >/dev/null 2>&1
check_cmd "no args exit 2" test $? -eq 2
"$GGX_BIN" convert "$TINY" >/dev/null 2>&1
check_cmd "no -o exit 2" test $? -eq 2
"$GGX_BIN" convert "$TINY" -o "$T/x.ggx" --type q3_k >/dev/null 2>"$T/err"
check_cmd "bad type exit 2" test $? -eq 2
check_cmd "bad type message" grep -q "unknown --type 'q3_k'" "$T/err"
"$GGX_BIN" convert "$TINY" -o "$T/x.ggx" --frobnicate >/dev/null 2>&1
check_cmd "unknown option exit 2" test $? -eq 2
check_cmd "nothing written on usage errors" test ! -e "$T/x.ggx"

mkdir "$T/empty"
"$GGX_BIN" convert "$T/empty" -o "$T/x.ggx" >"$T/out" 2>"$T/err"
check_cmd "missing config exit 1" test $? -eq 1
check_cmd "missing config message" grep -q '^ggx convert: .*config.json is missing' "$T/err"
check_cmd "missing config: no output" test ! -e "$T/x.ggx"

echo hi >"$T/file"
"$GGX_BIN" convert "$TINY" -o "$T/file/x.ggx" >"$T/out" 2>"$T/err"
check_cmd "unwritable output exit 1" test $? -eq 1
check_cmd "unwritable output message" grep -q 'cannot create the output file' "$T/err"

# a copy of the fixture with one shard missing
mkdir "$T/ck"
cp "$TINY"/*.json "$TINY"/model-0000[13]-of-00003.safetensors "$T/ck/"
"$GGX_BIN" convert "$T/ck" -o "$T/x.ggx" >"$T/out" 2>"$T/err"
check_cmd "missing shard exit 1" test $? -eq 1
check_cmd "missing shard message" grep -q 'model-00002-of-00003.safetensors is missing' "$T/err"
check_cmd "missing shard: no output, no temp" test -z "$(ls "$T" | grep '^x.ggx')"

# an existing output survives a failed conversion
echo precious >"$T/keep.ggx"
"$GGX_BIN" convert "$T/ck" -o "$T/keep.ggx" >/dev/null 2>&1
check_cmd "failed convert keeps existing file" grep -q precious "$T/keep.ggx"

for t in f32 f16 bf16 q8_0 q4_0; do
  "$GGX_BIN" convert "$TINY" -o "$T/m-$t.ggx" --type "$t" >"$T/out" 2>"$T/err"
  check_cmd "convert $t exit 0" test $? -eq 0
  check_cmd "convert $t summary" grep -qE "^  total +48 +3465752" "$T/out"
  check_cmd "convert $t big type row" grep -qE "^  $t +(24|26|48) " "$T/out"
  "$GGX_BIN" inspect "$T/m-$t.ggx" --verify --quiet
  check_cmd "inspect --verify $t" test $? -eq 0
  check_cmd "no temp files left ($t)" test -z "$(ls "$T" | grep 'tmp')"
done
# per-tensor overrides
"$GGX_BIN" convert "$TINY" -o "$T/ov.ggx" --type q4_0 --tensor-type 'proj_down=q8_0' --quiet
check_cmd "override exit 0" test $? -eq 0
"$GGX_BIN" inspect "$T/ov.ggx" >"$T/out"
check_cmd "override applied" grep -qE 'blocks.1.ffn.proj_down.weight +q8_0' "$T/out"
check_cmd "base type elsewhere" grep -qE 'blocks.1.ffn.proj_up.weight +q4_0' "$T/out"
"$GGX_BIN" convert "$TINY" -o "$T/ov2.ggx" --type q4_0 --tensor-type 'norm_ffn=q8_0' >/dev/null 2>"$T/err"
check_cmd "override of an f32 tensor refused" test $? -eq 1
check_cmd "override error names the tensor" grep -q 'norm_ffn' "$T/err"
check_cmd "refused override: no output" test ! -e "$T/ov2.ggx"

# default type = as stored (bf16 for the fixture)
"$GGX_BIN" convert "$TINY" -o "$T/auto.ggx" --quiet
check_cmd "default type exit 0" test $? -eq 0
"$GGX_BIN" inspect "$T/auto.ggx" --no-tensors >"$T/out"
check_cmd "default type is the source's" grep -q 'general.file_type *string *"bf16"' "$T/out"

test_finish test_convert_cli
