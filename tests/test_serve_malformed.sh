#!/usr/bin/env bash
# test_serve_malformed.sh — hostile and broken requests get a 4xx with an OpenAI-style error body
# {"error": {"message", "type", "code"}} and the server keeps serving. Runs in the ASan build too.
source "${GGX_SOURCE_DIR:?GGX_SOURCE_DIR not set}/tests/serve/lib.sh" || exit 1
serve_init test_serve_malformed
KEY=sk-test-0123456789
serve_start --api-key "$KEY" --max-body 65536 --max-prompt-tokens 64 --max-tokens-limit 100 || exit 1
AUTH=(-H "Authorization: Bearer $KEY")

# expect NAME STATUS PATH BODY: status matches and the body is an OpenAI error object
expect() {
    local name=$1 want=$2 path=$3 body=$4
    local got
    got=$(post "$path" "$body" "${AUTH[@]}" | node -e '
let s = ""; process.stdin.on("data", (d) => (s += d)); process.stdin.on("end", () => {
  try { const e = JSON.parse(s).error;
    process.stdout.write(typeof e.message === "string" && e.message && typeof e.type === "string" && "code" in e ? "ok" : "shape"); }
  catch (x) { process.stdout.write("notjson"); } });')
    check_eq "$name" "$want ok" "$(last_status) $got"
}

C=/v1/completions
H=/v1/chat/completions
expect "bad JSON" 400 $C '{"prompt": "x", '
expect "JSON not an object" 400 $C '[1, 2, 3]'
expect "empty body" 400 $C ''
expect "garbage bytes" 400 $C $'\x01\x02\xff\xfe'
expect "missing prompt" 400 $C '{"max_tokens": 4}'
expect "prompt wrong type" 400 $C '{"prompt": 5}'
expect "prompt object" 400 $C '{"prompt": {"a": 1}}'
expect "prompt several" 400 $C '{"prompt": ["a", "b"]}'
expect "prompt ids out of range" 400 $C '{"prompt": [1, 2, 99999999]}'
expect "prompt ids negative" 400 $C '{"prompt": [1, -2]}'
expect "prompt empty ids" 400 $C '{"prompt": []}'
expect "max_tokens string" 400 $C '{"prompt": "x", "max_tokens": "ten"}'
expect "max_tokens zero" 400 $C '{"prompt": "x", "max_tokens": 0}'
expect "max_tokens fraction" 400 $C '{"prompt": "x", "max_tokens": 1.5}'
expect "max_tokens over limit" 400 $C '{"prompt": "x", "max_tokens": 101}'
expect "max_tokens huge" 400 $C '{"prompt": "x", "max_tokens": 1e300}'
expect "temperature string" 400 $C '{"prompt": "x", "temperature": "hot"}'
expect "temperature out of range" 400 $C '{"prompt": "x", "temperature": 3}'
expect "top_p zero" 400 $C '{"prompt": "x", "top_p": 0}'
expect "stream not bool" 400 $C '{"prompt": "x", "stream": "yes"}'
expect "stop number" 400 $C '{"prompt": "x", "stop": 5}'
expect "stop array of numbers" 400 $C '{"prompt": "x", "stop": [1]}'
expect "too many stops" 400 $C '{"prompt": "x", "stop": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}'
expect "seed fraction" 400 $C '{"prompt": "x", "seed": 0.5}'
expect "n=2" 400 $C '{"prompt": "x", "n": 2}'
expect "n=0" 400 $C '{"prompt": "x", "n": 0}'
expect "model number" 400 $C '{"prompt": "x", "model": 7}'
expect "logprobs" 400 $C '{"prompt": "x", "logprobs": 3}'
expect "prompt too long" 400 $C "{\"prompt\": \"$(printf 'word %.0s' $(seq 1 200))\"}"
expect "chat missing messages" 400 $H '{"max_tokens": 4}'
expect "chat messages string" 400 $H '{"messages": "hi"}'
expect "chat messages empty" 400 $H '{"messages": []}'
expect "chat role number" 400 $H '{"messages": [{"role": 1, "content": "x"}]}'
expect "chat no content" 400 $H '{"messages": [{"role": "user"}]}'
expect "chat content number" 400 $H '{"messages": [{"role": "user", "content": 3}]}'
expect "chat content image part" 400 $H '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}'
expect "chat message not object" 400 $H '{"messages": [5]}'
expect "chat n=2" 400 $H '{"messages": [{"role": "user", "content": "x"}], "n": 2}'
expect "tokenize no content" 400 /tokenize '{"text": "x"}'
expect "detokenize bad id" 400 /detokenize '{"tokens": [1, 999999]}'
expect "detokenize not array" 400 /detokenize '{"tokens": "1,2"}'
expect "deep nesting" 400 $C "$(printf '[%.0s' $(seq 1 5000))"
expect "unknown endpoint" 404 /v1/embeddings '{"input": "x"}'
check_eq "wrong method" 405 "$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "$SERVE_URL/v1/completions")"

# body limits: declared length, and chunked upload without a length
head -c 200000 /dev/zero | tr '\0' 'a' >"$SERVE_TMP/big"
code=$(curl -s -o "$SERVE_TMP/b" -w '%{http_code}' "${AUTH[@]}" --data-binary @"$SERVE_TMP/big" "$SERVE_URL$C")
check_eq "huge body -> 413" 413 "$code"
code=$(curl -s -o "$SERVE_TMP/b" -w '%{http_code}' "${AUTH[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$SERVE_TMP/big" "$SERVE_URL$C")
check_eq "huge chunked body -> 413" 413 "$code"

# auth: missing, wrong, wrong scheme, a prefix of the key; /health needs none
code=$(curl -s -o "$SERVE_TMP/b" -w '%{http_code}' "$SERVE_URL$C" -d '{"prompt": "x", "max_tokens": 1}')
check_eq "no key -> 401" 401 "$code"
check_eq "401 type" authentication_error "$(jget o.error.type <"$SERVE_TMP/b")"
for bad in "Bearer wrong" "Bearer ${KEY}x" "Bearer ${KEY:0:8}" "Basic $KEY" "Bearer"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $bad" "$SERVE_URL/v1/models")
    check_eq "bad key '$bad' -> 401" 401 "$code"
done
check_eq "metrics need the key" 401 "$(curl -s -o /dev/null -w '%{http_code}' "$SERVE_URL/metrics")"
check_eq "health needs no key" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$SERVE_URL/health")"

# malformed HTTP on a raw socket: MHD answers 400 (or closes) and the server lives on
port=${SERVE_URL##*:}
raw() { # raw BYTES -> first status line (or "closed")
    exec 3<>"/dev/tcp/127.0.0.1/$port" || { echo closed; return; }
    printf '%b' "$1" >&3
    local line
    IFS= read -r -t 5 line <&3 || line=closed
    exec 3<&- 3>&-
    echo "${line%%$'\r'}"
}
for req in 'GARBAGE\r\n\r\n' 'POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n' \
           'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"prompt"' \
           'GET /health HTTP/9.9\r\n\r\n' 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n'; do
    line=$(raw "$req")
    case "$line" in HTTP/1.?\ 4*|HTTP/1.?\ 505*|closed) ok=1 ;; *) ok=0 ;; esac
    check "raw malformed HTTP gets 4xx/505 or close: ${req:0:30} -> $line" test $ok = 1
done
# a client that sends half a body and disappears
( exec 3<>"/dev/tcp/127.0.0.1/$port"; printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nAuthorization: Bearer %s\r\n\r\n{"prompt": "ab' "$KEY" >&3; exec 3<&- )

# a bounded, seeded fuzz of every POST endpoint: never a 5xx (but 503), always an error body
fz=$(node "$SERVE_DIR/fuzz.mjs" "$SERVE_URL" 300 "$KEY")
check "fuzz: 300 mutated requests, no 5xx, error bodies well-formed ($fz)" test $? = 0

# still serving
check_eq "health after abuse" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$SERVE_URL/health")"
r=$(post $C '{"prompt": "ROMEO:", "max_tokens": 8, "temperature": 0}' "${AUTH[@]}")
check_eq "a normal request after abuse" 200 "$(last_status)"
check_eq "normal request generated 8 tokens" 8 "$(echo "$r" | jget o.usage.completion_tokens)"
m=$(curl -s "${AUTH[@]}" "$SERVE_URL/metrics")
check "4xx counted in metrics" grep -q '^ggx_requests_total{endpoint="/v1/completions",status="400"} [1-9]' <<<"$m"
serve_stop
check_eq "clean exit after abuse" 0 $?
serve_finish
