// The ANS decoder against an independent BigInt transcription of the spec (the encoder
// and decoder of tests/shared/ans_reference.py), symbol for symbol and state for state;
// and the small pieces of arithmetic the pixels depend on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AnsDecoder, cumulative } from '../src/ans.js';
import { planTiles, roundHalfEven, toPixel } from '../src/synthesis.js';
import { ansEncode as encode, random } from './helpers.js';

/** A random row of n frequencies, each >= 1, summing to 2^16 (sometimes very skewed). */
function row(rand, n) {
  const weights = Array.from({ length: n }, () => rand() ** (rand() < 0.5 ? 1 : 8));
  const total = weights.reduce((a, b) => a + b, 0);
  const f = weights.map((w) => 1 + Math.floor((w / total) * (65536 - n)));
  f[0] += 65536 - f.reduce((a, b) => a + b, 0);
  return f;
}

/** The reference decoder's state after each symbol, in BigInt. */
function referenceStates(payload, cdfs) {
  const padded = new Uint8Array(Math.ceil(payload.length / 4) * 4);
  padded.set(payload);
  const view = new DataView(padded.buffer);
  const words = Array.from({ length: padded.length / 4 }, (_, i) => BigInt(view.getUint32(4 * i, true)));
  let unread = words.length;
  let state = 0n;
  if (unread) state = words[--unread];
  if (unread) state = (state << 32n) | words[--unread];
  const out = [];
  for (const cdf of cdfs) {
    const q = state & 0xffffffn;
    let s = 0;
    while (BigInt(cdf[s + 1]) <= q) s++;
    state = (state >> 24n) * BigInt(cdf[s + 1] - cdf[s]) + q - BigInt(cdf[s]);
    if (state < 2n ** 32n && unread) state = (state << 32n) | words[--unread];
    out.push([s, state]);
  }
  return out;
}

test('cumulative tables follow the integer formula', () => {
  const cdf = cumulative([65534, 1, 1]);
  assert.deepEqual(Array.from(cdf), [0, Math.floor((65534 * (2 ** 24 - 3)) / 65536) + 1, Math.floor((65535 * (2 ** 24 - 3)) / 65536) + 2, 2 ** 24]);
});

test('symbols and states are the reference decoder\'s, on valid and on random payloads', () => {
  const rand = random(1);
  for (let trial = 0; trial < 300; trial++) {
    const tables = Array.from({ length: rand.int(1, 4) }, () => cumulative(row(rand, rand.int(2, trial % 3 ? 12 : 300))));
    const count = rand.int(0, 400);
    const cdfs = Array.from({ length: count }, () => tables[rand.int(0, tables.length - 1)]);
    const symbols = cdfs.map((cdf) => rand.int(0, cdf.length - 2));
    const valid = encode(symbols, cdfs);
    for (const payload of [valid, rand.bytes(rand.int(0, 64))]) {
      let decoder;
      try {
        decoder = new AnsDecoder(payload);
      } catch (e) {
        assert.equal(e.code, 'corrupt-payload'); // a last word of zero
        continue;
      }
      const expected = referenceStates(payload, cdfs);
      for (const [i, cdf] of cdfs.entries()) {
        const s = decoder.decode(cdf);
        assert.equal(s, expected[i][0]);
        assert.equal(decoder.state, expected[i][1]);
      }
      if (payload === valid) {
        assert.deepEqual(cdfs.map((_, i) => expected[i][0]), symbols);
        assert.ok(decoder.isEmpty());
      }
    }
  }
});

test('a payload ending in a zero word is refused', () => {
  assert.throws(() => new AnsDecoder(new Uint8Array([1, 0, 0, 0, 0])), { code: 'corrupt-payload' });
  assert.ok(new AnsDecoder(new Uint8Array(0)).isEmpty());
});

test('the decoder is fast: a million symbols well under a second', () => {
  const rand = random(2);
  const cdf = cumulative(row(rand, 127));
  const cdfs = Array.from({ length: 100000 }, () => cdf);
  const payload = encode(cdfs.map(() => rand.int(0, 126)), cdfs);
  const start = performance.now();
  for (let k = 0; k < 10; k++) {
    const decoder = new AnsDecoder(payload);
    for (let i = 0; i < 100000; i++) decoder.decode(cdf);
  }
  const ms = performance.now() - start;
  assert.ok(ms < 2000, `${ms} ms for 10^6 symbols`);
});

test('pixels are float32 (x + 1) * 127.5 rounded half to even, as numpy does', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 127.5, 128.5, 254.5, 3.2, 3.7].map(roundHalfEven), [0, 2, 2, 128, 128, 254, 3, 4]);
  assert.equal(toPixel(-2), 0);
  assert.equal(toPixel(7), 255);
  assert.equal(toPixel(0), 128); // 127.5 -> 128 (even)
  assert.equal(toPixel(Math.fround(-1 + 253 / 127.5)), 253);
});

test('synthesis windows are shared/tiling.py codec_tiles', () => {
  assert.deepEqual(planTiles(7, 7), [{ top: 0, left: 0, height: 7, width: 7, window: [0, 0, 7, 7] }]);
  const tiles = planTiles(4, 96);
  assert.deepEqual(
    tiles.map((t) => [t.top, t.left, t.height, t.width, t.window]),
    [
      [0, 0, 4, 64, [0, 0, 4, 72]],
      [0, 64, 4, 32, [0, 24, 4, 96]],
    ],
  );
});
