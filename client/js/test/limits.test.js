// What a hostile decoder package can make the decoder do, and the failures around a
// store (its cache, onnxruntime), with packages made here: no Python-made data needed.
// onnxruntime is a stand-in (options.ort) where a test counts its sessions.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { encode } from '@msgpack/msgpack';
import { decode, decodeBatch, digestOf, IRError, parsePackage } from '../latentwire.js';
import { cumulative } from '../src/ans.js';
import { layerSizes, MAX_ACTIVATIONS } from '../src/hyper.js';
import { createSession, modelAtFault } from '../src/synthesis.js';
import { ansEncode, serve } from './helpers.js';

const MODEL = 'tiny-test';
const u16 = (values) => new Uint8Array(Uint16Array.from(values).buffer);

/** A format-1 package: 8x8 grayscale images, a 1x2x2 latent at stride 4, radius 1. */
function factorized() {
  return {
    format: 1,
    model: MODEL,
    image_shape: [1, 8, 8],
    latent_shape: [1, 2, 2],
    stride: 4,
    radius: 1,
    frequencies: new Uint8Array(Uint32Array.from([1, 65534, 1]).buffer),
    onnx: new Uint8Array([1, 2, 3]),
  };
}

/** A format-3 package: z of 1 channel, `layers` layers of 1 channel (the last gives M = 2). */
function hyperprior(kinds = ['deconv', 'deconv', 'conv']) {
  const layers = kinds.map((kind, i) => {
    const out = i === kinds.length - 1 ? 2 : 1;
    return { kind, shape: [out, 1, 1, 1], weight: new Uint8Array(2 * out), bias: new Uint8Array(8 * out) };
  });
  return {
    format: 3,
    model: MODEL,
    image_shape: [3, 0, 0],
    latent_shape: [2, 0, 0],
    stride: 16,
    radius: 1,
    frequencies: u16([1, 65534, 1]),
    scale_radii: new Array(64).fill(1),
    scale_frequencies: u16(new Array(64).fill([1, 65534, 1]).flat()),
    excess_radius: 1,
    excess_frequencies: u16([1, 65534, 1]),
    hyper: {
      mean: false,
      constants: { weight_bits: 8, activation_bits: 4, activation_max: 1 << 14, scales: 64, mean_max: 255 },
      layers,
    },
    onnx: new Uint8Array([1, 2, 3]),
  };
}

/** msgpack of `fields` with every string 'FLOAT:<n>' written as the float64 n. */
function withFloats(fields) {
  const bytes = Array.from(encode(fields));
  for (let i = 0; i < bytes.length; i++) {
    const len = bytes[i] - 0xa0;
    if (len < 7 || len > 31) continue;
    const text = String.fromCharCode(...bytes.slice(i + 1, i + 1 + len));
    if (!text.startsWith('FLOAT:')) continue;
    const float = new Uint8Array(8);
    new DataView(float.buffer).setFloat64(0, Number(text.slice(6)));
    bytes.splice(i, 1 + len, 0xcb, ...float);
  }
  return new Uint8Array(bytes);
}

function refused(fields, pattern) {
  const data = fields instanceof Uint8Array ? fields : encode(fields);
  assert.throws(() => parsePackage(data), (e) => e instanceof IRError && e.code === 'bad-decoder' && pattern.test(e.message));
}

async function outcome(promise) {
  try {
    await promise;
    return 'decoded';
  } catch (e) {
    assert.ok(e instanceof IRError, `${e?.name}: ${e?.message}`);
    return e.code;
  }
}

test('the packages made here read', () => {
  assert.equal(parsePackage(encode(factorized())).stride, 4);
  assert.equal(parsePackage(encode(hyperprior())).hyper.layers.length, 3);
});

