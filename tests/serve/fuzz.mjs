// fuzz.mjs — send N mutated requests (bounded, seeded) to every POST endpoint of `ggx serve`,
// a few at a time; every answer must be an HTTP status < 500 (or 503 busy) and, for 4xx, an
// OpenAI error body. Prints one JSON line {sent, statuses, bad}.
//   node tests/serve/fuzz.mjs URL N [KEY]
const [url, nArg, key] = process.argv.slice(2);
const N = +nArg || 200;
let seed = 12345;
const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
const seeds = [
  ['/v1/completions', { prompt: 'ROMEO:', max_tokens: 4, temperature: 0, stop: ['\n\n'], seed: 3 }],
  ['/v1/completions', { prompt: [5, 6, 7], max_tokens: 3, stream: true }],
  ['/v1/chat/completions', { messages: [{ role: 'system', content: 'Be.' }, { role: 'user', content: 'Hi' }], max_tokens: 4 }],
  ['/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }] }], max_tokens: 2, stream: true, stream_options: { include_usage: true } }],
  ['/tokenize', { content: 'hello there', add_special: true }],
  ['/detokenize', { tokens: [10, 20, 30] }],
];
const junk = [null, true, false, 0, -1, 1e308, -1e308, 0.5, '', 'x'.repeat(300), '\u0000', '\ud800',
              [], [[]], {}, { a: { b: [] } }, [1, 'a', null], 2 ** 31, -(2 ** 53), 'ROMEO:'];
function mutateValue(v, depth = 0) {
  if (depth < 3 && v && typeof v === 'object' && rnd(3)) {
    const keys = Object.keys(v);
    if (keys.length) {
      const k = keys[rnd(keys.length)];
      const c = Array.isArray(v) ? [...v] : { ...v };
      if (rnd(5) === 0) delete c[k]; else c[k] = mutateValue(v[k], depth + 1);
      return c;
    }
  }
  return junk[rnd(junk.length)];
}
function mutateText(s) {
  const b = Buffer.from(s);
  switch (rnd(4)) {
    case 0: return b.subarray(0, rnd(b.length + 1));                      // truncate
    case 1: { const c = Buffer.from(b); for (let i = 0; i < 1 + rnd(4); i++) c[rnd(c.length)] = rnd(256); return c; }
    case 2: return Buffer.concat([b, Buffer.from('{"'.repeat(rnd(50)))]);  // trailing garbage
    default: return Buffer.from('['.repeat(1 + rnd(3000)));                // nesting
  }
}
const statuses = {};
const bad = [];
let next = 0;
async function one(i) {
  const [path, base] = seeds[rnd(seeds.length)];
  const body = rnd(2) ? Buffer.from(JSON.stringify(mutateValue(base))) : mutateText(JSON.stringify(base));
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  try {
    const r = await fetch(url + path, { method: 'POST', headers, body, signal: AbortSignal.timeout(60000) });
    const t = await r.text();
    statuses[r.status] = (statuses[r.status] || 0) + 1;
    if (r.status >= 500 && r.status !== 503) bad.push({ i, path, status: r.status, t: t.slice(0, 200) });
    if (r.status >= 400) {
      let ok = false;
      try { const e = JSON.parse(t).error; ok = typeof e.message === 'string' && typeof e.type === 'string'; } catch (x) {}
      if (!ok) bad.push({ i, path, status: r.status, body: t.slice(0, 200) });
    }
  } catch (e) {
    bad.push({ i, path, error: String(e) });
  }
}
await Promise.all(Array.from({ length: 4 }, async () => { while (next < N) await one(next++); }));
console.log(JSON.stringify({ sent: N, statuses, bad: bad.slice(0, 10) }));
process.exit(bad.length ? 1 : 0);
