// Entropy decoding of a payload into the integer latent (docs/ir-format.md, "The payload
// of a factorized codec" and "... of a hyperprior codec"; latentwire/shared/coding.py).
import { AnsDecoder, cumulative } from './ans.js';
import { IRError } from './errors.js';
import { hyperSynthesis, layerSizes } from './hyper.js';

const cdfCache = new WeakMap();
const lengthCache = new WeakMap();

/**
 * The cumulative table of row `t` of `tables`, computed once when first used.
 * @param {import('./package.js').Tables} tables
 * @param {number} t
 */
function cdfOf(tables, t) {
  let cache = cdfCache.get(tables);
  if (!cache) cdfCache.set(tables, (cache = new Array(tables.rows)));
  const n = 2 * tables.radius + 1;
  return (cache[t] ??= cumulative(tables.frequencies.subarray(t * n, (t + 1) * n)));
}

/**
 * The code length in bits, -log2(frequency / 2^16), of each symbol of table `t` (for the
 * per-position bit maps of `decode(ir, {codeLengths: true})`), computed once when used.
 * @param {import('./package.js').Tables} tables
 * @param {number} t
 */
function lengthsOf(tables, t) {
  let cache = lengthCache.get(tables);
  if (!cache) lengthCache.set(tables, (cache = new Array(tables.rows)));
  const n = 2 * tables.radius + 1;
  if (!cache[t]) {
    const row = tables.frequencies.subarray(t * n, (t + 1) * n);
    cache[t] = Float64Array.from(row, (f) => 16 - Math.log2(f));
  }
  return cache[t];
}

const corrupt = (why) => new IRError('corrupt-payload', `payload is not valid ANS data (${why})`);

function checkEnd(decoder) {
  if (!decoder.isEmpty()) {
    throw new IRError('corrupt-payload', 'payload holds more data than the latent it should code (corrupt?)');
  }
}

/**
 * The latent (M*h*w values, channel by channel, raster order) of a format 1 or 2 payload.
 * @param {Uint8Array} payload
 * @param {import('./package.js').Tables} tables
 * @param {number[]} shape [M, h, w]
 * @param {Float64Array} [bits] if given (h*w), each symbol's code length is added at its position
 * @returns {Int32Array}
 */
export function decodeLatent(payload, tables, shape, bits) {
  const [channels, h, w] = shape;
  const perChannel = h * w;
  const { radius, positions, contexts } = tables;
  if (channels !== tables.channels || (positions > 1 && perChannel !== positions)) {
    throw new IRError('bad-decoder', `latent shape ${shape} does not match the decoder's tables`);
  }
  const decoder = new AnsDecoder(payload);
  const out = new Int32Array(channels * perChannel);
  if (positions === 1 && contexts === 1 && !bits) {
    for (let c = 0; c < channels; c++) decoder.decodeRun(cdfOf(tables, c), out, c * perChannel, perChannel, radius);
  } else {
    // Table (c * P + p') * X + x, x = how many earlier channels are nonzero at p (capped).
    const before = new Int32Array(perChannel);
    for (let c = 0; c < channels; c++) {
      for (let p = 0; p < perChannel; p++) {
        const table = (c * positions + (positions > 1 ? p : 0)) * contexts + Math.min(before[p], contexts - 1);
        const symbol = decoder.decode(cdfOf(tables, table));
        if (bits) bits[p] += lengthsOf(tables, table)[symbol];
        const value = symbol - radius;
        out[c * perChannel + p] = value;
        if (value !== 0) before[p]++;
      }
    }
  }
  checkEnd(decoder);
  return out;
}

/**
 * The latent y (+ its means) of a format 3 payload: z with one table per channel, the
 * hyper-synthesis, y grouped by scale index, then the excesses of the values on an edge.
 * @param {Uint8Array} payload
 * @param {import('./package.js').DecoderPackage} pkg
 * @param {number[]} shape [M, h, w] of y
 * @param {Float64Array} [bits] if given (h*w): code lengths by position of y; those of z
 *   are shared out evenly over the (up to 4x4) positions of y each z position covers
 * @returns {Int32Array}
 */
