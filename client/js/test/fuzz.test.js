// Malformed, truncated, foreign and future-version IRs: only IRError may come out (with
// a documented code), never a RangeError or TypeError, a hang or a huge allocation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encode } from '@msgpack/msgpack';
import { decode, DecoderStore, IRError, parseIR } from '../latentwire.js';
import { golden, random, SKIP_GOLDEN } from './helpers.js';

const CODES = new Set([
  'not-bytes', 'too-large', 'malformed', 'version', 'unknown-model', 'bad-size', 'no-decoder',
  'digest-mismatch', 'bad-decoder', 'corrupt-payload', 'fetch-failed', 'synthesis',
]); // prettier-ignore

/** Decode and return the image, or the IRError's code; anything else fails the test. */
async function outcome(ir, options) {
  try {
    return await decode(ir, options);
  } catch (e) {
    assert.ok(e instanceof IRError, `${e?.name}: ${e?.message}`);
    assert.ok(CODES.has(e.code), e.code);
    return e.code;
  }
}

async function refused(ir, code, options = { browserCache: false }) {
  const result = await outcome(ir, options);
  assert.equal(result, code);
}

/** An IR from msgpack-encodable fields. */
const ir = (...fields) => encode(fields);

test('bad fields get an IRError of the right code', async () => {
  const payload = new Uint8Array([5, 6]);
  await refused(ir(3, 1, 258, payload), 'version');
  await refused(ir(1, 1, 258, payload), 'version');
  await refused(ir('2', 1, 258, payload), 'malformed');
  await refused(ir(true, 1, 258, payload), 'malformed');
  await refused(new Uint8Array([0x94, 0xcb, ...new Uint8Array(new Float64Array([2]).buffer).reverse(), 1, 2, 0xc4, 0]), 'malformed');
  await refused(ir(2, 99, 258, payload), 'unknown-model');
  await refused(ir(2, -33, 258, payload), 'unknown-model'); // -1..-32: a deployment's codes
  await refused(ir(2, '', 258, payload), 'malformed');
  await refused(ir(2, null, 258, payload), 'malformed');
  await refused(ir(2, 'someone-elses-model', 258, payload), 'no-decoder');
  await refused(ir(2, '../../etc/passwd', 258, payload), 'no-decoder');
  await refused(ir(2, 1, 1 << 16, payload), 'malformed');
  await refused(ir(2, 1, -1, payload), 'malformed');
  await refused(new Uint8Array([0x94, 2, 1, 0xca, 0x3f, 0x80, 0, 0, 0xc4, 0]), 'malformed'); // digest 1.0
  await refused(ir(2, 1, 258, 'not binary'), 'malformed');
  await refused(ir(2, 1, 258, [1, 2]), 'malformed');
  await refused(ir(2, 'photo-q3', 258, payload, 40000, 10), 'bad-size');
  await refused(ir(2, 'photo-q3', 258, payload, 0, 10), 'bad-size');
  await refused(ir(2, 'photo-q3', 258, payload, 10, 2.5), 'bad-size');
  await refused(ir(2, 1, 258, payload, 10), 'malformed');
  await refused(ir(2, 1, 258), 'malformed');
  await refused(ir(2, 1, 258, payload, 1, 2, 3), 'malformed');
  await refused(encode({ version: 2 }), 'malformed');
  await refused(new Uint8Array([0x94, 2, 1, 0, 0xc4, 0, 0]), 'malformed'); // extra byte
  await refused(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]), 'malformed'); // 2^32 fields
  await refused(new Uint8Array([0x94, 2, 1, 0, 0xc6, 0xff, 0xff, 0xff, 0xff]), 'malformed'); // 4 GB bin
  await refused(new Uint8Array([0x94, 2, 0xdb, 0x7f, 0xff, 0xff, 0xff]), 'malformed'); // 2 GB str
  await refused(new Uint8Array(0), 'malformed');
  await refused('not bytes', 'not-bytes');
  await refused(null, 'not-bytes');
  await refused([0x94, 2, 1, 0], 'not-bytes');
  assert.throws(() => parseIR(new Uint8Array((64 << 20) + 1)), { code: 'too-large' });
  // The golden bytes of docs/ir-format.md.
  assert.deepEqual(parseIR(new Uint8Array([0x94, 0x02, 0x01, 0xcd, 0x01, 0x02, 0xc4, 0x02, 0x05, 0x06])), {
    model: 'fashion-mnist-q1',
    digest: 0x0102,
    payload: new Uint8Array([5, 6]),
    size: null,
  });
});

