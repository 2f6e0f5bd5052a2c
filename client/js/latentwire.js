// latentwire's decoder for JavaScript: IRs (docs/ir-format.md) to the very pixels the
// Python client decodes, in browsers and in Node 18+.
//
//   import { decode } from 'latentwire';
//   const image = await decode(irBytes, { baseUrl: 'https://latentwire.example' });
//   canvas.getContext('2d').putImageData(image, 0, 0);
import { IRError } from './src/errors.js';
import { decodeHyper, decodeLatent } from './src/latent.js';
import { DecoderStore } from './src/store.js';
import { synthesize } from './src/synthesis.js';
import { parseIR } from './src/wire.js';

export { IRError } from './src/errors.js';
export { Decoder, DecoderStore } from './src/store.js';
export { MAX_IR_BYTES, MAX_SIDE, MODEL_CODES, parseIR, VERSION } from './src/wire.js';
export { digestOf, parsePackage } from './src/package.js';

/** The largest image this client decodes (as the Python client's MAX_PIXELS). */
export const MAX_PIXELS = 4096 * 4096;

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
 *   (and kept for later calls with the same options object). `codeLengths`: also give
 *   each image a `codeLengths` property ({@link CodeLengths}).
 */

const stores = new WeakMap();
let defaultStore = null;

/** @param {DecodeOptions} [options] */
function storeFor(options) {
  if (options?.store) return options.store;
  if (!options) return (defaultStore ??= new DecoderStore());
  let store = stores.get(options);
  if (!store) stores.set(options, (store = new DecoderStore(options)));
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
  if (height) {
    if (ir.size && (ir.size[0] !== height || ir.size[1] !== width)) {
      throw new IRError('bad-size', `${ir.model} codes ${height}x${width} images, the IR says ${ir.size[0]}x${ir.size[1]}`);
    }
    return pkg.latentShape;
  }
  if (!ir.size) throw new IRError('bad-size', `an IR for ${ir.model} must carry the image size`);
  if (ir.size[0] * ir.size[1] > MAX_PIXELS) {
    throw new IRError('bad-size', `IR image size ${ir.size[0]}x${ir.size[1]} is over the ${MAX_PIXELS}-pixel limit`);
  }
  const s = pkg.stride;
  return [pkg.latentShape[0], Math.ceil(ir.size[0] / s), Math.ceil(ir.size[1] / s)];
}

async function decodeWith(decoder, ir, wantLengths) {
  const pkg = decoder.package;
  if (ir.digest !== decoder.digest) {
    throw new IRError('digest-mismatch', `IR was made for a different version of ${ir.model}`);
  }
  const shape = latentShape(pkg, ir);
  const bits = wantLengths ? new Float64Array(shape[1] * shape[2]) : undefined;
  const latent = pkg.hyper ? decodeHyper(ir.payload, pkg, shape, bits) : decodeLatent(ir.payload, pkg.tables, shape, bits);
  const [height, width] = ir.size ?? pkg.imageShape.slice(1);
  const data = await synthesize(decoder.runner, pkg, latent, shape, height, width);
  const image = typeof globalThis.ImageData === 'function' ? new globalThis.ImageData(data, width, height) : { width, height, data };
  if (bits) image.codeLengths = { width: shape[2], height: shape[1], bits };
  return image;
}
