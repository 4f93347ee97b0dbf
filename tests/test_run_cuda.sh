#!/usr/bin/env bash
# test_run_cuda.sh — `ggx run --backend cuda` on the tiny model (label gpu; skips without a GPU):
# greedy ids equal transformers' for the 5 reference prompts, the same seed gives the same bytes,
# and `ggx chat --backend cuda` save/load continues like the uninterrupted session.
set -u
BIN=${GGX_BIN:-build/ggx}
DATA=${GGX_TEST_DATA:-tests/data}
BUILD=${GGX_BUILD_DIR:-$(dirname "$BIN")}
REF=$DATA/xlstm-tiny/reference/logits.safetensors
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
command -v python3 >/dev/null || { echo "test_run_cuda: python3 missing, skipped"; exit 77; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ggx-test-run-cuda.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
MODEL=$BUILD/models/default.ggx
if [ ! -f "$MODEL" ]; then
    MODEL=$TMP/tiny.ggx
    "$BIN" convert "$DATA/xlstm-tiny" -o "$MODEL" --type f32 --quiet || { bad "convert"; exit 1; }
fi
if ! "$BIN" run -m "$MODEL" --backend cuda -p x -n 1 --quiet >/dev/null 2>"$TMP/probe"; then
    echo "test_run_cuda: no CUDA backend or device ($(head -c 200 "$TMP/probe")), skipped"
    exit 77
fi

python3 - "$REF" >"$TMP/ref.txt" <<'PY'
import json, struct, sys
f = open(sys.argv[1], 'rb')
n = struct.unpack('<Q', f.read(8))[0]
hdr = json.loads(f.read(n))
def ids(name):
    a, b = hdr[name]['data_offsets']
    f.seek(8 + n + a)
    raw = f.read(b - a)
    return ','.join(str(x) for x in struct.unpack('<%di' % (len(raw) // 4), raw))
k = 0
while 'p%d.ids' % k in hdr:
    print(k, ids('p%d.ids' % k), ids('p%d.gen_ids' % k))
    k += 1
PY
while read -r k ids gen; do
    last=$("$BIN" run -m "$MODEL" --backend cuda --ids "$ids" -n 24 --temp 0 --ids-out --quiet | tail -n 1)
    check '[ "$last" = "$gen" ]' "cuda p$k greedy: got '$last' want '$gen'"
done <"$TMP/ref.txt"

run_s() { "$BIN" run -m "$MODEL" --backend cuda -p "JULIET:" -n 64 --temp 1.0 --quiet "$@"; }
run_s --seed 42 >"$TMP/a" && run_s --seed 42 >"$TMP/b"
check 'cmp -s "$TMP/a" "$TMP/b" && [ -s "$TMP/a" ]' "cuda: same seed gave different bytes"

c() { "$BIN" chat -m "$MODEL" --backend cuda --quiet --raw --stop '\n\n' --seed 9 -n 40 "$@"; }
printf 'ROMEO:\nJULIET:\n/save %s\n' "$TMP/s.bin" | c >/dev/null
printf '/load %s\nKING:\n' "$TMP/s.bin" | c >"$TMP/p2"
printf 'ROMEO:\nJULIET:\nKING:\n' | c >"$TMP/whole"
check '[ "$(tail -n 1 "$TMP/p2")" = "$(tail -n 1 "$TMP/whole")" ]' "cuda chat save/load continuation"

echo "test_run_cuda: $pass passed, $fail failed"
[ $fail -eq 0 ]