test('integer fields are MessagePack integers, never floats (decoder_package._whole)', () => {
  const change = (make, edit) => {
    const f = make();
    edit(f);
    return withFloats(f);
  };
  refused(change(factorized, (f) => (f.stride = 'FLOAT:4')), /stride is not an integer/);
  refused(change(factorized, (f) => (f.radius = 'FLOAT:1')), /radius is not an integer/);
  refused(change(factorized, (f) => (f.latent_shape[1] = 'FLOAT:2')), /latent_shape is not an integer/);
  refused(change(factorized, (f) => (f.format = 'FLOAT:1')), /format .* is not supported/);
  refused(change(hyperprior, (f) => (f.hyper.layers[0].shape[0] = 'FLOAT:1')), /a layer shape is not an integer/);
  refused(change(hyperprior, (f) => (f.scale_radii[5] = 'FLOAT:1')), /scale radius is not an integer/);
  refused(change(hyperprior, (f) => (f.hyper.constants.scales = 'FLOAT:64')), /other constants/);
  // The same bytes with integers read (the float writer is not what is refused).
  assert.equal(parsePackage(withFloats(factorized())).stride, 4);
});

test('strides, fixed image sizes and hyper-synthesis depth are bounded (as the Python reader)', () => {
  const change = (make, edit) => {
    const f = make();
    edit(f);
    return f;
  };
  refused(change(factorized, (f) => (f.stride = 0)), /stride 0 out of bounds/);
  refused(change(factorized, (f) => (f.stride = 65)), /stride 65 out of bounds/);
  refused(change(hyperprior, (f) => (f.stride = 128)), /stride 128 out of bounds/);
  refused(
    change(factorized, (f) => Object.assign(f, { image_shape: [1, 8192, 8192], latent_shape: [1, 2048, 2048] })),
    /over the 16777216-pixel limit/,
  );
  refused(change(factorized, (f) => (f.latent_shape = [1, 3, 2])), /does not make 8x8 images at stride 4/);
  refused(change(factorized, (f) => (f.image_shape = [1, 8, 9])), /does not make 8x9 images at stride 4/);
  assert.equal(parsePackage(encode(change(factorized, (f) => (f.image_shape = [1, 7, 5])))).imageShape[2], 5);
  refused(hyperprior(new Array(17).fill('conv')), /a hyper-synthesis of 17 layers/);
  assert.equal(parsePackage(encode(hyperprior(new Array(16).fill('conv')))).hyper.layers.length, 16);
});

test('hyper-synthesis sizes are checked before anything is allocated', async () => {
  // 12 deconvs: each doubles both sides, so a 4x4 z gives 16384x16384 values.
  const deep = parsePackage(encode(hyperprior(new Array(12).fill('deconv'))));
  assert.deepEqual(layerSizes(deep.hyper, [1, 1, 1]).at(-1), [2, 4096, 4096]);
  assert.throws(() => layerSizes(deep.hyper, [1, 4, 4]), (e) => e.code === 'bad-decoder' && /layer 1[12] would hold/.test(e.message));
  const shallow = parsePackage(encode(hyperprior()));
  assert.throws(() => layerSizes(shallow.hyper, [1, 8192, 8192]), { code: 'bad-decoder' });
  assert.ok(2 * 1024 * 1024 <= MAX_ACTIVATIONS); // 4096x4096 through the shipped codecs' shape
  // Through decode: refused before z (or any layer) is allocated or any symbol read.
  const data = encode(hyperprior(new Array(12).fill('deconv')));
  const ir = encode([2, MODEL, await digestOf(data), new Uint8Array(8), 1024, 1024]);
  const options = { packages: { [MODEL]: data }, ort: fakeOrt(), browserCache: false };
  assert.equal(await outcome(decode(ir, options)), 'bad-decoder');
});

/**
 * A stand-in for onnxruntime-web: counts its sessions; run() gives a gray image, `scale`
 * times the latent's sides (or, with `pixel(i, j)`, that value at each pixel).
 */
