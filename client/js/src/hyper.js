// The integer hyper-synthesis of a hyperprior codec (docs/ir-format.md, "The integer
// hyper-synthesis"; latentwire/shared/hyper.py). Every value is an integer well under
// 2^53, so float64 arithmetic is exact in any order of summation and gives the Python
// client's scale indices and means bit for bit.
import { IRError } from './errors.js';

export const WEIGHT_BITS = 8; // B
export const ACTIVATION_BITS = 4; // A
export const ACTIVATION_MAX = 1 << 14;
export const WEIGHT_MAX = (1 << 15) - 1; // int16 in the package (-2^15 is refused)
export const MAX_FAN_IN = 1 << 12;
export const BIAS_MAX = 2 ** 40;
export const SCALES = 64; // L
export const MEAN_MAX = 255;
/**
 * The most values (channels x rows x columns) z or any layer's output may hold: each is a
 * float64, so 512 MiB at most. A 4096x4096 image through the shipped photo codecs needs
 * 6.3 M; a hostile package (deconvs upon deconvs) is refused before anything is allocated.
 */
export const MAX_ACTIVATIONS = 2 ** 26;
/** The constants a format-3 package must declare (decoder_package.hyper_constants). */
export const CONSTANTS = Object.freeze({
  weight_bits: WEIGHT_BITS,
  activation_bits: ACTIVATION_BITS,
  activation_max: ACTIVATION_MAX,
  scales: SCALES,
  mean_max: MEAN_MAX,
});

/**
 * @typedef {object} Layer
 * @property {'conv' | 'deconv'} kind
 * @property {number} out O
 * @property {number} inputs I
 * @property {number} k kernel side (odd)
 * @property {number} k2 must equal k
 * @property {Float64Array} weight O*I*k*k integers (int16 in the package), (O, I, k, k) order
 * @property {Float64Array} bias O integers
 */

/**
 * The checks of hyper.IntegerLayer and HyperSynthesis (and that layers chain up).
 * @param {Layer[]} layers
 * @param {number} inputs channels of z
 * @param {number} outputs channels the last layer must give (M, or 2M with means)
 * @param {(message: string) => never} fail
 */
export function checkLayers(layers, inputs, outputs, fail) {
  let channels = inputs;
  for (const layer of layers) {
    const { kind, k, k2, weight, bias } = layer;
    if ((kind !== 'conv' && kind !== 'deconv') || k !== k2 || k % 2 === 0) {
      fail(`a ${kind} layer with a ${k}x${k2} kernel`);
    }
    if (weight.some((w) => Math.abs(w) > WEIGHT_MAX)) fail('bias shape or weight range out of bounds');
    if (layer.inputs * k * k > MAX_FAN_IN || bias.some((b) => !(Math.abs(b) <= BIAS_MAX))) {
      fail("a layer's fan-in or bias is beyond what sums exactly");
    }
    if (layer.inputs !== channels) fail('the hyper-synthesis layers do not chain up (channels)');
    channels = layer.out;
  }
  if (channels !== outputs) fail(`the last layer gives ${channels} outputs for ${outputs}`);
}

/**
 * The sizes [channels, rows, columns] of z and of each layer's output, for a z of
 * `zShape`; an IRError (`bad-decoder`) if any is over MAX_ACTIVATIONS. Called before z
 * or any layer's output is allocated.
 * @param {{layers: Layer[]}} network
 * @param {number[]} zShape [Z, hz, wz]
 * @returns {number[][]}
 */
export function layerSizes(network, zShape) {
  const sizes = [zShape];
  let [c, h, w] = zShape;
  for (const layer of network.layers) {
    const spread = layer.kind === 'deconv' ? 2 : 1;
    [c, h, w] = [layer.out, h * spread, w * spread];
    sizes.push([c, h, w]);
  }
  for (const [n, [sc, sh, sw]] of sizes.entries()) {
    if (sc * sh * sw > MAX_ACTIVATIONS) {
      const what = n === 0 ? 'its hyper-latent' : `its hyper-synthesis layer ${n}`;
      throw new IRError('bad-decoder', `${what} would hold ${sc}x${sh}x${sw} values, over the limit of ${MAX_ACTIVATIONS}`);
    }
  }
  return sizes;
}

