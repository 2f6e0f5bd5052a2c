// Decoder packages (docs/ir-format.md, "The decoder package"): read and checked as
// latentwire/shared/decoder_package.py reads them, formats 1, 2 and 3.
import { IRError } from './errors.js';
import { checkLayers, CONSTANTS, SCALES } from './hyper.js';
import { unpack } from './msgpack.js';
import { MAX_DEPLOYMENT_CODE } from './wire.js';

export const FORMATS = [1, 2, 3];
export const MAX_CONTEXTS = 64;
export const MAX_PACKAGE_BYTES = 256 << 20;
/** Table radii (of the latent, of y's scale levels, of the excesses) are below this. */
export const MAX_RADIUS = 4096;
/** The most layers a hyper-synthesis may have (decoder_package.py). */
export const MAX_LAYERS = 16;
/** Strides out of 1..MAX_STRIDE are refused (DecoderPackage.__post_init__). */
export const MAX_STRIDE = 64;
/** The largest image this client decodes (as the Python client's MAX_PIXELS): a fixed-size model's, or an IR's size. */
export const MAX_PIXELS = 4096 * 4096;
const FREQUENCY_TOTAL = 2 ** 16;

/**
 * The package's digest: the first 2 bytes of its SHA-256, big-endian (what IRs carry).
 * @param {Uint8Array} data
 * @returns {Promise<number>}
 */
export async function digestOf(data) {
  const subtle = globalThis.crypto?.subtle ?? (await nodeWebCrypto()).subtle;
  const hash = new Uint8Array(await subtle.digest('SHA-256', data));
  return (hash[0] << 8) | hash[1];
}

// Node 18 has WebCrypto only as node:crypto's webcrypto (global from Node 19 on);
// browsers and newer Node never get here.
const nodeWebCrypto = async () => (await import('node:crypto')).webcrypto;

/** @param {number} digest */
export const digestHex = (digest) => digest.toString(16).padStart(4, '0');

/**
 * Integer frequency tables (rows of 2R+1 values, each >= 1, each row summing to 2^16),
 * as SymbolTables checks them.
 * @typedef {object} Tables
 * @property {number} radius
 * @property {Uint32Array} frequencies rows one after the other
 * @property {number} rows
 * @property {number} positions
 * @property {number} contexts
 * @property {number} channels rows / (positions * contexts)
 */

/**
 * @typedef {object} DecoderPackage
 * @property {number} format
 * @property {string} model
 * @property {number | null} code a deployment's model code (1..32): what its IRs name it
 *   by instead of the id; null for a package without one
 * @property {number[]} imageShape [C, H, W]; H = W = 0 for size-agnostic models
 * @property {number[]} latentShape [M, h, w]; h = w = 0 for size-agnostic models
 * @property {number} stride
 * @property {Tables} tables of the latent (format 3: of the hyper-latent z)
 * @property {Uint8Array} onnx
 * @property {{scaleTables: Tables[], excess: Tables, mean: boolean, layers: import('./hyper.js').Layer[]} | null} hyper
 *   format 3: the scale tables of y, the table of the excesses beyond their edges, the
 *   integer hyper-synthesis
 */

class PackageError extends Error {}

const fail = (message) => {
  throw new PackageError(message);
};

/**
 * An integer field: a MessagePack integer, never a float (a MsgpackFloat, see msgpack.js),
 * bool or string (decoder_package._whole).
 */
function int(value, what) {
  if (typeof value === 'bigint') value = Number(value);
  if (!Number.isSafeInteger(value)) fail(`${what} is not an integer (${value})`);
  return value;
}

function shape3(value, what) {
  if (!Array.isArray(value) || value.length !== 3) fail(`${what} is not a list of 3 integers`);
  return value.map((v) => int(v, what));
}

function bin(value, what) {
  if (!(value instanceof Uint8Array)) fail(`${what} is not binary`);
  return value;
}

/** Little-endian unsigned integers of `bytes` (2 or 4 bytes each). */
function unsigned(bytes, size, what) {
  if (bytes.length % size) fail(`${what} is not a whole number of ${8 * size}-bit values`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint32Array(bytes.length / size);
  for (let i = 0; i < out.length; i++) out[i] = size === 2 ? view.getUint16(2 * i, true) : view.getUint32(4 * i, true);
  return out;
}

/** @returns {Tables} */
function tables(radius, frequencies, positions = 1, contexts = 1) {
  const n = 2 * radius + 1;
  if (frequencies.length % n || frequencies.length === 0) fail(`frequency tables do not match radius ${radius}`);
  const rows = frequencies.length / n;
  if (rows % (positions * contexts)) fail(`${rows} tables do not divide into ${positions} positions x ${contexts} contexts`);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let i = r * n; i < (r + 1) * n; i++) {
      if (frequencies[i] < 1) fail('a frequency table has an entry below 1');
      sum += frequencies[i];
    }
    if (sum !== FREQUENCY_TOTAL) fail('a frequency table does not sum to 2^16');
  }
  return { radius, frequencies, rows, positions, contexts, channels: rows / (positions * contexts) };
}