function fakeOrt(create, scale = 4, pixel = () => 0) {
  const ort = {
    sessions: 0,
    Tensor: class {
      constructor(type, data, dims) {
        Object.assign(this, { type, data, dims });
      }
    },
    InferenceSession: {
      create: async () => {
        if (create) return create();
        ort.sessions++;
        const run = async (feeds) => {
          const [, , h, w] = feeds.y.dims;
          const data = Float32Array.from({ length: scale * scale * h * w }, (_, k) => pixel(Math.floor(k / (scale * w)), k % (scale * w)));
          return { x: { dims: [1, 1, scale * h, scale * w], data } };
        };
        return { inputNames: ['y'], outputNames: ['x'], run };
      },
    },
  };
  return ort;
}

test('onnxruntime failing is `synthesis`; onnxruntime refusing the model is `bad-decoder`', async () => {
  const pkg = parsePackage(encode(factorized()));
  const failing = (message, type = Error) => ({
    ort: fakeOrt(() => {
      throw new type(message);
    }),
  });
  const code = (options) => outcome(createSession(pkg, options));
  assert.equal(await code(failing("Can't create a session. ERROR_CODE: 7, ERROR_MESSAGE: protobuf parsing failed.")), 'bad-decoder');
  assert.equal(await code(failing("Can't create a session. ERROR_CODE: 1, ERROR_MESSAGE: Missing opset")), 'bad-decoder');
  assert.equal(await code(failing("Can't create a session. ERROR_CODE: 6, ERROR_MESSAGE: bad_alloc")), 'synthesis');
  assert.equal(await code(failing('no available backend found. ERR: [wasm] TypeError: fetch failed')), 'synthesis');
  assert.equal(await code(failing('Aborted(OOM)', WebAssembly.RuntimeError)), 'synthesis');
  assert.equal(modelAtFault(new Error('ERROR_CODE: 10, ERROR_MESSAGE: invalid graph')), true);
  assert.equal(modelAtFault(new TypeError('Failed to fetch dynamically imported module')), false);
  // The real onnxruntime on bytes that are not a model.
  assert.equal(await code({}), 'bad-decoder');
});

test('decodeBatch of something not iterable is `not-bytes`', async () => {
  for (const irs of [5, null, undefined, {}, 'abc', new Uint8Array(0).buffer]) {
    assert.equal(await outcome(decodeBatch(irs)), 'not-bytes', String(irs));
  }
  assert.deepEqual(await decodeBatch([]), []);
});

/** A server of one package at /models/tiny-test/decoder, counting its requests. */
async function packageServer(data) {
  const requests = [];
  const { server, baseUrl } = await serve((request, response) => {
    requests.push(request.url);
    response.writeHead(200, { 'Content-Type': 'application/msgpack' }).end(data);
  });
  return { requests, server, baseUrl };
}

test('equal settings share one implicit store: one fetch, one onnxruntime session', async () => {
  const data = encode(factorized());
  const ir = encode([2, MODEL, await digestOf(data), new Uint8Array(0)]);
  const { requests, server, baseUrl } = await packageServer(data);
  try {
    const ort = fakeOrt();
    for (let i = 0; i < 4; i++) {
      // A new options object each time, as in a loop; the payload does not matter here.
      const result = await outcome(decode(ir, { baseUrl, ort, browserCache: false }));
      assert.ok(['decoded', 'corrupt-payload'].includes(result), result);
    }
    assert.deepEqual([requests.length, ort.sessions], [1, 1]);
    await outcome(decode(ir, { baseUrl: `${baseUrl}/`, ort, browserCache: false, apiKey: 'another-key' }));
    assert.deepEqual([requests.length, ort.sessions], [2, 2]); // other settings: another store
  } finally {
    server.close();
  }
});

