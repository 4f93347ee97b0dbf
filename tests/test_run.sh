#!/usr/bin/env bash
# test_run.sh — `ggx run` end to end on the tiny Shakespeare model:
#   - greedy (--temp 0 --ids-out) equals transformers' greedy ids for the 5 reference prompts
#   - the same seed twice gives the same bytes (and another seed other bytes)
#   - the built-in default model works without -m; GGX_MODEL and -m select another file
#   - stop strings, stdin prompts, -n 0, valid UTF-8 at high temperature, usage errors
set -u
BIN=${GGX_BIN:-build/ggx}
DATA=${GGX_TEST_DATA:-tests/data}
BUILD=${GGX_BUILD_DIR:-$(dirname "$BIN")}
REF=$DATA/xlstm-tiny/reference/logits.safetensors
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v python3 >/dev/null || { echo "test_run: python3 missing, skipped"; exit 77; }
test_tmpdir TMP ggx-test-run

# The model: the built-in default if it was built, else convert the fixture here.
test_model

# --- greedy reference ------------------------------------------------------------------------
# pK.ids / pK.gen_ids (int32) from the safetensors file, as "K ids gen_ids" lines.
python3 - "$REF" >"$TMP/ref.txt" <<'EOF'
import json, struct, sys
f = open(sys.argv[1], 'rb')
n = struct.unpack('<Q', f.read(8))[0]
hdr = json.loads(f.read(n))
def ids(name):
    t = hdr[name]
    assert t['dtype'] == 'I32', name
    a, b = t['data_offsets']
    f.seek(8 + n + a)
    raw = f.read(b - a)
    return ','.join(str(x) for x in struct.unpack('<%di' % (len(raw) // 4), raw))
k = 0
while 'p%d.ids' % k in hdr:
    print(k, ids('p%d.ids' % k), ids('p%d.gen_ids' % k))
    k += 1
EOF
check '[ "$(wc -l <"$TMP/ref.txt")" -eq 5 ]' "expected 5 reference prompts"
while read -r k ids gen; do
    out=$("$BIN" run -m "$MODEL" --ids "$ids" -n 24 --temp 0 --ids-out --quiet)
    rc=$?
    last=$(printf '%s\n' "$out" | tail -n 1)
    check '[ $rc -eq 0 ] && [ "$last" = "$gen" ]' "p$k greedy: got '$last' want '$gen'"
done <"$TMP/ref.txt"

# greedy from text: "ROMEO:" without BOS is exactly p0's ids, so the same continuation
p0gen=$(awk '$1==0{print $3}' "$TMP/ref.txt")
last=$("$BIN" run -m "$MODEL" -p "ROMEO:" --no-bos -n 24 --temp 0 --ids-out --quiet | tail -n 1)
check '[ "$last" = "$p0gen" ]' "text prompt greedy: got '$last'"

# --- seeds ----------------------------------------------------------------------------------
run_s() { "$BIN" run -m "$MODEL" -p "JULIET:" -n 64 --temp 1.0 --top-k 0 --top-p 0.95 --quiet "$@"; }
run_s --seed 42 >"$TMP/a" && run_s --seed 42 >"$TMP/b" && run_s --seed 43 >"$TMP/c"
check 'cmp -s "$TMP/a" "$TMP/b"' "same seed gave different bytes"
check '! cmp -s "$TMP/a" "$TMP/c"' "seeds 42 and 43 gave the same bytes"
check '[ "$(wc -c <"$TMP/a")" -gt 20 ]' "sampled output too short"
check 'head -c 7 "$TMP/a" | grep -q "^JULIET:"' "prompt is echoed"
run_s --seed 42 --repeat-penalty 1.3 --repeat-last-n 32 --min-p 0.05 >"$TMP/d"
check '! cmp -s "$TMP/a" "$TMP/d"' "repeat penalty / min-p changed nothing"

# --- default model, GGX_MODEL, -m -------------------------------------------------------------
if [ -f "$BUILD/models/default.ggx" ]; then
    out=$(env -u GGX_MODEL "$BIN" run -p "ROMEO:" -n 24 --temp 0 --quiet --no-bos --ids-out | tail -n 1)
    check '[ "$out" = "$p0gen" ]' "default model (no -m) greedy: '$out'"
else
    echo "note: built-in default model not built; default-model check skipped" >&2
fi
GGX_MODEL=$TMP/nonexistent.ggx "$BIN" run -p x -n 1 --quiet >/dev/null 2>"$TMP/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "nonexistent.ggx" "$TMP/err"' "GGX_MODEL not used (rc $rc)"
GGX_MODEL=$TMP/nonexistent.ggx "$BIN" run -m "$MODEL" -p x -n 1 --quiet >/dev/null
check '[ $? -eq 0 ]' "-m does not override GGX_MODEL"

# --- stop strings, stdin, -n 0, UTF-8 ----------------------------------------------------------
# greedy continuation of ROMEO: is "\nI'll not be a man.\n\nDUKE VINCENTIO:..."
"$BIN" run -m "$MODEL" -p "ROMEO:" --no-bos --temp 0 -n 40 --stop "DUKE" --no-echo --quiet >"$TMP/stop"
printf "\nI'll not be a man.\n\n" >"$TMP/stop_want"
check 'cmp -s "$TMP/stop" "$TMP/stop_want"' "stop string: got '$(cat "$TMP/stop")'"
"$BIN" run -m "$MODEL" -p "ROMEO:" --no-bos --temp 0 -n 40 --stop '\n\n' --no-echo --quiet >"$TMP/stop2"
printf "\nI'll not be a man." >"$TMP/stop2_want"
check 'cmp -s "$TMP/stop2" "$TMP/stop2_want"' "escaped stop string: got '$(cat "$TMP/stop2")'"
printf 'ROMEO:' | "$BIN" run -m "$MODEL" --no-bos --temp 0 -n 24 --ids-out --quiet >"$TMP/stdin"
check '[ "$(tail -n 1 "$TMP/stdin")" = "$p0gen" ]' "prompt from stdin"
printf 'ROMEO:' >"$TMP/prompt.txt"
last=$("$BIN" run -m "$MODEL" -f "$TMP/prompt.txt" --no-bos --temp 0 -n 24 --ids-out --quiet | tail -n 1)
check '[ "$last" = "$p0gen" ]' "prompt from -f"
out=$("$BIN" run -m "$MODEL" -p "ROMEO:" -n 0 --no-echo --quiet)
check '[ -z "$out" ]' "-n 0 generated '$out'"
"$BIN" run -m "$MODEL" -p "x" --temp 3 --top-k 0 --top-p 1 --min-p 0 -n 300 --seed 5 --no-echo --quiet >"$TMP/hot"
check 'python3 -c "import sys; open(sys.argv[1], \"rb\").read().decode(\"utf-8\")" "$TMP/hot"' \
    "high-temperature output is not valid UTF-8"
"$BIN" run -m "$MODEL" -p "ROMEO:" -n 8 --seed 1 >/dev/null 2>"$TMP/stats"
check 'grep -q "prompt 3 tok" "$TMP/stats" && grep -q "generated 8 tok" "$TMP/stats"' \
    "stats line: $(cat "$TMP/stats")"

# --- end of text: the config's eos counts only if it is a special token ------------------------
# A copy of the fixture whose config says eos = 2 (an ordinary token, like the 7B's "!" quirk):
# generation must run through id 2 and stop only at <|endoftext|> (id 0) or -n.
mkdir -p "$TMP/eos2"
cp "$DATA"/xlstm-tiny/*.json "$DATA"/xlstm-tiny/*.safetensors "$TMP/eos2/"
sed -i 's/"eos_token_id": 0/"eos_token_id": 2/' "$TMP/eos2/config.json" "$TMP/eos2/generation_config.json"
if "$BIN" convert "$TMP/eos2" -o "$TMP/eos2.ggx" --type f32 --quiet; then
    ids=$("$BIN" run -m "$TMP/eos2.ggx" -p "ROMEO:" -n 300 --seed 4 --temp 1.2 --ids-out --quiet | tail -n 1)
    n=$(echo "$ids" | tr ',' '\n' | wc -l)
    last=${ids##*,}
    twos=$(echo "$ids" | tr ',' '\n' | head -n -1 | grep -c '^2$')
    check '[ "$twos" -ge 1 ] && { [ "$n" -eq 300 ] || [ "$last" = 0 ]; }' \
        "eos=2 quirk: $twos non-final 2s, $n ids, last $last"
else
    bad "convert of the eos=2 copy"
fi

# --- usage --------------------------------------------------------------------------------------
"$BIN" run --help >"$TMP/help"
check '[ $? -eq 0 ] && grep -q "examples" "$TMP/help"' "--help"
"$BIN" run -m "$MODEL" --bogus 2>/dev/null
check '[ $? -eq 2 ]' "unknown option exit code"
"$BIN" run -m "$MODEL" -p x --top-p 0 2>"$TMP/err"
check '[ $? -eq 2 ] && grep -q "top-p" "$TMP/err"' "bad --top-p"
"$BIN" run -m "$MODEL" --ids 1,99999 2>"$TMP/err"
check '[ $? -eq 2 ] && grep -q "ids" "$TMP/err"' "out-of-range --ids"
# -v: what the model costs in memory (weights, the constant per-sequence state), on stderr only
"$BIN" run -m "$MODEL" -p "ROMEO:" -n 2 --temp 0 -v >"$TMP/vout" 2>"$TMP/verr"
check '[ $? -eq 0 ] && grep -q "recurrent state [0-9.]* [KMG]B per sequence" "$TMP/verr" &&
       grep -q "heads (qk 32, v 64 per head)" "$TMP/verr" && ! grep -q "per sequence" "$TMP/vout"' \
      "-v load information: $(head -c 300 "$TMP/verr")"
"$BIN" run -m "$TMP/nope.ggx" -p x 2>"$TMP/err"
check '[ $? -eq 1 ] && grep -q "^ggx run: " "$TMP/err"' "missing model file message"

test_finish test_run