/**
 * A package's deployment code, read without checking the rest (a store looking for a
 * code among packages given by id): null for none, and for bytes that are no package.
 * @param {Uint8Array} data
 * @returns {number | null}
 */
export function packageCode(data) {
  if (data.length > MAX_PACKAGE_BYTES) return null;
  try {
    const code = unpack(data, { maxStrLength: 1024, maxArrayLength: 256 })?.code;
    return Number.isInteger(code) ? code : null;
  } catch {
    return null;
  }
}

/**
 * Read and check a decoder package (its digest is checked by the caller).
 * @param {Uint8Array} data
 * @returns {DecoderPackage}
 */
export function parsePackage(data) {
  if (data.length > MAX_PACKAGE_BYTES) throw new IRError('bad-decoder', 'decoder package is too large');
  try {
    let d;
    try {
      d = unpack(data, { maxStrLength: 1024, maxArrayLength: 256 });
    } catch (e) {
      fail(`not msgpack (${e?.message ?? e})`);
    }
    if (d === null || typeof d !== 'object' || Array.isArray(d) || d instanceof Uint8Array) fail('not a map');
    if (!FORMATS.includes(d.format)) {
      throw new IRError(
        'bad-decoder',
        `decoder package format ${JSON.stringify(d.format ?? null)} is not supported (this client reads formats ${FORMATS.join(', ')}; a newer latentwire may read it)`,
      );
    }
    const format = d.format;
    const imageShape = shape3(d.image_shape, 'image_shape');
    const latentShape = shape3(d.latent_shape, 'latent_shape');
    const radius = int(d.radius, 'radius');
    if (!(radius > 0 && radius < MAX_RADIUS)) fail(`radius ${radius} out of bounds`);
    if (typeof d.model !== 'string') fail('model is not a string');
    const stride = int(d.stride, 'stride');
    // Optional in every format; a nil one is none (decoder_package._code).
    const code = d.code === undefined || d.code === null ? null : int(d.code, 'code');
    if (code !== null && !(code >= 1 && code <= MAX_DEPLOYMENT_CODE)) fail(`model code ${code} is not 1 to ${MAX_DEPLOYMENT_CODE}`);
    // Checks the Python reader leaves to decoding time (where they fail less clearly).
    if (![1, 3].includes(imageShape[0])) fail(`${imageShape[0]} image channels (1 or 3 decode to pixels)`);
    if (!(stride >= 1 && stride <= MAX_STRIDE)) fail(`stride ${stride} out of bounds (1..${MAX_STRIDE})`);
    if (latentShape[0] < 1 || imageShape.some((v) => v < 0) || latentShape.some((v) => v < 0)) fail('bad shapes');
    if ((imageShape[1] === 0) !== (latentShape[1] === 0) || (imageShape[2] === 0) !== (latentShape[2] === 0)) {
      fail('image and latent shapes disagree on being of fixed size');
    }
    if (imageShape[1] && imageShape[1] * imageShape[2] > MAX_PIXELS) {
      fail(`images of ${imageShape[1]}x${imageShape[2]} are over the ${MAX_PIXELS}-pixel limit`);
    }
    // A fixed-size latent is the image's, strided (as a size-agnostic model's is derived).
    for (const i of [1, 2]) {
      if (imageShape[i] && latentShape[i] !== Math.ceil(imageShape[i] / stride)) {
        fail(`a latent of ${latentShape[1]}x${latentShape[2]} does not make ${imageShape[1]}x${imageShape[2]} images at stride ${stride}`);
      }
    }
    const onnx = bin(d.onnx, 'onnx');
    if (format === 3) return { ...hyperPackage(d, imageShape, latentShape, radius), format, model: d.model, code, stride, onnx };
    const positions = format === 2 ? int(d.positions, 'positions') : 1;
    const contexts = format === 2 ? int(d.contexts, 'contexts') : 1;
    if (!(positions === 1 || positions === latentShape[1] * latentShape[2]) || !(contexts > 0 && contexts <= MAX_CONTEXTS)) {
      fail(`${positions} positions, ${contexts} contexts do not fit ${latentShape}`);
    }
    const frequencies = unsigned(bin(d.frequencies, 'frequencies'), format === 1 ? 4 : 2, 'frequencies');
    const t = tables(radius, frequencies, positions, contexts);
    if (t.rows !== latentShape[0] * positions * contexts) fail(`${t.rows} tables for a latent of shape ${latentShape}`);
    return { format, model: d.model, code, imageShape, latentShape, stride, tables: t, onnx, hyper: null };
  } catch (e) {
    if (e instanceof PackageError) throw new IRError('bad-decoder', `malformed decoder package (${e.message})`);
    if (e instanceof IRError) throw e;
    throw new IRError('bad-decoder', `malformed decoder package (${e?.message ?? e})`);
  }
}