test('a cache that cannot be written fails no decode', async () => {
  const data = encode(factorized());
  const ir = encode([2, MODEL, await digestOf(data), new Uint8Array(0)]);
  const folder = mkdtempSync(join(tmpdir(), 'lw-'));
  const notAFolder = join(folder, 'file');
  writeFileSync(notAFolder, 'x');
  try {
    const options = { fetchPackage: async () => data, cacheDir: join(notAFolder, 'cache'), ort: fakeOrt() };
    assert.ok(['decoded', 'corrupt-payload'].includes(await outcome(decode(ir, options))));
    assert.equal(options.ort.sessions, 1);
  } finally {
    rmSync(folder, { recursive: true });
  }
});

/** Bytes that are no package but have the digest `digest` (16 bits: found in ~65536 tries). */
function collision(digest) {
  for (let i = 0; ; i++) {
    const bytes = Buffer.from(`not a package ${i}`);
    const hash = createHash('sha256').update(bytes).digest();
    if (((hash[0] << 8) | hash[1]) === digest) return bytes;
  }
}

test('a corrupt cached package is deleted, then fetched again', async () => {
  const data = encode(factorized());
  const digest = await digestOf(data);
  const ir = encode([2, MODEL, digest, new Uint8Array(0)]);
  const cacheDir = mkdtempSync(join(tmpdir(), 'lw-'));
  const path = join(cacheDir, `${MODEL}-${digest.toString(16).padStart(4, '0')}.msgpack`);
  try {
    const corrupt = collision(digest);
    assert.equal(await digestOf(corrupt), digest);
    writeFileSync(path, corrupt);
    const ort = fakeOrt();
    const result = await outcome(decode(ir, { cacheDir, fetchPackage: async () => data, ort }));
    assert.ok(['decoded', 'corrupt-payload'].includes(result), result);
    assert.deepEqual(readFileSync(path), Buffer.from(data)); // replaced by the fetched one
    // With nothing to fetch from: refused, and the corrupt copy is gone.
    writeFileSync(path, corrupt);
    assert.equal(await outcome(decode(ir, { cacheDir, ort })), 'bad-decoder');
    assert.equal(existsSync(path), false);
  } finally {
    rmSync(cacheDir, { recursive: true });
  }
});

/** A fixed-size format-3 package: 40x24 grayscale images, a 2x3x2 latent at stride 16. */
function fixedHyperprior(code) {
  return { ...hyperprior(), image_shape: [1, 40, 24], latent_shape: [2, 3, 2], code };
}

/** A payload of all zeros for `fixedHyperprior`: z (1x1x1) and y (2x3x2), none on an edge. */
function zeros() {
  const cdf = cumulative([1, 65534, 1]);
  return ansEncode(new Array(1 + 12).fill(1), new Array(13).fill(cdf));
}

test('a package may carry a deployment code, 1..32 (decoder_package._code)', () => {
  assert.equal(parsePackage(encode(factorized())).code, null);
  assert.equal(parsePackage(encode({ ...factorized(), code: null })).code, null);
  assert.equal(parsePackage(encode({ ...factorized(), code: 1 })).code, 1);
  assert.equal(parsePackage(encode({ ...factorized(), format: 2, positions: 1, contexts: 1, frequencies: u16([1, 65534, 1]), code: 32 })).code, 32);
  assert.equal(parsePackage(encode({ ...hyperprior(), code: 7 })).code, 7);
  for (const code of [0, 33, -7, 256]) refused({ ...factorized(), code }, new RegExp(`model code ${code} is not 1 to 32`));
  refused({ ...hyperprior(), code: 40 }, /model code 40 is not 1 to 32/);
  refused({ ...factorized(), code: '7' }, /code is not an integer/);
  refused({ ...factorized(), code: true }, /code is not an integer/);
  refused(withFloats({ ...factorized(), code: 'FLOAT:7' }), /code is not an integer/);
});

