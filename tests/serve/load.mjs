// load.mjs — a small client and load generator for `ggx serve` (Node >= 18, built-in fetch only).
//
//   node tests/serve/load.mjs --url http://127.0.0.1:8080 --concurrency 32 --requests 64 \
//        --max-tokens 32 [--stream] [--mixed] [--chat] [--temp 0] [--prompts N] [--key K] [--outputs]
//        [--ignore-eos] [--system-words N (chat: a shared N-word system message)]
//
// Runs `requests` completions with at most `concurrency` in flight (each worker loops until the
// request counter is exhausted, so it stops by itself). Prompt i is PROMPTS[i % prompts] — a
// distinct prompt per index so outputs can be compared with a single-client run. Prints one JSON
// object: counts, wall time, generated tokens/s, latency and time-to-first-token percentiles and,
// with --outputs, the text of every request by prompt index.
const args = process.argv.slice(2);
const opt = { url: 'http://127.0.0.1:8080', concurrency: 1, requests: 1, 'max-tokens': 32,
              temp: 0, prompts: 8, key: '', timeout: 300, 'system-words': 0 };
const flags = new Set();
for (let i = 0; i < args.length; i++) {
  const a = args[i].replace(/^--/, '');
  if (['stream', 'mixed', 'chat', 'outputs', 'ignore-eos'].includes(a)) flags.add(a);
  else opt[a] = args[++i];
}
const N = +opt.requests, C = +opt.concurrency, MAXT = +opt['max-tokens'], NP = +opt.prompts;
const WORDS = ['ROMEO', 'JULIET', 'KING', 'QUEEN', 'First Citizen', 'MENENIUS', 'GLOUCESTER',
               'LADY ANNE', 'HAMLET', 'BRUTUS', 'PETRUCHIO', 'PROSPERO', 'MIRANDA', 'LEAR'];
function prompt(i) {
  const w = WORDS[i % WORDS.length];
  return `${w}:\nWhat say you, ${WORDS[(i * 7 + 3) % WORDS.length].toLowerCase()}, to this ${i}?\n\n`;
}

async function one(i) {
  const p = prompt(i % NP);
  const stream = flags.has('stream') || (flags.has('mixed') && i % 2 === 1);
  const chat = flags.has('chat');
  const sysw = +opt['system-words'];
  const msgs = [{ role: 'user', content: p }];
  if (sysw > 0) // one shared system prompt (the prefix cache's case)
    msgs.unshift({ role: 'system', content: Array.from({ length: sysw }, (_, k) => WORDS[k % WORDS.length].toLowerCase()).join(' ') });
  const body = chat
    ? { messages: msgs, max_tokens: MAXT, temperature: +opt.temp, stream }
    : { prompt: p, max_tokens: MAXT, temperature: +opt.temp, stream };
  if (+opt.temp > 0) body.seed = 1000 + (i % NP);
  if (flags.has('ignore-eos')) body.ignore_eos = true;
  if (stream) body.stream_options = { include_usage: true }; // exact token counts
  const headers = { 'Content-Type': 'application/json' };
  if (opt.key) headers.Authorization = `Bearer ${opt.key}`;
  const t0 = performance.now();
  let ttft = null, text = '', ntok = 0, finish = null;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), +opt.timeout * 1000);
  try {
    const r = await fetch(`${opt.url}/v1/${chat ? 'chat/completions' : 'completions'}`,
                          { method: 'POST', headers, body: JSON.stringify(body), signal: ctl.signal });
    if (r.status !== 200) return { i, ok: false, status: r.status, error: await r.text() };
    if (!stream) {
      const o = await r.json();
      ttft = performance.now() - t0;
      text = chat ? o.choices[0].message.content : o.choices[0].text;
      ntok = o.usage.completion_tokens;
      finish = o.choices[0].finish_reason;
    } else {
      const dec = new TextDecoder();
      let buf = '', done = false;
      for await (const chunk of r.body) {
        buf += dec.decode(chunk, { stream: true });
        let k;
        while ((k = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, k);
          buf = buf.slice(k + 2);
          if (!ev.startsWith('data: ')) throw new Error(`bad SSE event: ${JSON.stringify(ev)}`);
          const d = ev.slice(6);
          if (d === '[DONE]') { done = true; continue; }
          if (done) throw new Error('event after [DONE]');
          const o = JSON.parse(d);
          if (o.error) throw new Error(`stream error: ${o.error.message}`);
          const piece = chat ? (o.choices[0].delta.content ?? '') : o.choices[0].text;
          if (piece.length && ttft === null) ttft = performance.now() - t0;
          text += piece;
          if (o.usage) ntok = o.usage.completion_tokens;
          if (o.choices[0].finish_reason) finish = o.choices[0].finish_reason;
        }
      }
      if (!done || buf.length) throw new Error('stream did not end with data: [DONE]');
    }
    return { i, ok: true, text, ntok, finish, ms: performance.now() - t0, ttft };
  } catch (e) {
    return { i, ok: false, error: String(e) };
  } finally {
    clearTimeout(timer);
  }
}

const results = [];
let next = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: C }, async () => {
  while (next < N) results.push(await one(next++));
}));
const wall = (performance.now() - t0) / 1000;
const ok = results.filter((r) => r.ok);
const pct = (xs, q) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return +s[Math.min(s.length - 1, Math.floor(q * s.length))].toFixed(1);
};
const lat = ok.map((r) => r.ms), ft = ok.filter((r) => r.ttft !== null).map((r) => r.ttft);
// generated tokens: usage.completion_tokens (on the last chunk when streaming)
const gen = ok.reduce((a, r) => a + r.ntok, 0);
const out = {
  requests: N, concurrency: C, ok: ok.length, failed: results.length - ok.length,
  lost: N - results.length, wall_s: +wall.toFixed(3), gen_tokens: gen,
  gen_tok_per_s: +(gen / wall).toFixed(1), req_per_s: +(ok.length / wall).toFixed(2),
  latency_ms: { p50: pct(lat, 0.5), p95: pct(lat, 0.95), max: pct(lat, 1) },
  ttft_ms: { p50: pct(ft, 0.5), p95: pct(ft, 0.95) },
  errors: results.filter((r) => !r.ok).slice(0, 5),
};
if (flags.has('outputs'))
  out.outputs = results.filter((r) => r.ok).sort((a, b) => a.i - b.i)
    .map((r) => ({ i: r.i, prompt: r.i % NP, text: r.text, finish: r.finish }));
console.log(JSON.stringify(out));
