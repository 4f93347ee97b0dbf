#!/usr/bin/env bash
# test_tokenize_ref_slow.sh — `ggx tokenize --jsonl` against an independent Python reference of
# the HF pipeline (tests/tokenizer_ref.py: `regex` module, unicodedata NFC, GPT-2's BPE loop) on
# what the HF fixtures do not cover: the held-out Shakespeare text (whole and line by line) and
# 4,000 random texts (fixed seed; GGX_TEST_SEED overrides), for both tokenizers. The reference is
# first checked against the HF fixture ids, so it cannot drift from HF unnoticed.
# Skips (77) without python3 or its `regex` module.
set -u
BIN=${GGX_BIN:?GGX_BIN not set}
DATA=${GGX_TEST_DATA:?GGX_TEST_DATA not set}
SRC=$(cd "$(dirname "$0")" && pwd)
# Prefer a python3 that has the regex module (Debian python3-regex lives under /usr/bin/python3).
python3() { if [ -z "${PY:-}" ]; then PY=python3; for c in /usr/bin/python3 python3; do command "$c" -c "import regex" 2>/dev/null && { PY=$c; break; }; done; fi; command "$PY" "$@"; }
python3 -c "import regex" 2>/dev/null || { echo "test_tokenize_ref_slow: python3 with the regex module missing, skipping"; exit 77; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
test_tmpdir TMP ggx-tokref

python3 -c 'import json,sys; [print(json.dumps(c)) for c in json.load(open(sys.argv[1]))["cases"]]' \
    "$DATA/tokenizers/cases.json" >"$TMP/cases.jsonl"
python3 - "$DATA/xlstm-tiny/reference/val.txt" >"$TMP/val.jsonl" <<'EOF'
import json, sys
text = open(sys.argv[1], encoding="utf-8").read()
print(json.dumps(text))
for line in text.splitlines(keepends=True):
    print(json.dumps(line))
EOF
python3 "$SRC/tokenizer_ref.py" --gen "${GGX_TEST_SEED:-2026}" 4000 >"$TMP/rand.jsonl"

for pair in "tokenizers/gpt-neox-20b/tokenizer.json:tokenizers/gpt-neox-20b/encodings.json" \
            "xlstm-tiny/tokenizer.json:xlstm-tiny/reference/tokenizer_encodings.json"; do
    tok=$DATA/${pair%%:*}
    enc=$DATA/${pair#*:}
    # 1. the reference reproduces HF on the fixtures
    python3 "$SRC/tokenizer_ref.py" "$tok" <"$TMP/cases.jsonl" >"$TMP/ref_cases.jsonl"
    if python3 -c 'import json,sys
want = [c["ids"] for c in json.load(open(sys.argv[1]))["cases"]]
got = [json.loads(l) for l in open(sys.argv[2])]
sys.exit(0 if want == got else 1)' "$enc" "$TMP/ref_cases.jsonl"; then ok; else bad "reference != HF fixtures for $tok"; fi
    # 2. ggx == reference on new text
    for set in val rand; do
        python3 "$SRC/tokenizer_ref.py" "$tok" <"$TMP/$set.jsonl" >"$TMP/ref.jsonl"
        if "$BIN" tokenize -m "$tok" --jsonl <"$TMP/$set.jsonl" >"$TMP/ggx.jsonl" && cmp -s "$TMP/ref.jsonl" "$TMP/ggx.jsonl"; then
            ok
        else
            bad "ggx != reference on $set for $tok"
            python3 - "$TMP/$set.jsonl" "$TMP/ref.jsonl" "$TMP/ggx.jsonl" <<'EOF' >&2
import json, sys
for i, (t, r, g) in enumerate(zip(open(sys.argv[1]), open(sys.argv[2]), open(sys.argv[3]))):
    if r != g:
        print(f"  line {i + 1}: {json.loads(t)[:120]!r}\n    ref {r.strip()[:200]}\n    ggx {g.strip()[:200]}")
        break
EOF
        fi
    done
done

test_finish test_tokenize_ref_slow
