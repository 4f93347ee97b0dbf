#!/usr/bin/env bash
# test_tokenize.sh — the `ggx tokenize` contract (design.md §6): --jsonl in/out against the HF
# fixture ids and decodes for both tokenizers, from a tokenizer.json and from a .ggx; the prompt
# ids of the tiny model's transformers reference (logits.safetensors); plain mode,
# --decode, --bos, and exit codes.
set -u
BIN=${GGX_BIN:?GGX_BIN not set}
DATA=${GGX_TEST_DATA:?GGX_TEST_DATA not set}
command -v python3 >/dev/null || { echo "test_tokenize: python3 missing, skipping"; exit 77; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
test_tmpdir TMP ggx-tokenize

# jsonl round: texts in, ids out; ids in, texts out; compared with the fixture by python
jsonl_case() { # MODEL ENCODINGS LABEL
    local model=$1 enc=$2 label=$3
    python3 -c 'import json,sys; [print(json.dumps(c["text"])) for c in json.load(open(sys.argv[1]))["cases"]]' "$enc" >"$TMP/in.jsonl"
    python3 -c 'import json,sys; [print(json.dumps(c["ids"])) for c in json.load(open(sys.argv[1]))["cases"]]' "$enc" >"$TMP/ids.jsonl"
    if "$BIN" tokenize -m "$model" --jsonl <"$TMP/in.jsonl" >"$TMP/out.jsonl"; then ok; else bad "$label: --jsonl exit code"; fi
    if "$BIN" tokenize -m "$model" --jsonl --decode <"$TMP/ids.jsonl" >"$TMP/dec.jsonl"; then ok; else bad "$label: --jsonl --decode exit code"; fi
    python3 - "$enc" "$TMP/out.jsonl" "$TMP/dec.jsonl" "$label" <<'EOF' && ok || bad "$label: jsonl output differs from the fixture"
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
out = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
dec = [json.loads(l) for l in open(sys.argv[3], encoding="utf-8")]
bad = 0
if len(out) != len(cases) or len(dec) != len(cases):
    print(f"{sys.argv[4]}: {len(out)} / {len(dec)} lines for {len(cases)} cases", file=sys.stderr); sys.exit(1)
for c, o, d in zip(cases, out, dec):
    if o != c["ids"]:
        bad += 1; print(f"{sys.argv[4]}: {c['text']!r}: got {o} want {c['ids']}", file=sys.stderr)
    if d != c["decoded"]:
        bad += 1; print(f"{sys.argv[4]}: decode {c['ids']}: got {d!r} want {c['decoded']!r}", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

NEOX=$DATA/tokenizers/gpt-neox-20b/tokenizer.json
TINY=$DATA/xlstm-tiny/tokenizer.json
jsonl_case "$NEOX" "$DATA/tokenizers/gpt-neox-20b/encodings.json" neox
jsonl_case "$TINY" "$DATA/xlstm-tiny/reference/tokenizer_encodings.json" tiny

# the prompt ids of the tiny model's transformers reference (logits.safetensors pK.ids)
python3 - "$DATA/xlstm-tiny/reference" >"$TMP/prompts.jsonl" 2>"$TMP/err" <<'EOF2' || bad "reading the reference prompts: $(cat "$TMP/err")"
import json, struct, sys
r = json.load(open(sys.argv[1] + "/reference.json"))
for p in r["prompts"]:
    print(json.dumps(p["text"]))
EOF2
"$BIN" tokenize -m "$TINY" --jsonl <"$TMP/prompts.jsonl" >"$TMP/prompt_ids.jsonl" || bad "tokenize of the reference prompts"
python3 - "$DATA/xlstm-tiny/reference/logits.safetensors" "$TMP/prompt_ids.jsonl" <<'EOF2' && ok || bad "prompt ids differ from logits.safetensors pK.ids"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h, base = json.loads(b[8:8 + n]), 8 + n
got = [json.loads(l) for l in open(sys.argv[2])]
bad = 0
for k, ids in enumerate(got):
    e = h[f"p{k}.ids"]
    s, t = e["data_offsets"]
    want = list(struct.unpack(f"<{(t - s) // 4}i", b[base + s:base + t]))
    if want != ids:
        bad += 1
        print(f"prompt {k}: got {ids[:10]}... want {want[:10]}...", file=sys.stderr)
sys.exit(1 if bad or not got else 0)
EOF2

# val.txt has as many tokens as the perplexity reference counted
nval=$("$BIN" tokenize -m "$TINY" -f "$DATA/xlstm-tiny/reference/val.txt" | tr ',' '\n' | wc -l)
want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["perplexity"]["n_tokens"])' "$DATA/xlstm-tiny/reference/reference.json")
check '[ "$nval" = "$want" ]' "val.txt: $nval tokens, reference.json says $want"
# the same from a .ggx (the tokenizer.json blob inside); needs `ggx convert`
if "$BIN" convert "$DATA/xlstm-tiny" -o "$TMP/tiny.ggx" --type f32 --quiet >"$TMP/convert.log" 2>&1; then
    jsonl_case "$TMP/tiny.ggx" "$DATA/xlstm-tiny/reference/tokenizer_encodings.json" tiny.ggx
    check '[ "$("$BIN" tokenize -m "$TMP/tiny.ggx" --bos -p "hello")" = "0,259,275,80" ]' ".ggx --bos"
else
    bad "ggx convert of the tiny model failed: $(tail -2 "$TMP/convert.log")"
fi

# plain mode, -f, stdin, --decode, --tokens, --bos
check '[ "$("$BIN" tokenize -m "$NEOX" -p "Hello world")" = "12092,1533" ]' "plain -p"
check '[ "$("$BIN" tokenize -m "$NEOX" --ids-only -p "Hello world")" = "12092,1533" ]' "--ids-only"
check '[ "$(printf "Hello world" | "$BIN" tokenize -m "$NEOX")" = "12092,1533" ]' "stdin"
printf 'ROMEO:\nBut, soft!' >"$TMP/t.txt"
check '[ "$("$BIN" tokenize -m "$NEOX" -f "$TMP/t.txt")" = "51,14519,48,27,187,1989,13,2602,2" ]' "-f"
check '[ "$("$BIN" tokenize -m "$NEOX" --bos -p "Hello")" = "0,12092" ]' "--bos with tokenizer.json"
check '[ "$(echo "12092, 1533" | "$BIN" tokenize -m "$NEOX" --decode)" = "Hello world" ]' "--decode"
check '[ "$(echo "1156 0 3062" | "$BIN" tokenize -m "$NEOX" --decode --keep-special)" = "text<|endoftext|>more" ]' "--keep-special"
check '[ "$("$BIN" tokenize -m "$NEOX" --tokens -q -p "Hi  there" | cut -f1 | tr "\n" ,)" = "12764,50276,9088," ]' "--tokens"

# exit codes and messages
check '"$BIN" tokenize --help | grep -q "examples:"' "--help on stdout"
"$BIN" tokenize -m "$NEOX" --no-such-flag >/dev/null 2>&1; check '[ $? -eq 2 ]' "unknown flag exits 2"
"$BIN" tokenize >/dev/null 2>&1; check '[ $? -eq 2 ]' "missing -m exits 2"
"$BIN" tokenize -m "$TMP/missing.json" -p x >/dev/null 2>"$TMP/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "ggx tokenize: .*missing.json" "$TMP/err"' "missing file exits 1 naming it"
printf 'ab\xffcd' >"$TMP/bad.txt"
"$BIN" tokenize -m "$NEOX" -f "$TMP/bad.txt" >/dev/null 2>"$TMP/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "UTF-8.*byte offset 2" "$TMP/err"' "invalid UTF-8 exits 1 naming the offset"
echo "50999999" | "$BIN" tokenize -m "$NEOX" --decode >/dev/null 2>"$TMP/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "outside the vocabulary" "$TMP/err"' "--decode rejects an out-of-range id"
printf '"ok"\nnot json\n' | "$BIN" tokenize -m "$NEOX" --jsonl >"$TMP/o" 2>"$TMP/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "line 2" "$TMP/err" && [ "$(cat "$TMP/o")" = "[536]" ]' "--jsonl names a bad line"
printf '"a\\u0000b"\n' | "$BIN" tokenize -m "$NEOX" --jsonl >/dev/null 2>"$TMP/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "U+0000" "$TMP/err"' "--jsonl refuses U+0000"
check '[ "$(echo "[66,0,67,1]" | "$BIN" tokenize -m "$NEOX" --jsonl --decode --keep-special)" = "\"a<|endoftext|>b<|padding|>\"" ]' "--jsonl --decode --keep-special"
printf '{"model":{"type":"Unigram","vocab":[]}}' >"$TMP/uni.json"
"$BIN" tokenize -m "$TMP/uni.json" -p x >/dev/null 2>"$TMP/err"; rc=$?
check '[ $rc -eq 1 ] && grep -q "Unigram" "$TMP/err"' "unsupported model type named"

test_finish test_tokenize
