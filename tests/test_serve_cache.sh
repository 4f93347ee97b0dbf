#!/usr/bin/env bash
# test_serve_cache.sh — the prefix-state cache: two chat requests sharing a long system prompt;
# the second starts from the cached state (a hit in /metrics, cached_tokens in usage) and its
# output equals a cold run on a server without the cache. The same for a long completion prompt
# (block boundaries), and an LRU budget that holds no entry stores nothing.
source "${GGX_SOURCE_DIR:?GGX_SOURCE_DIR not set}/tests/serve/lib.sh" || exit 1
serve_init test_serve_cache

SYS="You are a player in a company of actors. You speak only in blank verse, in the manner of the
plays of the time, and you never break character, whatever the question; when asked of kings you
speak of crowns and when asked of love you speak of roses and of thorns, and you end every answer
with a couplet that rhymes."
chat() { # chat USER_TEXT -> request body
    node -e 'console.log(JSON.stringify({messages: [{role: "system", content: process.argv[1]},
        {role: "user", content: process.argv[2]}], max_tokens: 24, temperature: 0}))' "$SYS" "$1"
}
LONGP=$(node -e 'let s = ""; for (let i = 0; s.length < 1200; i++) s += `CITIZEN ${i}:\nWe are accounted poor citizens, the patricians good.\n`; console.log(s)')
comp() { node -e 'console.log(JSON.stringify({prompt: process.argv[1] + process.argv[2], max_tokens: 16, temperature: 0}))' "$LONGP" "$1"; }

# cold reference outputs without the cache
serve_start --prefix-cache-mb 0 || exit 1
cold1=$(post /v1/chat/completions "$(chat 'Speak of kings.')" | jget 'o.choices[0].message.content')
cold2=$(post /v1/chat/completions "$(chat 'Speak of love.')" | jget 'o.choices[0].message.content')
cold3=$(post /v1/completions "$(comp 'MENENIUS:')" | jget 'o.choices[0].text')
check_eq "no cache: no hits" 0 "$(metric ggx_prefix_cache_hits_total)"
check_eq "no cache: no entries" 0 "$(metric ggx_prefix_cache_entries)"
serve_stop

serve_start --prefix-cache-mb 64 || exit 1
r1=$(post /v1/chat/completions "$(chat 'Speak of kings.')")
check_eq "first: output == cold" "$cold1" "$(echo "$r1" | jget 'o.choices[0].message.content')"
check_eq "first: a miss" 1 "$(metric ggx_prefix_cache_misses_total)"
check_eq "first: no hit" 0 "$(metric ggx_prefix_cache_hits_total)"
check_eq "first: cached_tokens 0" 0 "$(echo "$r1" | jget o.usage.prompt_tokens_details.cached_tokens)"
r2=$(post /v1/chat/completions "$(chat 'Speak of love.')")
check_eq "second (other user message): a hit" 1 "$(metric ggx_prefix_cache_hits_total)"
cached=$(echo "$r2" | jget o.usage.prompt_tokens_details.cached_tokens)
check "second: cached_tokens > 40" test "$cached" -gt 40
check_eq "second: output == cold run" "$cold2" "$(echo "$r2" | jget 'o.choices[0].message.content')"
r3=$(post /v1/chat/completions "$(chat 'Speak of kings.')")
check_eq "repeat of the first: output == cold" "$cold1" "$(echo "$r3" | jget 'o.choices[0].message.content')"
check_eq "repeat: a hit" 2 "$(metric ggx_prefix_cache_hits_total)"
saved=$(metric ggx_prefix_cache_tokens_saved_total)
check "tokens saved counted" test "$saved" -ge $((2 * cached))

# completions: block boundaries; a second prompt with the same long head hits
c1=$(post /v1/completions "$(comp 'MENENIUS:')" | jget 'o.choices[0].text')
check_eq "long prompt, cold in this server: output == cold" "$cold3" "$c1"
h=$(metric ggx_prefix_cache_hits_total)
c2=$(post /v1/completions "$(comp 'MENENIUS:')")
check_eq "long prompt again: a hit" $((h + 1)) "$(metric ggx_prefix_cache_hits_total)"
check_eq "long prompt again: output == cold" "$cold3" "$(echo "$c2" | jget 'o.choices[0].text')"
check "entries and bytes reported" test "$(metric ggx_prefix_cache_entries)" -ge 2 -a "$(metric ggx_prefix_cache_bytes)" -gt 0
serve_stop
serve_finish
