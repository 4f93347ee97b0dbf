# lib.sh — shared by the tests/test_*.sh scripts (the serve tests have tests/serve/lib.sh):
# check counters, a temporary directory removed on exit, the final "NAME: N passed, M failed"
# line, and the model the CLI tests run.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   test_tmpdir TMP ggx-test-foo                     # TMP = new directory under $TMPDIR
#   check '[ -s "$TMP/out" ]' "no output"            # evals a condition; message on failure
#   check_cmd "output written" test -s "$TMP/out"    # runs a command; its name on failure
#   test_finish test_foo                             # last line: prints the counts, sets $?

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
check_cmd() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }

# test_tmpdir VAR PREFIX: VAR = a fresh directory "$TMPDIR/PREFIX.XXXXXX", removed when the
# script exits (a script with its own EXIT trap removes it there instead).
test_tmpdir() {
    _ggx_test_tmp=$(mktemp -d "${TMPDIR:-/tmp}/$2.XXXXXX") || { echo "mktemp failed" >&2; exit 1; }
    printf -v "$1" '%s' "$_ggx_test_tmp"
    trap 'rm -rf "$_ggx_test_tmp"' EXIT
}

# test_model: MODEL = the built-in default model ($BUILD/models/default.ggx) if it was built, else
# the fixture converted into $TMP (uses BIN, DATA, BUILD, TMP).
test_model() {
    MODEL=$BUILD/models/default.ggx
    if [ ! -f "$MODEL" ]; then
        MODEL=$TMP/tiny.ggx
        "$BIN" convert "$DATA/xlstm-tiny" -o "$MODEL" --type f32 --quiet || { bad "convert"; exit 1; }
    fi
}

# test_finish NAME: the final line; as the script's last command, its exit status (0 = all passed).
test_finish() {
    echo "$1: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