export function decodeHyper(payload, pkg, shape, bits) {
  const [m, h, w] = shape;
  const zTables = pkg.tables;
  const zShape = [zTables.channels, Math.ceil(h / 4), Math.ceil(w / 4)];
  const zPer = zShape[1] * zShape[2];
  layerSizes(pkg.hyper, zShape); // z and every layer's output bounded before allocation
  const decoder = new AnsDecoder(payload);
  const z = new Int32Array(zShape[0] * zPer);
  for (let c = 0; c < zShape[0]; c++) decoder.decodeRun(cdfOf(zTables, c), z, c * zPer, zPer, zTables.radius);
  if (bits) addHyperBits(bits, z, zTables, zShape, h, w);
  const params = hyperSynthesis(pkg.hyper, z, zShape, m, h, w);
  if (params === null) {
    throw new IRError('bad-decoder', `the hyper-synthesis of ${pkg.model} does not cover a ${h}x${w} latent`);
  }
  const { index, mean } = params;
  const scaleTables = pkg.hyper.scaleTables;
  const count = new Int32Array(scaleTables.length + 1);
  for (let k = 0; k < index.length; k++) count[index[k] + 1]++;
  for (let l = 0; l < scaleTables.length; l++) count[l + 1] += count[l];
  const order = new Int32Array(index.length); // raster positions grouped by level
  const fill = count.slice(0, scaleTables.length);
  for (let k = 0; k < index.length; k++) order[fill[index[k]]++] = k;
  const y = new Int32Array(index.length);
  for (let l = 0; l < scaleTables.length; l++) {
    if (count[l + 1] === count[l]) continue;
    const cdf = cdfOf(scaleTables[l], 0);
    const r = scaleTables[l].radius;
    const lengths = bits && lengthsOf(scaleTables[l], 0);
    for (let g = count[l]; g < count[l + 1]; g++) {
      const symbol = decoder.decode(cdf);
      y[order[g]] = symbol - r;
      if (bits) bits[order[g] % (h * w)] += lengths[symbol];
    }
  }
  // Values on their table's edge: an excess each, raster order, with the excess table.
  const excessTable = pkg.hyper.excess;
  const excessCdf = cdfOf(excessTable, 0);
  let negative = false;
  for (let k = 0; k < y.length; k++) {
    if (Math.abs(y[k]) >= scaleTables[index[k]].radius) {
      const symbol = decoder.decode(excessCdf);
      if (bits) bits[k % (h * w)] += lengthsOf(excessTable, 0)[symbol];
      const excess = symbol - excessTable.radius;
      if (excess < 0) negative = true;
      y[k] += y[k] > 0 ? excess : -excess;
    }
  }
  if (negative) throw corrupt('a negative excess');
  checkEnd(decoder);
  if (mean) for (let k = 0; k < y.length; k++) y[k] += mean[k];
  return y;
}

/** The code lengths of z, each shared out over the positions of y it covers. */
function addHyperBits(bits, z, zTables, zShape, h, w) {
  const [channels, zh, zw] = zShape;
  for (let c = 0; c < channels; c++) {
    const lengths = lengthsOf(zTables, c);
    for (let i = 0; i < zh; i++) {
      for (let j = 0; j < zw; j++) {
        const length = lengths[z[(c * zh + i) * zw + j] + zTables.radius];
        const bottom = Math.min(h, 4 * i + 4);
        const right = Math.min(w, 4 * j + 4);
        const share = length / ((bottom - 4 * i) * (right - 4 * j));
        for (let y = 4 * i; y < bottom; y++) for (let x = 4 * j; x < right; x++) bits[y * w + x] += share;
      }
    }
  }
}
