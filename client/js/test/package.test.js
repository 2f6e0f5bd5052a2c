// Decoder packages: a corrupt, wrong or foreign package is refused, whatever way it comes
// (given, on disk, from a server); a good one is fetched once, checked and cached.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { decode as unpack, encode } from '@msgpack/msgpack';
import { decode, digestOf, DecoderStore, IRError, parseIR, parsePackage } from '../latentwire.js';
import { readPackageFile } from '../src/store.js';
import { golden, serve, SKIP_GOLDEN } from './helpers.js';

const options = { skip: SKIP_GOLDEN };

async function fixture() {
  const { packageDirs, cases } = golden();
  const c = cases.find((x) => x.model === 'fashion-mnist-q2');
  const pkg = await readPackageFile(join(packageDirs[0], c.model));
  return { c, pkg, ir: parseIR(c.ir), cases, packageDirs };
}

/** A package changed in its fields, and an IR of the same payload naming its digest. */
async function altered(pkg, ir, change) {
  const fields = unpack(pkg);
  change(fields);
  const data = encode(fields);
  return { data, ir: encode([2, 2, await digestOf(data), ir.payload]) };
}

async function code(promise) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof IRError, `${e?.name}: ${e?.message}`);
    return e.code;
  }
  return 'decoded';
}

test('a corrupt or foreign package is refused, before use', options, async () => {
  const { c, pkg, ir } = await fixture();
  const model = c.model;
  const flipped = pkg.slice();
  flipped[flipped.length >> 1] ^= 1;
  // Given for the model but not the IR's digest: another version of the model.
  assert.equal(await code(decode(c.ir, { packages: { [model]: flipped } })), 'digest-mismatch');
  // Offered by the server: refused (not cached).
  const cacheDir = mkdtempSync(join(tmpdir(), 'lw-'));
  assert.equal(await code(decode(c.ir, { fetchPackage: async () => flipped, cacheDir })), 'bad-decoder');
  assert.deepEqual(readdirSync(cacheDir), []);
  const other = await readPackageFile(join((await fixture()).packageDirs[0], 'mnist-q2'));
  assert.equal(await code(decode(c.ir, { fetchPackage: async () => other })), 'bad-decoder');
  // Packages with the IR's digest but broken inside (the IR names their digest).
  const broken = [
    (f) => (f.format = 4),
    (f) => (f.model = 'mnist-q2'),
    (f) => (f.radius = 0),
    (f) => (f.contexts = 65),
    (f) => (f.frequencies = f.frequencies.subarray(0, f.frequencies.length - 2)),
    (f) => (f.frequencies = f.frequencies.slice().fill(0)),
    (f) => (f.image_shape = [2, 28, 28]),
    (f) => (f.onnx = new Uint8Array([1, 2, 3])),
    (f) => (f.stride = 0),
    (f) => delete f.latent_shape,
  ];
  for (const change of broken) {
    const bad = await altered(pkg, ir, change);
    assert.equal(await code(decode(bad.ir, { packages: { [model]: bad.data } })), 'bad-decoder', String(change));
  }
  assert.throws(() => parsePackage(encode([1, 2])), { code: 'bad-decoder' });
  assert.throws(() => parsePackage(new Uint8Array([0xde, 0xff])), { code: 'bad-decoder' });
  const future = await altered(pkg, ir, (f) => (f.format = 4));
  assert.throws(() => parsePackage(future.data), /format 4 is not supported/);
  rmSync(cacheDir, { recursive: true });
});

test('a format-3 package is checked as the Python reader checks it', options, async () => {
  const { packageDirs, cases } = golden();
  const c = cases.find((x) => x.model === 'hyper-mean-test');
  const pkg = await readPackageFile(join(packageDirs[1], c.model));
  const ir = parseIR(c.ir);
  const broken = [
    (f) => (f.hyper.constants.weight_bits = 7),
    (f) => (f.hyper.constants.extra = 1),
    (f) => f.scale_radii.pop(),
    (f) => delete f.excess_radius,
    (f) => (f.excess_radius = 4096),
    (f) => (f.excess_frequencies = f.excess_frequencies.subarray(2)),
    (f) => (f.scale_frequencies = f.scale_frequencies.subarray(2)),
    (f) => (f.hyper.layers[0].kind = 'dense'),
    (f) => (f.hyper.layers[0].shape[2] += 1),
    (f) => (f.hyper.layers[1].weight = new Uint8Array(new Int16Array(f.hyper.layers[1].weight.length / 2).fill(-32768).buffer)),
    (f) => (f.hyper.layers[1].weight = f.hyper.layers[1].weight.subarray(2)),
    (f) => (f.hyper.layers[0].bias = new Uint8Array(new BigInt64Array(f.hyper.layers[0].bias.length / 8).fill(2n ** 41n).buffer)),
    (f) => f.hyper.layers.pop(),
    (f) => (f.hyper.layers = []),
    (f) => (f.hyper.mean = false),
    (f) => (f.latent_shape = [24, 4, 4]),
  ];
  for (const change of broken) {
    const fields = unpack(pkg);
    change(fields);
    const data = encode(fields);
    const bad = encode([2, c.model, await digestOf(data), ir.payload, ...ir.size]);
    assert.equal(await code(decode(bad, { packages: { [c.model]: data } })), 'bad-decoder', String(change));
  }
});

