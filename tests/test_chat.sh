#!/usr/bin/env bash
# test_chat.sh — `ggx chat` with piped input (no terminal): /reset replays the conversation,
# /save + /load in a new process continue it exactly, bad session files are refused with a
# message (the conversation goes on), templates and their stop strings, usage errors.
# The terminal behaviour (line editing, Ctrl-C) is tested by test_chat_tmux.sh.
set -u
BIN=${GGX_BIN:-build/ggx}
DATA=${GGX_TEST_DATA:-tests/data}
BUILD=${GGX_BUILD_DIR:-$(dirname "$BIN")}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_tmpdir TMP ggx-test-chat
test_model
chat() { "$BIN" chat -m "$MODEL" --quiet "$@"; }

# /reset replays: the same seed from the same (fresh) state gives the same reply
printf 'ROMEO:\n/reset\nROMEO:\n' | chat --raw --stop '\n\n' --seed 5 -n 40 >"$TMP/reset"
check '[ $? -eq 0 ]' "chat exit code"
first=$(awk '/^\(new conversation\)$/{exit} {print}' "$TMP/reset")
second=$(awk 'f{print} /^\(new conversation\)$/{f=1}' "$TMP/reset")
check '[ -n "$first" ] && [ "$first" = "$second" ]' "/reset did not replay: '$first' vs '$second'"

# save / load across processes == uninterrupted, in template mode (derived stop "\nUser:")
T=(--template 'User: {msg}\nAssistant:' --seed 9 -n 32 --temp 0.9)
printf 'hello\nhow are you\n/save %s\n' "$TMP/s.bin" | chat "${T[@]}" >"$TMP/part1"
check '[ -s "$TMP/s.bin" ] && grep -q "^(saved " "$TMP/part1"' "/save: $(tail -n 1 "$TMP/part1")"
printf '/load %s\nwhat now\n' "$TMP/s.bin" | chat "${T[@]}" >"$TMP/part2"
printf 'hello\nhow are you\nwhat now\n' | chat "${T[@]}" >"$TMP/whole"
check '[ "$(tail -n 1 "$TMP/part2")" = "$(tail -n 1 "$TMP/whole")" ]' \
    "continuation after /load differs: '$(tail -n 1 "$TMP/part2")' vs '$(tail -n 1 "$TMP/whole")'"
check '! grep -q "^User:" "$TMP/whole"' "the template stop string was printed"

# a /load that fails leaves the conversation as it was
head -c 100 "$TMP/s.bin" >"$TMP/trunc.bin"
printf 'not a state' >"$TMP/junk.bin"
printf 'hello\nhow are you\n/load %s\n/load %s\n/load %s\nwhat now\n' \
    "$TMP/trunc.bin" "$TMP/junk.bin" "$TMP/missing.bin" | chat "${T[@]}" >"$TMP/badload" 2>"$TMP/err"
check '[ $? -eq 0 ] && [ "$(grep -c "^ggx chat: /load" "$TMP/err")" -eq 3 ]' \
    "bad /load messages: $(cat "$TMP/err")"
check '[ "$(tail -n 1 "$TMP/badload")" = "$(tail -n 1 "$TMP/whole")" ]' \
    "a failed /load changed the conversation"
# a session of another model is refused (the state file is bound to the model)
if "$BIN" convert "$DATA/xlstm-tiny" -o "$TMP/tiny_bf16.ggx" --type bf16 --quiet 2>/dev/null; then
    printf '/load %s\n' "$TMP/s.bin" | "$BIN" chat -m "$TMP/tiny_bf16.ggx" --quiet >/dev/null 2>"$TMP/err"
    check 'grep -q "^ggx chat: /load" "$TMP/err"' "state of another model accepted"
fi
printf '/save %s/no/such/dir/x.bin\n/stats\n' "$TMP" | chat >"$TMP/out" 2>"$TMP/err"
check '[ $? -eq 0 ] && grep -q "^ggx chat: /save" "$TMP/err" && grep -q "^total:" "$TMP/out"' \
    "/save to a bad path"

# multi-line input: a trailing backslash and a """ block are one message each
printf 'ROMEO:\\\nI am here\n/stats\n"""\nJULIET:\nAnd I\n"""\n/stats\n' |
    chat --raw --stop '\n\n' --seed 1 -n 8 >"$TMP/ml"
check '[ "$(grep -c "^turn:" "$TMP/ml")" -eq 2 ]' "multi-line input: $(cat "$TMP/ml")"

# the model's tokenizer.chat_template (from tokenizer_config.json) is used when it is in the {msg}
# format; a Jinja template is not (a note says so and the plain default applies)
mk_tmpl_model() { # template out.ggx
    mkdir -p "$TMP/tm"
    cp "$DATA"/xlstm-tiny/*.json "$DATA"/xlstm-tiny/*.safetensors "$TMP/tm/"
    python3 -c 'import json,sys; p=sys.argv[1]+"/tokenizer_config.json"; d=json.load(open(p)); d["chat_template"]=sys.argv[2]; json.dump(d,open(p,"w"))' "$TMP/tm" "$1" &&
        "$BIN" convert "$TMP/tm" -o "$2" --type f32 --quiet
}
if command -v python3 >/dev/null && mk_tmpl_model $'Q: {msg}\nA:' "$TMP/tmpl.ggx"; then
    printf 'hello\nagain\n' | "$BIN" chat -m "$TMP/tmpl.ggx" --seed 2 -n 40 >"$TMP/out" 2>"$TMP/err"
    check 'grep -q "the model.s chat template" "$TMP/err" && ! grep -q "^Q:" "$TMP/out"' \
        "metadata template: $(cat "$TMP/err")"
    if mk_tmpl_model '{% for m in messages %}{{ m.content }}{% endfor %}' "$TMP/jinja.ggx"; then
        printf 'hello\n' | "$BIN" chat -m "$TMP/jinja.ggx" --seed 2 -n 8 >/dev/null 2>"$TMP/err"
        check 'grep -q "not in ggx.s {msg} format" "$TMP/err" && grep -q "plain default" "$TMP/err"' \
            "Jinja template: $(cat "$TMP/err")"
    fi
fi

# unknown commands and usage
printf '/frobnicate\n/help\n' | chat >"$TMP/out"
check 'grep -q "unknown command" "$TMP/out" && grep -q "/save FILE" "$TMP/out"' "/help, unknown"
"$BIN" chat -m "$MODEL" --template "no placeholder" </dev/null 2>"$TMP/err"
check '[ $? -eq 2 ] && grep -q "{msg}" "$TMP/err"' "bad template"
"$BIN" chat --help | grep -q examples
check '[ $? -eq 0 ]' "chat --help"

test_finish test_chat