/**
 * One layer: 'same' convolution (conv) or the transposed convolution of stride 2 (deconv:
 * the input spread to twice the size with zeros between, then the same convolution),
 * then acc = sum + bias, floor((acc + 2^(B-1)) / 2^B).
 * @param {Float64Array} a (I, h, w) activations
 */
function layerForward(layer, a, h, w) {
  const { out, inputs, k, weight, bias } = layer;
  const spread = layer.kind === 'deconv' ? 2 : 1;
  const oh = h * spread;
  const ow = w * spread;
  const p = k >> 1;
  const area = oh * ow;
  const acc = new Float64Array(out * area);
  for (let o = 0; o < out; o++) {
    const dst = o * area;
    for (let c = 0; c < inputs; c++) {
      const src = c * h * w;
      for (let u = 0; u < k; u++) {
        for (let v = 0; v < k; v++) {
          const wt = weight[((o * inputs + c) * k + u) * k + v];
          if (wt === 0) continue;
          // Output (i, j) reads spread input (i + u - p, j + v - p); with a deconv only
          // the even ones hold inputs (the zeros add nothing).
          let i0 = Math.max(0, p - u);
          let j0 = Math.max(0, p - v);
          if (spread === 2) {
            if ((i0 + u - p) & 1) i0++;
            if ((j0 + v - p) & 1) j0++;
          }
          const i1 = Math.min(oh, oh + p - u);
          const j1 = Math.min(ow, ow + p - v);
          for (let i = i0; i < i1; i += spread) {
            // Integer offsets only: the inner loop is the whole cost.
            let from = src + ((i + u - p) >> (spread - 1)) * w + ((j0 + v - p) >> (spread - 1));
            const line = dst + i * ow;
            for (let j = line + j0, end = line + j1; j < end; j += spread) acc[j] += wt * a[from++];
          }
        }
      }
    }
    const b = bias[o];
    for (let i = dst; i < dst + area; i++) acc[i] = Math.floor((acc[i] + b + 128) / 256);
  }
  return { a: acc, h: oh, w: ow };
}

/**
 * (scale indices, means) of every element of y, each (M, h, w) in raster order, from
 * the integer hyper-latent z (Z, hz, wz).
 * @param {{layers: Layer[], mean: boolean}} network
 * @param {Int32Array} z
 * @param {number[]} zShape [Z, hz, wz]
 * @param {number} m channels of y
 * @param {number} h rows of y
 * @param {number} w columns of y
 * @returns {{index: Uint8Array, mean: Int32Array | null} | null} null when the network's
 *   output does not cover y (a package that does not fit)
 */
export function hyperSynthesis(network, z, zShape, m, h, w) {
  layerSizes(network, zShape); // throws before any allocation if one is too large
  let a = new Float64Array(z.length);
  for (let i = 0; i < z.length; i++) a[i] = z[i] * (1 << ACTIVATION_BITS);
  let ah = zShape[1];
  let aw = zShape[2];
  network.layers.forEach((layer, n) => {
    ({ a, h: ah, w: aw } = layerForward(layer, a, ah, aw));
    if (n < network.layers.length - 1) {
      for (let i = 0; i < a.length; i++) a[i] = Math.min(Math.max(a[i], 0), ACTIVATION_MAX);
    }
  });
  if (ah < h || aw < w) return null;
  const index = new Uint8Array(m * h * w);
  const mean = network.mean ? new Int32Array(m * h * w) : null;
  const half = 1 << (ACTIVATION_BITS - 1);
  const unit = 1 << ACTIVATION_BITS;
  for (let c = 0; c < m; c++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const at = (c * h + i) * w + j;
        const v = Math.floor((a[(c * ah + i) * aw + j] + half) / unit);
        index[at] = Math.min(Math.max(v, 0), SCALES - 1);
        if (mean) {
          const mv = Math.floor((a[((m + c) * ah + i) * aw + j] + half) / unit);
          mean[at] = Math.min(Math.max(mv, -MEAN_MAX), MEAN_MAX);
        }
      }
    }
  }
  return { index, mean };
}
