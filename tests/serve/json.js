// json.js — print a JavaScript expression over the JSON read from stdin (bound to `o`):
//   curl ... | node tests/serve/json.js 'o.choices[0].text'
// Strings print raw, everything else as JSON. Exit 1 if stdin is not JSON.
let s = '';
process.stdin.on('data', (d) => (s += d));
process.stdin.on('end', () => {
  let o;
  try { o = JSON.parse(s); } catch (e) { console.error(`not JSON: ${s.slice(0, 200)}`); process.exit(1); }
  const v = eval(process.argv[2]);
  process.stdout.write(typeof v === 'string' ? v : JSON.stringify(v));
});
