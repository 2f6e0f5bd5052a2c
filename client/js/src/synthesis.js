// The synthesis transform in onnxruntime-web (wasm), run as the Python client runs it
// (latentwire/shared/decoding.py): one latent at a time, big latents in the same
// overlapping windows (shared/tiling.py), and the same float32 pixel rounding.
import { IRError } from './errors.js';

// Cores of 64 latents with 4 of context each side, as tiling.codec_tiles.
const CODEC_TILE = 64;
const CODEC_OVERLAP = 4;

/**
 * tiling.plan_tiles: tiles covering an image, row by row; windows slide inward at edges.
 * @returns {{top: number, left: number, height: number, width: number, window: number[]}[]}
 */
export function planTiles(height, width, tile = CODEC_TILE, overlap = CODEC_OVERLAP) {
  const windowH = Math.min(height, tile + 2 * overlap);
  const windowW = Math.min(width, tile + 2 * overlap);
  const tileH = height === windowH ? height : tile;
  const tileW = width === windowW ? width : tile;
  const tiles = [];
  for (let top = 0; top < height; top += tileH) {
    for (let left = 0; left < width; left += tileW) {
      const y = Math.min(Math.max(0, top - overlap), height - windowH);
      const x = Math.min(Math.max(0, left - overlap), width - windowW);
      tiles.push({
        top,
        left,
        height: Math.min(tileH, height - top),
        width: Math.min(tileW, width - left),
        window: [y, x, y + windowH, x + windowW],
      });
    }
  }
  return tiles;
}

const f32 = Math.fround;

/** numpy's float32 round(): to the nearest integer, halves to even. */
export function roundHalfEven(x) {
  const r = Math.round(x); // halves up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * PixelRange(-1, 1).to_pixels in float32: round((clip(x, -1, 1) - (-1)) * 127.5).
 * @param {number} x
 */
export function toPixel(x) {
  const clipped = x < -1 ? -1 : x > 1 ? 1 : x;
  return roundHalfEven(f32(f32(clipped + 1) * 127.5));
}

let ortPromise = null;

/**
 * onnxruntime-web (the wasm build, loaded from node_modules beside this package: no CDN).
 * A failed import is an IRError (`synthesis`) and is not remembered: the next call tries
 * again (a page whose network came back need not be reloaded).
 * @param {object} options
 */
export async function loadOrt(options = {}) {
  if (options.ort) return options.ort;
  const loading = (ortPromise ??= import('onnxruntime-web/wasm').then((ort) => {
    // One thread unless asked: no worker threads to start (or to keep a Node process
    // alive), and the time per 28x28 image is well under a millisecond anyway.
    ort.env.wasm.numThreads = options.numThreads ?? 1;
    if (options.wasmPaths) ort.env.wasm.wasmPaths = options.wasmPaths;
    ort.env.logLevel = 'error';
    return ort;
  }));
  try {
    return await loading;
  } catch (e) {
    if (ortPromise === loading) ortPromise = null;
    throw new IRError('synthesis', `onnxruntime-web could not be loaded (${e?.message ?? e})`);
  }
}

// onnxruntime's status codes (OrtErrorCode) that say the runtime failed, not the model:
// ENGINE_ERROR, RUNTIME_EXCEPTION, EP_FAIL. The others (INVALID_PROTOBUF, INVALID_GRAPH,
// FAIL for e.g. a missing opset, NOT_IMPLEMENTED for an unknown operator...) are the model's.
const RUNTIME_STATUS = new Set([5, 6, 11]);

/**
 * Whether onnxruntime refused the model itself: its session-creation error carries the
 * status of the model check ("Can't create a session. ERROR_CODE: 7, ..."). Anything
 * else (no wasm backend, the .wasm not found, out of memory) is the runtime's failure.
 */
export function modelAtFault(error) {
  const status = /ERROR_CODE: (\d+)/.exec(String(error?.message ?? ''));
  return status !== null && !RUNTIME_STATUS.has(Number(status[1]));
}

/**
 * The synthesis session of a package: an IRError `bad-decoder` if onnxruntime refuses its
 * model, `synthesis` if onnxruntime itself fails (to load, to start its backend...).
 * @param {import('./package.js').DecoderPackage} pkg
 * @param {object} options
 */
export async function createSession(pkg, options = {}) {
  const ort = await loadOrt(options);
  try {
    const session = await ort.InferenceSession.create(pkg.onnx, { executionProviders: ['wasm'], logSeverityLevel: 3 });
    return { ort, session, input: session.inputNames[0], output: session.outputNames[0] };
  } catch (e) {
    if (modelAtFault(e)) {
      throw new IRError('bad-decoder', `the synthesis of ${pkg.model} does not load in onnxruntime (${e?.message ?? e})`);
    }
    throw new IRError('synthesis', `onnxruntime could not start the synthesis of ${pkg.model} (${e?.message ?? e})`);
  }
}

/**
 * RGBA pixels (alpha 255) of one latent, cropped to height x width.
 * @param {{ort: any, session: any, input: string, output: string}} runner
 * @param {import('./package.js').DecoderPackage} pkg
 * @param {Int32Array} latent (M, h, w)
 * @param {number[]} shape [M, h, w]
 * @param {number} height
 * @param {number} width
 * @returns {Promise<Uint8ClampedArray>}
 */
export async function synthesize(runner, pkg, latent, shape, height, width) {
  const [m, h, w] = shape;
  const s = pkg.stride;
  const channels = pkg.imageShape[0];
  const rgba = new Uint8ClampedArray(height * width * 4);
  for (const tile of planTiles(h, w)) {
    const [top, left, bottom, right] = tile.window;
    const wh = bottom - top;
    const ww = right - left;
    const window = new Float32Array(m * wh * ww);
    for (let c = 0; c < m; c++) {
      for (let i = 0; i < wh; i++) {
        const from = (c * h + top + i) * w + left;
        window.set(latent.subarray(from, from + ww), (c * wh + i) * ww);
      }
    }
    let image;
    try {
      const result = await runner.session.run({ [runner.input]: new runner.ort.Tensor('float32', window, [1, m, wh, ww]) });
      image = result[runner.output];
    } catch (e) {
      throw new IRError('synthesis', `the synthesis failed (${e?.message ?? e})`);
    }
    // Tile.core(s): where the core lies in the whole output and in the window's output.
    const dy = (tile.top - top) * s;
    const dx = (tile.left - left) * s;
    const [, oc, oh, ow] = image.dims;
    if (image.dims.length !== 4 || oc !== channels || oh < dy + tile.height * s || ow < dx + tile.width * s) {
      throw new IRError('bad-decoder', `the synthesis gave an image of shape ${image.dims}`);
    }
    const data = image.data;
    const rows = Math.min(tile.height * s, height - tile.top * s);
    const cols = Math.min(tile.width * s, width - tile.left * s);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const at = ((tile.top * s + i) * width + tile.left * s + j) * 4;
        const from = (dy + i) * ow + dx + j;
        if (channels === 1) {
          const g = toPixel(data[from]);
          rgba[at] = g;
          rgba[at + 1] = g;
          rgba[at + 2] = g;
        } else {
          rgba[at] = toPixel(data[from]);
          rgba[at + 1] = toPixel(data[from + oh * ow]);
          rgba[at + 2] = toPixel(data[from + 2 * oh * ow]);
        }
        rgba[at + 3] = 255;
      }
    }
  }
  return rgba;
}