// Of any size (H = W = 0) or of one fixed size: parsePackage has checked the shapes agree.
function hyperPackage(d, imageShape, latentShape, radius) {
  const zTables = tables(radius, unsigned(bin(d.frequencies, 'frequencies'), 2, 'frequencies'));
  const radii = d.scale_radii;
  if (!Array.isArray(radii) || radii.length !== SCALES) fail("scale tables do not match this decoder's scale levels");
  radii.forEach((r, i) => {
    radii[i] = int(r, 'scale radius');
    if (!(radii[i] > 0 && radii[i] < MAX_RADIUS)) fail("scale tables do not match this decoder's scale levels");
  });
  const flat = unsigned(bin(d.scale_frequencies, 'scale_frequencies'), 2, 'scale_frequencies');
  if (flat.length !== radii.reduce((s, r) => s + 2 * r + 1, 0)) fail('scale tables are cut short');
  let start = 0;
  const scaleTables = radii.map((r) => {
    const t = tables(r, flat.subarray(start, start + 2 * r + 1));
    start += 2 * r + 1;
    return t;
  });
  // The excesses of values beyond their table's edge have a table of their own.
  const excessRadius = int(d.excess_radius, 'excess_radius');
  if (!(excessRadius > 0 && excessRadius < MAX_RADIUS)) fail(`excess radius ${excessRadius} out of bounds`);
  const excessFrequencies = unsigned(bin(d.excess_frequencies, 'excess_frequencies'), 2, 'excess_frequencies');
  if (excessFrequencies.length !== 2 * excessRadius + 1) fail('the excess table is cut short');
  const excess = tables(excessRadius, excessFrequencies);
  const h = d.hyper;
  if (h === null || typeof h !== 'object') fail('hyper is not a map');
  const c = h.constants;
  const keys = c && typeof c === 'object' ? Object.keys(c) : [];
  if (keys.length !== Object.keys(CONSTANTS).length || !keys.every((k) => c[k] === CONSTANTS[k])) {
    fail('its integer hyper-synthesis uses other constants than this decoder');
  }
  if (typeof h.mean !== 'boolean') fail('hyper.mean is not a boolean');
  if (!Array.isArray(h.layers) || h.layers.length === 0 || h.layers.length > MAX_LAYERS) {
    fail(`a hyper-synthesis of ${h.layers?.length} layers (1..${MAX_LAYERS})`);
  }
  const layers = h.layers.map((layer) => {
    if (layer === null || typeof layer !== 'object') fail('a hyper-synthesis layer is not a map');
    if (!Array.isArray(layer.shape) || layer.shape.length !== 4) fail('a layer shape is not 4 integers');
    const [out, inputs, k, k2] = layer.shape.map((v) => int(v, 'a layer shape'));
    if ([out, inputs, k, k2].some((v) => v < 1) || out * inputs * k * k2 > 2 ** 24) fail('a hyper-synthesis layer is too large');
    const weightBytes = bin(layer.weight, 'a layer weight');
    const biasBytes = bin(layer.bias, 'a layer bias');
    if (weightBytes.length !== 2 * out * inputs * k * k2) fail('a layer weight does not match its shape');
    if (biasBytes.length !== 8 * out) fail('a layer bias does not match its shape');
    const wv = new DataView(weightBytes.buffer, weightBytes.byteOffset, weightBytes.length);
    const weight = new Float64Array(out * inputs * k * k2);
    for (let i = 0; i < weight.length; i++) weight[i] = wv.getInt16(2 * i, true);
    const bv = new DataView(biasBytes.buffer, biasBytes.byteOffset, biasBytes.length);
    const bias = new Float64Array(out);
    for (let i = 0; i < out; i++) {
      const b = bv.getBigInt64(8 * i, true);
      bias[i] = b < -(2n ** 41n) || b > 2n ** 41n ? Infinity : Number(b); // refused by checkLayers
    }
    return { kind: layer.kind, out, inputs, k, k2, weight, bias };
  });
  checkLayers(layers, zTables.rows, latentShape[0] * (h.mean ? 2 : 1), fail);
  return {
    imageShape,
    latentShape,
    tables: zTables,
    hyper: { scaleTables, excess, mean: h.mean, layers },
  };
}