test('a format-3 package may be of one fixed size, its latent the image at its stride', () => {
  const pkg = parsePackage(encode(fixedHyperprior(7)));
  assert.deepEqual([pkg.imageShape, pkg.latentShape, pkg.code], [[1, 40, 24], [2, 3, 2], 7]);
  assert.deepEqual(parsePackage(encode(hyperprior())).imageShape, [3, 0, 0]); // any size, still
  const change = (edit) => Object.assign(fixedHyperprior(), edit);
  refused(change({ latent_shape: [2, 0, 0] }), /disagree on being of fixed size/);
  refused(change({ image_shape: [1, 0, 0] }), /disagree on being of fixed size/);
  refused(change({ image_shape: [1, 40, 0] }), /disagree on being of fixed size/);
  refused(change({ latent_shape: [2, 3, 3] }), /a latent of 3x3 does not make 40x24 images at stride 16/);
  refused(change({ latent_shape: [2, 2, 2] }), /does not make 40x24 images/);
  refused(change({ image_shape: [1, 8192, 4096], latent_shape: [2, 512, 256] }), /over the 16777216-pixel limit/);
});

test("a fixed-size hyperprior IR named by its code: no size, the package's latent, cropped", async () => {
  const data = encode(fixedHyperprior(7));
  const digest = await digestOf(data);
  const ir = encode([2, -7, digest, zeros()]);
  // 1 inside 40x24, -1 beyond: a crop anywhere but the top-left shows as black pixels.
  const ort = fakeOrt(undefined, 16, (i, j) => (i < 40 && j < 24 ? 1 : -1));
  const options = { packages: { [MODEL]: data }, ort, browserCache: false };
  const image = await decode(ir, options);
  assert.deepEqual([image.width, image.height], [24, 40]); // synthesized as 32x48
  assert.ok(image.data.every((v) => v === 255));
  // The latent is the package's: codeLengths cover its 3x2 grid.
  const { codeLengths } = await decode(ir, { ...options, codeLengths: true });
  assert.deepEqual([codeLengths.width, codeLengths.height], [2, 3]);
  // The size the package codes may be given too; another is refused.
  assert.equal((await decode(encode([2, -7, digest, zeros(), 40, 24]), options)).width, 24);
  assert.equal(await outcome(decode(encode([2, -7, digest, zeros(), 48, 32]), options)), 'bad-size');
  // By id, the same package decodes alike; a code and an id "7" are not the same model.
  assert.deepEqual((await decode(encode([2, MODEL, digest, zeros()]), options)).data, image.data);
  const byName = { packages: { 7: data }, ort, browserCache: false };
  assert.equal(await outcome(decode(encode([2, '7', digest, zeros()]), byName)), 'bad-decoder');
  assert.equal((await decode(ir, byName)).width, 24);
});

test('an IR names its package by code: another code or digest is refused', async () => {
  const data = encode(fixedHyperprior(7));
  const digest = await digestOf(data);
  const ir = encode([2, -7, digest, zeros()]);
  const ort = fakeOrt(undefined, 16);
  const coded = (code) => encode(fixedHyperprior(code));
  // Given packages of other codes (or none) are not the IR's; one of its code but another
  // digest is another version of its model.
  const given = (packages) => outcome(decode(ir, { packages, ort, browserCache: false }));
  assert.equal(await given({ [MODEL]: coded(8) }), 'no-decoder');
  assert.equal(await given({ [MODEL]: coded(undefined) }), 'no-decoder');
  assert.equal(await given({ [MODEL]: encode({ ...fixedHyperprior(7), stride: 15 }) }), 'digest-mismatch');
  assert.equal(await given({ a: coded(8), b: [coded(9), data] }), 'decoded');
  // Fetched: a package of the IR's digest but another code (or none) is refused.
  for (const code of [8, undefined]) {
    const other = coded(code);
    const wrong = encode([2, -7, await digestOf(other), zeros()]);
    const result = await outcome(decode(wrong, { fetchPackage: async () => other, ort, browserCache: false }));
    assert.equal(result, 'bad-decoder');
    await assert.rejects(decode(wrong, { fetchPackage: async () => other, ort }), /decoder package is for (model code 8|no model code), not model code 7/);
  }
  assert.equal(await outcome(decode(ir, { fetchPackage: async () => coded(8), ort })), 'bad-decoder'); // another digest
  // fetchPackage is asked for the code.
  const asked = [];
  await decode(ir, { fetchPackage: async (model) => asked.push(model) && data, ort: fakeOrt(undefined, 16) });
  assert.deepEqual(asked, [7]);
});

