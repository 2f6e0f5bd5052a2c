// latentwire's decoder for JavaScript: IRs (docs/ir-format.md) to the very pixels the
// Python client decodes, in browsers and in Node 18+.
//
//   import { decode } from 'latentwire';
//   const image = await decode(irBytes, { baseUrl: 'https://latentwire.example' });
//   canvas.getContext('2d').putImageData(image, 0, 0);
import { IRError } from './src/errors.js';
import { decodeHyper, decodeLatent } from './src/latent.js';
import { MAX_PIXELS } from './src/package.js';
import { DecoderStore } from './src/store.js';
import { synthesize } from './src/synthesis.js';
import { parseIR } from './src/wire.js';

export { IRError } from './src/errors.js';
export { Decoder, DecoderStore } from './src/store.js';
export { MAX_DEPLOYMENT_CODE, MAX_IR_BYTES, MAX_SIDE, MODEL_CODES, parseIR, VERSION } from './src/wire.js';
export { digestOf, MAX_PIXELS, parsePackage } from './src/package.js';

/**
 * The most values a latent may hold (an Int32Array of 256 MiB): a 4096x4096 image through
 * the shipped photo codecs has 6.3 M; a package of a latent beyond it is refused unread.
 */
const MAX_LATENT = 2 ** 26;

/**
 * @typedef {object} DecodedImage
 * @property {number} width
 * @property {number} height
 * @property {Uint8ClampedArray} data RGBA, row-major, alpha 255 (grayscale: R = G = B)
 */

/**
 * @typedef {object} CodeLengths where the bits of an IR went, by latent position
 * @property {number} width latent columns
 * @property {number} height latent rows
 * @property {Float64Array} bits height*width: the code lengths, -log2(frequency / 2^16),
 *   of every symbol decoded at each position (all channels; a hyperprior's side
 *   information shared out over the positions it covers)
 */

/**
 * @typedef {import('./src/store.js').StoreOptions & {store?: DecoderStore, codeLengths?: boolean}} DecodeOptions
 *   `store`: the DecoderStore to use; without one, a store is made from the options
 *   and kept for later calls with the same settings (equal baseUrl, apiKey, cacheDir,
 *   packageDirs...; the same `packages`, `fetchPackage`, `ort` objects), in any options
 *   object. `codeLengths`: also give each image a `codeLengths` property ({@link CodeLengths}).
 */

/** The options a DecoderStore reads (StoreOptions): what an implicit store is keyed by. */
const STORE_OPTIONS = ['packages', 'packageDirs', 'cacheDir', 'browserCache', 'baseUrl', 'apiKey', 'fetchPackage', 'ort', 'numThreads', 'wasmPaths'];
/** Implicit stores: at most this many are kept (the oldest made is dropped first). */
const MAX_STORES = 16;
/** @type {Map<string, DecoderStore>} */
const stores = new Map();
const objectIds = new WeakMap();
let nextObjectId = 0;

/** A string equal for equal plain settings; an object (packages, a function) by identity. */
function settingsKey(options) {
  return JSON.stringify(
    STORE_OPTIONS.map((name) => {
      let value = options[name];
      if (name === 'packageDirs' && value !== undefined) value = [value].flat();
      if (value !== null && (typeof value === 'object' || typeof value === 'function') && !Array.isArray(value)) {
        if (!objectIds.has(value)) objectIds.set(value, nextObjectId++);
        return { object: objectIds.get(value) };
      }
      return value === undefined ? null : value;
    }),
  );
}

/** @param {DecodeOptions} [options] */
function storeFor(options) {
  if (options?.store) return options.store;
  const key = settingsKey(options ?? {});
  let store = stores.get(key);
  if (!store) {
    if (stores.size >= MAX_STORES) stores.delete(stores.keys().next().value);
    stores.set(key, (store = new DecoderStore({ ...options })));
  }
  return store;
}

/**
 * Decode one IR into its image: a real `ImageData` where the platform has one (browsers),
 * else a plain {width, height, data} object of the same shape.
 * Rejects with {@link IRError} (and nothing else) for bad input.
 * @param {Uint8Array | ArrayBuffer} ir
 * @param {DecodeOptions} [options]
 * @returns {Promise<ImageData | DecodedImage>}
 */
export async function decode(ir, options) {
  return (await decodeBatch([ir], options))[0];
}

/**
 * Decode many IRs (any mix of models). Every IR is parsed before any is decoded; the
 * first bad one rejects the whole batch with an {@link IRError}.
 * @param {Iterable<Uint8Array | ArrayBuffer>} irs
 * @param {DecodeOptions} [options]
 * @returns {Promise<Array<ImageData | DecodedImage>>}
 */
export async function decodeBatch(irs, options) {
  if (typeof irs?.[Symbol.iterator] !== 'function' || typeof irs === 'string') {
    throw new IRError('not-bytes', 'decodeBatch takes an iterable (e.g. an array) of IRs');
  }
  const store = storeFor(options);
  const parsed = Array.from(irs, (ir) => parseIR(ir));
  const images = [];
  for (const ir of parsed) {
    const decoder = await store.get(ir.model, ir.digest);
    images.push(await decodeWith(decoder, ir, options?.codeLengths === true));
  }
  return images;
}

/**
 * The latent geometry of an IR, checked before anything is allocated
 * (decoding.Decoder.latent_shape).
 */
function latentShape(pkg, ir) {
  const [, height, width] = pkg.imageShape;
  let shape;
  if (height) {
    if (ir.size && (ir.size[0] !== height || ir.size[1] !== width)) {
      throw new IRError('bad-size', `${ir.model} codes ${height}x${width} images, the IR says ${ir.size[0]}x${ir.size[1]}`);
    }
    shape = pkg.latentShape;
  } else {
    if (!ir.size) throw new IRError('bad-size', `an IR for ${ir.model} must carry the image size`);
    if (ir.size[0] * ir.size[1] > MAX_PIXELS) {
      throw new IRError('bad-size', `IR image size ${ir.size[0]}x${ir.size[1]} is over the ${MAX_PIXELS}-pixel limit`);
    }
    const s = pkg.stride;
    shape = [pkg.latentShape[0], Math.ceil(ir.size[0] / s), Math.ceil(ir.size[1] / s)];
  }
  if (shape[0] * shape[1] * shape[2] > MAX_LATENT) {
    throw new IRError('bad-decoder', `${ir.model}'s latent of ${shape.join('x')} values is over the limit of ${MAX_LATENT}`);
  }
  return shape;
}

async function decodeWith(decoder, ir, wantLengths) {
  const pkg = decoder.package;
  // No digest check here: the store is keyed by (model, digest), so its decoder is the IR's.
  const shape = latentShape(pkg, ir);
  const bits = wantLengths ? new Float64Array(shape[1] * shape[2]) : undefined;
  const latent = pkg.hyper ? decodeHyper(ir.payload, pkg, shape, bits) : decodeLatent(ir.payload, pkg.tables, shape, bits);
  const [height, width] = ir.size ?? pkg.imageShape.slice(1);
  const data = await synthesize(decoder.runner, pkg, latent, shape, height, width);
  const image = typeof globalThis.ImageData === 'function' ? new globalThis.ImageData(data, width, height) : { width, height, data };
  if (bits) image.codeLengths = { width: shape[2], height: shape[1], bits };
  return image;
}
