#!/usr/bin/env bash
# test_logits_cli.sh — `ggx logits` end to end: prefill and --step output files against the
# transformers reference (max abs diff <= 1e-4), exact file size, -t 1 == -t 2 byte for byte,
# and bad input (ids >= vocab, empty --ids, missing model) fails with a message and no file.
set -u
BIN=${GGX_BIN:?}
DATA=${GGX_TEST_DATA:?}
command -v python3 >/dev/null || { echo "python3 missing"; exit 77; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
test_tmpdir T ggx-logits-cli

"$BIN" convert "$DATA/xlstm-tiny" -o "$T/m.ggx" --type f32 --quiet || { echo "convert failed"; exit 1; }
REF="$DATA/xlstm-tiny/reference/logits.safetensors"

py_ids() { python3 - "$REF" "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); t = h[sys.argv[2]]
o0, o1 = t['data_offsets']; d = b[8+n+o0:8+n+o1]
print(','.join(str(x) for x in struct.unpack('<%di' % (len(d)//4), d)))
PY
}
py_cmp() { python3 - "$REF" "$1" "$2" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); t = h[sys.argv[2]]
o0, o1 = t['data_offsets']; ref = struct.unpack('<%df' % ((o1-o0)//4), b[8+n+o0:8+n+o1])
got = open(sys.argv[3], 'rb').read()
if len(got) != 4 * len(ref): print('size %d, expected %d' % (len(got), 4*len(ref))); sys.exit(1)
g = struct.unpack('<%df' % len(ref), got)
d = max(abs(x - y) for x, y in zip(g, ref)); print('max abs diff %.3g' % d)
sys.exit(0 if d <= 1e-4 else 1)
PY
}

for p in p1 p2; do
  ids=$(py_ids $p.ids)
  out=$("$BIN" logits -m "$T/m.ggx" --ids "$ids" -o "$T/$p.pre" -t 2 2>&1)
  [ $? -eq 0 ] && [ -z "$out" ] && ok || bad "$p prefill run: $out"
  py_cmp $p.logits_prefill "$T/$p.pre" && ok || bad "$p prefill differs"
  "$BIN" logits -m "$T/m.ggx" --ids "$ids" --step -o "$T/$p.step" -t 2 && ok || bad "$p step run"
  py_cmp $p.logits_step "$T/$p.step" && ok || bad "$p step differs"
  "$BIN" logits -m "$T/m.ggx" --ids "$ids" -o "$T/$p.t1" -t 1 && cmp -s "$T/$p.t1" "$T/$p.pre" && ok || bad "$p: -t 1 != -t 2"
done

# bad input: clear error, non-zero exit, no output file
msg=$("$BIN" logits -m "$T/m.ggx" --ids 0,2048,5 -o "$T/x1" 2>&1); rc=$?
[ $rc -ne 0 ] && [ ! -e "$T/x1" ] && echo "$msg" | grep -q "out of range" && ok || bad "id >= vocab: rc=$rc msg=$msg"
msg=$("$BIN" logits -m "$T/m.ggx" --ids "" -o "$T/x2" 2>&1); rc=$?
[ $rc -eq 2 ] && [ ! -e "$T/x2" ] && ok || bad "empty ids: rc=$rc msg=$msg"
msg=$("$BIN" logits -m "$T/m.ggx" --ids 1,x -o "$T/x3" 2>&1); rc=$?
[ $rc -eq 2 ] && [ ! -e "$T/x3" ] && ok || bad "bad ids: rc=$rc"
msg=$("$BIN" logits -m "$T/nope.ggx" --ids 1 -o "$T/x4" 2>&1); rc=$?
[ $rc -eq 1 ] && [ ! -e "$T/x4" ] && echo "$msg" | grep -q "nope.ggx" && ok || bad "missing model: rc=$rc msg=$msg"
"$BIN" logits --help | grep -q "examples" && ok || bad "--help"

test_finish test_logits_cli
