// Every IR the Python test wrote decodes to the Python client's pixels (at most 1 apart).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decode, decodeBatch, DecoderStore, IRError, parseIR } from '../latentwire.js';
import { golden, GOLDEN, SKIP_GOLDEN } from './helpers.js';

test('IRs decode to the Python client pixels', { skip: SKIP_GOLDEN }, async () => {
  const { packageDirs, cases } = golden();
  const store = new DecoderStore({ packageDirs });
  const maxDifference = {};
  const differing = {};
  for (const c of cases) {
    const image = await decode(c.ir, { store });
    assert.equal(image.width, c.width, c.name);
    assert.equal(image.height, c.height, c.name);
    assert.equal(image.data.length, c.width * c.height * 4);
    let max = 0;
    let count = 0;
    for (let p = 0; p < c.width * c.height; p++) {
      for (let k = 0; k < 3; k++) {
        const expected = c.pixels[c.channels === 1 ? p : 3 * p + k];
        const d = Math.abs(image.data[4 * p + k] - expected);
        if (d) count++;
        max = Math.max(max, d);
      }
      assert.equal(image.data[4 * p + 3], 255);
    }
    maxDifference[c.model] = Math.max(maxDifference[c.model] ?? 0, max);
    differing[c.model] = (differing[c.model] ?? 0) + count;
  }
  writeFileSync(join(GOLDEN, 'report.json'), JSON.stringify({ maxDifference, differing }, null, 1));
  for (const [model, max] of Object.entries(maxDifference)) assert.ok(max <= 1, `${model}: pixels ${max} apart`);
});

test('a batch decodes to what the IRs decode to one by one', { skip: SKIP_GOLDEN }, async () => {
  const { packageDirs, cases } = golden();
  const options = { packageDirs };
  const some = cases.filter((c) => c.width * c.height <= 140 * 100);
  const batch = await decodeBatch(
    some.map((c) => c.ir),
    options,
  );
  for (const [i, c] of some.entries()) assert.deepEqual(batch[i].data, (await decode(c.ir, options)).data, c.name);
});

test('mutated IRs: refused where the Python client refuses them, else the same pixels', { skip: SKIP_GOLDEN }, async () => {
  const { packageDirs, mutated } = golden();
  const store = new DecoderStore({ packageDirs, browserCache: false });
  let decoded = 0;
  for (const m of mutated) {
    const ir = new Uint8Array(readFileSync(join(GOLDEN, `${m.name}.lw`)));
    let image = null;
    try {
      image = await decode(ir, { store });
    } catch (e) {
      assert.ok(e instanceof IRError, `${m.name}: ${e?.name}: ${e?.message}`);
      assert.ok(!m.decoded, `${m.name}: the Python client decodes it, the JS one says ${e.code}: ${e.message}`);
      continue;
    }
    assert.ok(m.decoded, `${m.name}: the Python client refuses it, the JS one decodes it`);
    decoded++;
    const pixels = new Uint8Array(readFileSync(join(GOLDEN, `${m.name}.pixels`)));
    assert.deepEqual([image.width, image.height], [m.width, m.height]);
    for (let p = 0; p < m.width * m.height; p++) {
      for (let k = 0; k < 3; k++) {
        const expected = pixels[m.channels === 1 ? p : 3 * p + k];
        assert.ok(Math.abs(image.data[4 * p + k] - expected) <= 1, m.name);
      }
    }
  }
  assert.ok(decoded > 0 && decoded < mutated.length, `${decoded} of ${mutated.length} decoded`);
});

test('code lengths add up to the payload and leave the pixels unchanged', { skip: SKIP_GOLDEN }, async () => {
  const { packageDirs, cases } = golden();
  const store = new DecoderStore({ packageDirs, browserCache: false });
  const seen = new Set();
  for (const c of cases) {
    if (seen.has(c.model)) continue; // one IR of each model is enough
    seen.add(c.model);
    const image = await decode(c.ir, { store, codeLengths: true });
    assert.deepEqual(image.data, (await decode(c.ir, { store })).data, c.name);
    const { width, height, bits } = image.codeLengths;
    assert.equal(bits.length, width * height);
    assert.ok(bits.every((b) => b >= 0));
    // The ideal code length is what the coder spends, give or take its final words.
    const payloadBits = 8 * parseIRPayloadLength(c.ir);
    const total = bits.reduce((a, b) => a + b, 0);
    assert.ok(total <= 1.001 * payloadBits + 8 && total >= 0.98 * payloadBits - 96, `${c.name}: ${total} of ${payloadBits} bits`);
  }
});

function parseIRPayloadLength(ir) {
  return parseIR(ir).payload.length;
}