test('packages are fetched from the server once, checked, and cached', options, async () => {
  const { c, pkg, ir, cases, packageDirs } = await fixture();
  const hex = ir.digest.toString(16).padStart(4, '0');
  const requests = [];
  let etag = `"${hex}"`;
  const { server, baseUrl: root } = await serve((request, response) => {
    // As latentwire's server answers: gzipped, under a weak ETag, to a client taking gzip.
    const gzipped = /\bgzip\b/.test(request.headers['accept-encoding'] ?? '');
    requests.push([request.url, request.headers.authorization, gzipped]);
    if (request.url === `/models/${c.model}/decoder`) {
      const zipped = { 'Content-Encoding': 'gzip', ETag: `W/${etag}` };
      response.writeHead(200, { 'Content-Type': 'application/msgpack', ...(gzipped ? zipped : { ETag: etag }) });
      response.end(gzipped ? gzipSync(pkg) : pkg);
    } else {
      response.writeHead(404).end();
    }
  });
  const baseUrl = `${root}/`;
  const cacheDir = mkdtempSync(join(tmpdir(), 'lw-'));
  try {
    const expected = await decode(c.ir, { packageDirs });
    const store = new DecoderStore({ baseUrl, cacheDir, apiKey: 'k' });
    const image = await decode(c.ir, { store });
    assert.deepEqual(image.data, expected.data);
    await decode(c.ir, { store }); // in memory now
    assert.deepEqual(requests, [[`/models/${c.model}/decoder`, 'Bearer k', true]]);
    assert.deepEqual(readdirSync(cacheDir), [`${c.model}-${hex}.msgpack`]);
    // A new store (a new page, a new process) finds it in the cache.
    const again = await decode(c.ir, { baseUrl, cacheDir });
    assert.deepEqual(again.data, expected.data);
    assert.equal(requests.length, 1);
    // A server with another version of the model (its ETag says so), and no server at all.
    etag = '"0000"';
    const fresh = { baseUrl, cacheDir: mkdtempSync(join(tmpdir(), 'lw-')) };
    assert.equal(await code(decode(c.ir, fresh)), 'digest-mismatch');
    const unknown = cases.find((x) => x.model === 'mnist-q2');
    assert.equal(await code(decode(unknown.ir, { baseUrl })), 'fetch-failed'); // a 404
    assert.equal(await code(decode(c.ir, { baseUrl: 'http://127.0.0.1:1' })), 'fetch-failed');
  } finally {
    server.close();
    rmSync(cacheDir, { recursive: true });
  }
});

test('the cache folder is the Python client\'s layout, and a stale cached file is not used', options, async () => {
  const { c, pkg } = await fixture();
  const cacheDir = mkdtempSync(join(tmpdir(), 'lw-'));
  const ir = parseIR(c.ir);
  const name = `${c.model}-${ir.digest.toString(16).padStart(4, '0')}.msgpack`;
  writeFileSync(join(cacheDir, name), pkg);
  assert.equal((await decode(c.ir, { cacheDir })).width, 28);
  const flipped = pkg.slice();
  flipped[100] ^= 1;
  writeFileSync(join(cacheDir, name), flipped);
  // A new store (equal settings share one, which has the good package in memory now).
  assert.equal(await code(decode(c.ir, { store: new DecoderStore({ cacheDir }) })), 'digest-mismatch');
  rmSync(cacheDir, { recursive: true });
});

test('a model folder\'s package is read gzip-compressed or plain; a corrupt gzip is refused', options, async () => {
  const { c, pkg, packageDirs } = await fixture();
  const expected = await decode(c.ir, { packageDirs });
  const root = mkdtempSync(join(tmpdir(), 'lw-'));
  try {
    mkdirSync(join(root, c.model));
    // A new store each time: the implicit one would keep the decoder it found first.
    const fresh = () => ({ store: new DecoderStore({ packageDirs: root }) });
    writeFileSync(join(root, c.model, 'decoder.msgpack'), pkg);
    assert.deepEqual((await decode(c.ir, fresh())).data, expected.data);
    writeFileSync(join(root, c.model, 'decoder.msgpack.gz'), gzipSync(pkg));
    rmSync(join(root, c.model, 'decoder.msgpack'));
    assert.deepEqual((await decode(c.ir, fresh())).data, expected.data);
    // Cut short, two members, plain bytes under the .gz name: refused (as in Python).
    const bad = [gzipSync(pkg).subarray(0, 100), Buffer.concat([gzipSync(pkg), gzipSync(pkg)]), pkg];
    for (const data of bad) {
      writeFileSync(join(root, c.model, 'decoder.msgpack.gz'), data);
      assert.equal(await code(decode(c.ir, fresh())), 'bad-decoder');
    }
  } finally {
    rmSync(root, { recursive: true });
  }
});