test('packageDirs: a code is found by the manifest.json of a model folder (as the Python client)', async () => {
  const data = encode(fixedHyperprior(7));
  const ir = encode([2, -7, await digestOf(data), zeros()]);
  const root = mkdtempSync(join(tmpdir(), 'lw-'));
  const folder = (name, manifest, pkg) => {
    mkdirSync(join(root, name));
    if (manifest) writeFileSync(join(root, name, 'manifest.json'), JSON.stringify(manifest));
    if (pkg) writeFileSync(join(root, name, 'decoder.msgpack'), pkg);
  };
  try {
    const options = () => ({ packageDirs: [join(root, 'none'), root], ort: fakeOrt(undefined, 16), browserCache: false });
    folder('no-manifest', null, data);
    folder('not-json', null, data);
    writeFileSync(join(root, 'not-json', 'manifest.json'), '{');
    folder('eight', { id: 'eight', code: 8 }, data);
    writeFileSync(join(root, 'a-file'), 'x');
    assert.equal(await outcome(decode(ir, options())), 'no-decoder');
    folder('no-package', { id: 'no-package', code: 7 }, null);
    assert.equal(await outcome(decode(ir, options())), 'no-decoder');
    // Its manifest says 7, its package says 8: refused (decoding.DecoderStore._load).
    folder('liar', { id: 'liar', code: 7 }, coded(8));
    assert.equal(await outcome(decode(encode([2, -7, await digestOf(coded(8)), zeros()]), options())), 'bad-decoder');
    assert.equal(await outcome(decode(ir, options())), 'digest-mismatch');
    folder('seven', { id: MODEL, code: 7 }, data);
    assert.equal((await decode(ir, options())).height, 40);
  } finally {
    rmSync(root, { recursive: true });
  }

  function coded(code) {
    return encode(fixedHyperprior(code));
  }
});

test("baseUrl: a code's model is the one GET /models gives that code, its package fetched by id", async () => {
  const data = encode(fixedHyperprior(7));
  const ir = encode([2, -7, await digestOf(data), zeros()]);
  const requests = [];
  const { server, baseUrl: root } = await serve((request, response) => {
    requests.push(request.url);
    if (request.url === '/models') {
      const hosted = [{ id: 'classifier' }, { id: 'other', code: 3 }, { id: MODEL, code: 7 }];
      response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(hosted));
    } else if (request.url === `/models/${MODEL}/decoder`) {
      response.writeHead(200, { 'Content-Type': 'application/msgpack' }).end(data);
    } else {
      response.writeHead(404).end();
    }
  });
  const baseUrl = `${root}/`;
  const cacheDir = mkdtempSync(join(tmpdir(), 'lw-'));
  try {
    const options = { baseUrl, cacheDir, ort: fakeOrt(undefined, 16), browserCache: false };
    assert.equal((await decode(ir, options)).height, 40);
    assert.equal((await decode(ir, options)).height, 40); // kept in memory
    assert.deepEqual(requests, ['/models', `/models/${MODEL}/decoder`]);
    assert.deepEqual(readdirSync(cacheDir), []); // its files are named by id: not for a code
    assert.equal(await outcome(decode(encode([2, -9, 1, zeros()]), options)), 'no-decoder'); // no model of code 9
  } finally {
    server.close();
    rmSync(cacheDir, { recursive: true });
  }
});
