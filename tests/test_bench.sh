#!/usr/bin/env bash
# test_bench.sh — `ggx bench` smoke test on the built-in model: --json parses and has one entry
# per test with positive speeds; the markdown table has its header and rows; batches and thread
# lists multiply the rows; bad arguments are usage errors. (Speeds are never asserted.)
set -u
BIN=${GGX_BIN:-build/ggx}
BUILD=${GGX_BUILD_DIR:-$(dirname "$BIN")}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v python3 >/dev/null || { echo "test_bench: python3 missing, skipped"; exit 77; }
[ -f "$BUILD/models/default.ggx" ] || { echo "test_bench: no built-in model, skipped"; exit 77; }
test_tmpdir TMP ggx-test-bench

"$BIN" bench -m default -p 16 -n 4 -r 1 --json --quiet >"$TMP/j"
check '[ $? -eq 0 ]' "bench --json exit code"
python3 - "$TMP/j" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, list) and len(d) == 2, d
assert [e["test"] for e in d] == ["pp16", "tg4"], d
for e in d:
    assert e["tps_median"] > 0 and len(e["tps_samples"]) == 1, e
    assert e["backend"] == "cpu" and e["batch"] == 1 and e["type"], e
PY
check '[ $? -eq 0 ]' "bench JSON content: $(cat "$TMP/j")"

"$BIN" bench -p 8,16 -n 2 -r 2 -b 1,2 -t 1,2 --quiet >"$TMP/t"
check '[ $? -eq 0 ]' "bench table exit code"
check 'head -n 1 "$TMP/t" | grep -q "^| model | type | backend | threads | batch | test | t/s"' \
    "table header: $(head -n 1 "$TMP/t")"
check '[ "$(grep -c "^| xlstm" "$TMP/t")" -eq 12 ]' "expected 2x2x3 rows: $(cat "$TMP/t")"
check 'grep -q "| 2 | 2 | tg2 |" "$TMP/t"' "thread 2 batch 2 row missing"

# a synthetic model of the tiny config, quantized, with the memory-floor columns
DATA=${GGX_TEST_DATA:-tests/data}
"$BIN" bench --synthetic "$DATA/xlstm-tiny/config.json" --type q8_0 -p 8 -n 2 -r 1 -t 1 --membw \
    --json --quiet >"$TMP/s"
check '[ $? -eq 0 ]' "bench --synthetic exit code"
python3 - "$TMP/s" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert len(d) == 2 and all(e["type"] == "q8_0" for e in d), d
tg = d[1]
assert tg["test"] == "tg2" and tg["membw_gbps"] > 0 and tg["weight_bytes_per_token"] > 0, tg
assert abs(tg["floor_tps"] - tg["membw_gbps"] * 1e9 / tg["weight_bytes_per_token"]) < 1e-6 * tg["floor_tps"], tg
PY
check '[ $? -eq 0 ]' "bench --synthetic --membw JSON: $(cat "$TMP/s")"
"$BIN" bench --synthetic "$TMP/missing.json" -p 8 -n 0 -r 1 --quiet 2>"$TMP/err"
check '[ $? -eq 1 ] && grep -q "missing.json" "$TMP/err"' "missing synthetic config"

"$BIN" bench -p x 2>/dev/null
check '[ $? -eq 2 ]' "bad -p is a usage error"
"$BIN" bench -m default --synthetic x.json 2>/dev/null
check '[ $? -eq 2 ]' "-m with --synthetic is a usage error"
"$BIN" bench --help | grep -q examples
check '[ $? -eq 0 ]' "bench --help"

test_finish test_bench