test("a deployment's model code: -1..-32 on the wire, the code 1..32 parsed; others refused", async () => {
  const payload = new Uint8Array([5, 6]);
  for (const code of [1, 7, 32]) {
    const bytes = ir(2, -code, 258, payload);
    assert.equal(bytes.length, 4 + 3 + 3); // the code is one byte, as a shipped model's
    assert.deepEqual(parseIR(bytes), { model: code, digest: 258, payload, size: null });
    assert.deepEqual(parseIR(ir(2, -code, 258, payload, 40, 24)).size, [40, 24]);
    // A code no package here carries: no decoder (not an unknown model).
    await refused(bytes, 'no-decoder');
  }
  for (const model of [-33, -128, -(2 ** 31), -(2 ** 40)]) {
    assert.throws(() => parseIR(ir(2, model, 258, payload)), (e) => e.code === 'unknown-model' && /out of the deployments' range \(-1 to -32\)/.test(e.message));
  }
  // 0 is no code, and a float -7.0 is no integer (as wire.py reads them).
  assert.throws(() => parseIR(ir(2, 0, 258, payload)), { code: 'unknown-model' });
  const float = new Uint8Array([0x94, 2, 0xcb, ...new Uint8Array(new Float64Array([-7]).buffer).reverse(), 1, 0xc4, 0]);
  assert.throws(() => parseIR(float), { code: 'malformed', message: 'IR model is neither a known code nor a model id' });
  // The golden bytes of docs/ir-format.md ("Deployment codes"): code 3 is -3, fixint 0xfd.
  assert.deepEqual(parseIR(new Uint8Array([0x94, 0x02, 0xfd, 0xcd, 0x0a, 0x0b, 0xc4, 0x02, 0x05, 0x06])), {
    model: 3,
    digest: 0x0a0b,
    payload: new Uint8Array([5, 6]),
    size: null,
  });
});

test('random bytes only ever give an IRError', async () => {
  const rand = random(3);
  for (let i = 0; i < 3000; i++) {
    const bytes = rand.bytes(rand.int(0, 40));
    if (i % 2 && bytes.length) bytes[0] = 0x94 + 2 * rand.int(0, 1); // often an array of 4 or 6
    const result = await outcome(bytes, { browserCache: false });
    assert.equal(typeof result, 'string');
  }
});

/** flip / truncate / append / splice, as tests/client/test_decode.py mutates IRs. */
function mutate(rand, original) {
  let ir = Array.from(original);
  const action = ['flip', 'truncate', 'append', 'splice'][rand.int(0, 3)];
  if (action === 'flip') {
    for (let k = rand.int(1, 4); k > 0; k--) ir[rand.int(0, ir.length - 1)] ^= 1 << rand.int(0, 7);
  } else if (action === 'truncate') {
    ir = ir.slice(0, rand.int(0, ir.length - 1));
  } else if (action === 'append') {
    ir.push(...rand.bytes(rand.int(1, 32)));
  } else {
    ir.splice(rand.int(0, ir.length), 0, ...rand.bytes(rand.int(1, 8)));
  }
  return new Uint8Array(ir);
}

test('mutated IRs decode to an image of their size or give an IRError', { skip: SKIP_GOLDEN }, async () => {
  const { packageDirs, cases } = golden();
  const store = new DecoderStore({ packageDirs, browserCache: false });
  const rand = random(4);
  const small = cases.filter((c) => c.width === 28);
  const photos = cases.filter((c) => c.width !== 28 && c.width * c.height <= 140 * 100);
  const counts = {};
  for (let i = 0; i < 2500; i++) {
    // Mostly 28x28 IRs (fast); photo and hyperprior IRs less often (each decode costs more).
    const c = i % 10 ? small[rand.int(0, small.length - 1)] : photos[rand.int(0, photos.length - 1)];
    // Half the time only the payload changes: the entropy decoder gets the garbage.
    let mutated;
    if (i % 2) {
      const { model, digest, payload, size } = parseIR(c.ir);
      const named = typeof model === 'number' ? -model : model; // a deployment's code: -code
      mutated = ir(2, named, digest, mutate(rand, payload), ...(size ?? []));
    } else {
      mutated = mutate(rand, c.ir);
    }
    const result = await outcome(mutated, { store });
    const key = typeof result === 'string' ? result : 'decoded';
    counts[key] = (counts[key] ?? 0) + 1;
    if (typeof result !== 'string') {
      assert.ok(result.width <= 1 << 15 && result.height <= 1 << 15);
      assert.equal(result.data.length, 4 * result.width * result.height);
      if (c.width === 28) assert.deepEqual([result.width, result.height], [28, 28]);
    }
  }
  console.log(JSON.stringify(counts));
  assert.ok(counts['corrupt-payload'] > 0 && counts.malformed > 0, JSON.stringify(counts));
});

test('a wrong digest, an unknown model and a size a model does not take are refused', { skip: SKIP_GOLDEN }, async () => {
  const { packageDirs, cases } = golden();
  const options = { packageDirs, browserCache: false };
  const small = cases.find((c) => c.width === 28);
  const photo = cases.find((c) => c.model === 'photo-q3');
  const a = parseIR(small.ir);
  const p = parseIR(photo.ir);
  await refused(ir(2, a.model, a.digest ^ 1, a.payload), 'digest-mismatch', options);
  await refused(ir(2, 'no-such-model', a.digest, a.payload), 'no-decoder', options);
  await refused(ir(2, a.model, a.digest, a.payload, 4000, 4000), 'bad-size', options);
  await refused(ir(2, p.model, p.digest, p.payload), 'bad-size', options); // no size
  await refused(ir(2, p.model, p.digest, p.payload, 4097, 4096), 'bad-size', options); // over 4096^2 pixels
  await refused(ir(2, p.model, p.digest, p.payload, 32768, 32768), 'bad-size', options);
  // Another size of the right model: a latent of another shape, which the payload does not code.
  await refused(ir(2, p.model, p.digest, p.payload, 200, 300), 'corrupt-payload', options);
  await refused(ir(2, a.model, a.digest, a.payload.subarray(0, a.payload.length - 1)), 'corrupt-payload', options);
  await refused(ir(2, a.model, a.digest, new Uint8Array([...a.payload, 1])), 'corrupt-payload', options);
});
