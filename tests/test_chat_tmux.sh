#!/usr/bin/env bash
# test_chat_tmux.sh — `ggx chat` in a real terminal (tmux), on the built-in default model:
#   session 1: two turns, /save FILE, /quit
#   session 2: a fresh process, /load FILE, a third turn, /stats
#   session 3: the three turns without interruption
# The third reply of session 2 must equal session 3's (same seed: the sampler's RNG position is
# saved with the state). Also: Ctrl-C stops a reply without leaving the chat.
# The screen is polled with capture-pane (bounded waits), never read after fixed sleeps.
set -u
BIN=${GGX_BIN:-build/ggx}
BUILD=${GGX_BUILD_DIR:-$(dirname "$BIN")}
command -v tmux >/dev/null || { echo "test_chat_tmux: tmux missing, skipped"; exit 77; }
[ -f "$BUILD/models/default.ggx" ] || [ -f "$(dirname "$BIN")/models/default.ggx" ] ||
    { echo "test_chat_tmux: built-in default model not built, skipped"; exit 77; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ggx-test-tmux.XXXXXX")
SOCK=ggx-test-$$
T() { tmux -L "$SOCK" "$@"; }
cleanup() { T kill-server 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
TIMEOUT=${GGX_TMUX_TIMEOUT:-120} # seconds per wait (the sanitizer build is slow)

SEED=11
CHAT="env -u GGX_MODEL $BIN chat --seed $SEED -n 48"
TURN1='ROMEO:'
TURN2='JULIET:'
TURN3='KING HENRY VI:'

start() { # name command
    T new-session -d -s "$1" -x 160 -y 50 "$2" || { bad "tmux new-session $1"; return 1; }
}
screen() { T capture-pane -p -J -S - -t "$1" 2>/dev/null; }
# wait until the number of lines starting with the chat prompt "> " reaches $2
wait_prompts() {
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$TIMEOUT" ]; do
        local n
        n=$(screen "$1" | grep -c '^> ')
        [ "$n" -ge "$2" ] && return 0
        sleep 0.1
    done
    bad "$1: timed out waiting for prompt #$2; screen:"
    screen "$1" >&2
    return 1
}
wait_text() { # session regex
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$TIMEOUT" ]; do
        screen "$1" | grep -q -- "$2" && return 0
        sleep 0.1
    done
    bad "$1: timed out waiting for '$2'; screen:"
    screen "$1" >&2
    return 1
}
wait_gone() {
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$TIMEOUT" ]; do
        T has-session -t "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    bad "$1: did not exit"
    return 1
}
say() { T send-keys -t "$1" -l -- "$2" && T send-keys -t "$1" Enter; }
# the reply to the input line "> $2": the lines after it up to the next prompt
reply() {
    screen "$1" | awk -v q="> $2" 'f && /^> /{exit} f{print} $0==q{f=1}'
}

# --- session 1: two turns, /save -----------------------------------------------------------------
start s1 "cd $TMP && $CHAT" || exit 1
wait_prompts s1 1 || exit 1
say s1 "$TURN1"; wait_prompts s1 2 || exit 1
say s1 "$TURN2"; wait_prompts s1 3 || exit 1
say s1 "/save $TMP/conv.state"; wait_text s1 "(saved .* to $TMP/conv.state)" || exit 1
[ -s "$TMP/conv.state" ] && ok || bad "state file not written"
r1=$(reply s1 "$TURN1")
[ -n "$r1" ] && ok || bad "session 1: empty first reply"
say s1 "/quit"; wait_gone s1 && ok

# --- session 2: /load, third turn, /stats ---------------------------------------------------------
start s2 "cd $TMP && $CHAT" || exit 1
wait_prompts s2 1 || exit 1
say s2 "/load $TMP/conv.state"; wait_text s2 "(loaded .* turns from" || exit 1
say s2 "$TURN3"; wait_prompts s2 3 || exit 1
say s2 "/stats"; wait_text s2 "^total:" || exit 1
screen s2 >"$TMP/s2.txt"
r3_loaded=$(reply s2 "$TURN3")
# /stats: this turn processed only the new message + reply, the total includes the history
turn_n=$(sed -n 's/^turn: *\([0-9]*\) tokens processed.*/\1/p' "$TMP/s2.txt")
total_n=$(sed -n 's/^total: *\([0-9]*\) tokens in the state.*/\1/p' "$TMP/s2.txt")
saved_n=$(sed -n 's/^(loaded \([0-9]*\) tokens.*/\1/p' "$TMP/s2.txt")
if [ -n "$turn_n" ] && [ -n "$total_n" ] && [ -n "$saved_n" ] &&
    [ "$total_n" -eq $((saved_n + turn_n)) ] && [ "$turn_n" -lt "$total_n" ]; then ok; else
    bad "stats: turn '$turn_n' total '$total_n' loaded '$saved_n'"; fi
say s2 "/quit"; wait_gone s2

# --- session 3: uninterrupted --------------------------------------------------------------------
start s3 "cd $TMP && $CHAT" || exit 1
wait_prompts s3 1 || exit 1
say s3 "$TURN1"; wait_prompts s3 2 || exit 1
say s3 "$TURN2"; wait_prompts s3 3 || exit 1
say s3 "$TURN3"; wait_prompts s3 4 || exit 1
r3_direct=$(reply s3 "$TURN3")
r1_direct=$(reply s3 "$TURN1")
say s3 "/quit"; wait_gone s3

[ -n "$r3_direct" ] && ok || bad "empty third reply"
if [ "$r3_loaded" = "$r3_direct" ]; then ok; else
    bad "reply after /load differs from the uninterrupted session"
    printf -- '--- after load:\n%s\n--- uninterrupted:\n%s\n' "$r3_loaded" "$r3_direct" >&2
fi
[ "$r1" = "$r1_direct" ] && ok || bad "same seed, different first reply"

# --- Ctrl-C stops a reply, the chat goes on -----------------------------------------------------
start s4 "cd $TMP && env -u GGX_MODEL $BIN chat --seed 3 -n 100000000 --stop @@@@ ; echo CHAT-EXITED; sleep 60" ||
    exit 1
wait_prompts s4 1 || exit 1
say s4 "ROMEO:"
wait_text s4 "[a-z]" || exit 1
sleep 0.3
T send-keys -t s4 C-c
wait_text s4 "\[stopped\]" && ok
wait_prompts s4 2 && ok
say s4 "/stats"; wait_text s4 "^total:" && ok
# Ctrl-C at the prompt drops the typed line and prompts again (does not leave)
T send-keys -t s4 -l -- "half a line"
wait_text s4 "^> half a line" || exit 1
T send-keys -t s4 C-c
wait_text s4 "^> half a line^C" && ok
say s4 "/stats"; wait_prompts s4 4 && ok
screen s4 | grep -q CHAT-EXITED && bad "Ctrl-C left the chat" || ok
say s4 "/quit"; wait_text s4 CHAT-EXITED && ok

# non-ASCII input survives line editing even in the C locale (libedit needs a UTF-8 LC_CTYPE)
MODEL=$BUILD/models/default.ggx
[ -f "$MODEL" ] || MODEL=$(dirname "$BIN")/models/default.ggx
want=$(printf 'café ROMEO' | "$BIN" tokenize -m "$MODEL" 2>/dev/null | tr ',' '\n' | grep -c '[0-9]')
start s5 "cd $TMP && LANG=C LC_ALL=C env -u GGX_MODEL $BIN chat --seed 1 -n 0 --no-bos" || exit 1
wait_prompts s5 1 || exit 1
say s5 "café ROMEO"; wait_prompts s5 2 || exit 1
say s5 "/stats"; wait_text s5 "^total:" || exit 1
got=$(screen s5 | sed -n 's/^turn: *\([0-9]*\) tokens processed.*/\1/p')
if [ -n "$want" ] && [ "$want" -gt 0 ] && [ "$got" = "$want" ] && screen s5 | grep -q "^> café ROMEO"; then ok; else
    bad "UTF-8 input: $got tokens, want $want"; screen s5 >&2; fi
say s5 "/quit"; wait_gone s5

# --history FILE: a line typed in one session comes back with the up arrow in the next
start s6 "cd $TMP && env -u GGX_MODEL $BIN chat --seed 1 -n 0 --history $TMP/hist" || exit 1
wait_prompts s6 1 || exit 1
say s6 "a line to remember"; wait_prompts s6 2 || exit 1
say s6 "/quit"; wait_gone s6
start s7 "cd $TMP && env -u GGX_MODEL $BIN chat --seed 1 -n 0 --history $TMP/hist" || exit 1
wait_prompts s7 1 || exit 1
T send-keys -t s7 Up Up
wait_text s7 "^> a line to remember" && ok
say s7 ""; say s7 "/quit"; wait_gone s7

test_finish test_chat_tmux
