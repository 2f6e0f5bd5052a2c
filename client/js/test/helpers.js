// Shared by the tests: the golden folder the Python test writes (LATENTWIRE_JS_GOLDEN),
// a seeded random generator (reproducible fuzzing), the reference ANS encoder and a local
// test server.
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

export const GOLDEN = process.env.LATENTWIRE_JS_GOLDEN;
export const SKIP_GOLDEN = GOLDEN && existsSync(join(GOLDEN, 'cases.json')) ? false : 'needs LATENTWIRE_JS_GOLDEN (tests/client/test_js_decoder.py makes it)';

/** @returns {{packageDirs: string[], cases: {name: string, model: string | number, height: number, width: number, channels: number, ir: Uint8Array, pixels: Uint8Array}[]}} */
export function golden() {
  const spec = JSON.parse(readFileSync(join(GOLDEN, 'cases.json'), 'utf8'));
  for (const c of spec.cases) {
    c.ir = new Uint8Array(readFileSync(join(GOLDEN, `${c.name}.lw`)));
    c.pixels = new Uint8Array(readFileSync(join(GOLDEN, `${c.name}.pixels`)));
  }
  return spec;
}

/** mulberry32: a small seeded generator of floats in [0, 1). */
export function random(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)); // lo..hi inclusive
  next.bytes = (n) => Uint8Array.from({ length: n }, () => next.int(0, 255));
  return next;
}

/**
 * The reference encoder (tests/shared/ans_reference.py): symbols pushed last first, each
 * with its coder's cumulative table (src/ans.js `cumulative`); trailing zero bytes stripped.
 */
export function ansEncode(symbols, cdfs) {
  const words = [];
  let state = 0n;
  for (let i = symbols.length - 1; i >= 0; i--) {
    const cdf = cdfs[i];
    const left = BigInt(cdf[symbols[i]]);
    const p = BigInt(cdf[symbols[i] + 1]) - left;
    if (state >> 40n >= p) {
      words.push(Number(state & 0xffffffffn));
      state >>= 32n;
    }
    state = ((state / p) << 24n) | (left + (state % p));
  }
  while (state) {
    words.push(Number(state & 0xffffffffn));
    state >>= 32n;
  }
  const bytes = new Uint8Array(4 * words.length);
  const view = new DataView(bytes.buffer);
  words.forEach((w, i) => view.setUint32(4 * i, w, true));
  let end = bytes.length;
  while (end && bytes[end - 1] === 0) end--;
  return bytes.subarray(0, end);
}

/** A local HTTP server of `handler(request, response)` on a free loopback port. */
export async function serve(handler) {
  const server = createServer(handler);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, baseUrl: `http://127.0.0.1:${server.address().port}` };
}
