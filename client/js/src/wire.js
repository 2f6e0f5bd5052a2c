// The IR wire format (docs/ir-format.md), as latentwire/shared/wire.py parses it:
//   [version, model, digest, payload]          models of fixed geometry
//   [version, model, digest, payload, h, w]    size-agnostic models
// `model`: a code of MODEL_CODES (the shipped models), a negative -1..-32 (a deployment's
// own model code 1..32, the `code` of its package), or a model id (a string).
import { IRError } from './errors.js';
import { unpack } from './msgpack.js';

export const VERSION = 2;
export const DIGEST_BITS = 16;
export const MAX_IR_BYTES = 64 << 20;
export const MAX_SIDE = 1 << 15;
/** A deployment's own model codes are 1..MAX_DEPLOYMENT_CODE, -1..-32 on the wire (one byte). */
export const MAX_DEPLOYMENT_CODE = 32;

/** Model codes of the shipped 28x28 codecs; fixed forever, never reused. */
export const MODEL_CODES = Object.freeze({
  1: 'fashion-mnist-q1',
  2: 'fashion-mnist-q2',
  3: 'fashion-mnist-q3',
  4: 'fashion-mnist-q4',
  5: 'fashion-mnist-q5',
  6: 'fashion-mnist-q6',
  11: 'mnist-q1',
  12: 'mnist-q2',
  13: 'mnist-q3',
  14: 'mnist-q4',
});

/**
 * @typedef {object} IR
 * @property {string | number} model the model id, or a deployment's model code (a number, 1..32)
 * @property {number} digest first 2 bytes of the SHA-256 of its decoder package
 * @property {Uint8Array} payload the entropy-coded latent
 * @property {[number, number] | null} size [height, width] for size-agnostic models
 */

/**
 * An IR's bytes as a Uint8Array (no copy), or an IRError.
 * @param {unknown} data
 * @returns {Uint8Array}
 */
export function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new IRError('not-bytes', `an IR is bytes (a Uint8Array), not ${describe(data)}`);
}

function describe(value) {
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor?.name ?? 'an object';
  return typeof value;
}

/**
 * Parse and bounds-check an IR, exactly as the Python client does.
 * @param {Uint8Array | ArrayBuffer} data
 * @returns {IR}
 */
export function parseIR(data) {
  const bytes = asBytes(data);
  if (bytes.length > MAX_IR_BYTES) {
    throw new IRError('too-large', `IR of ${bytes.length} bytes is larger than the ${MAX_IR_BYTES}-byte limit`);
  }
  let fields;
  try {
    // The same limits as wire.py: lengths are checked against them (and against the
    // bytes there are) before anything is allocated.
    fields = unpack(bytes, {
      maxStrLength: 128,
      maxBinLength: MAX_IR_BYTES,
      maxArrayLength: 8,
      maxMapLength: 0,
      maxExtLength: 0,
    });
  } catch (e) {
    throw new IRError('malformed', `not a msgpack message (${e?.message ?? e})`);
  }
  if (!Array.isArray(fields) || (fields.length !== 4 && fields.length !== 6)) {
    throw new IRError('malformed', 'an IR is a msgpack array of 4 or 6 fields');
  }
  // MessagePack floats decode to MsgpackFloat boxes (src/msgpack.js), never numbers:
  // Python refuses 2.0 as a version, and so does this.
  const isInt = (i) => Number.isInteger(fields[i]);
  let [version, model, digest, payload] = fields;
  if (!isInt(0)) throw new IRError('malformed', 'IR version is not an integer');
  if (version !== VERSION) {
    throw new IRError('version', `IR format version ${version} is not supported (this decoder reads ${VERSION})`);
  }
  if (isInt(1) && model < 0) {
    // A deployment's model: the decoder package with this `code` (see the store).
    if (model < -MAX_DEPLOYMENT_CODE) {
      throw new IRError('unknown-model', `model code ${model} is out of the deployments' range (-1 to -${MAX_DEPLOYMENT_CODE})`);
    }
    model = -model;
  } else if (isInt(1)) {
    if (!Object.hasOwn(MODEL_CODES, model)) throw new IRError('unknown-model', `unknown model code ${model}`);
    model = MODEL_CODES[model];
  } else if (typeof model !== 'string' || !model) {
    throw new IRError('malformed', 'IR model is neither a known code nor a model id');
  }
  if (!isInt(2) || digest < 0 || digest >= 2 ** DIGEST_BITS) {
    throw new IRError('malformed', `IR decoder digest is not a ${DIGEST_BITS}-bit unsigned integer`);
  }
  if (!(payload instanceof Uint8Array)) throw new IRError('malformed', 'IR payload is not binary');
  let size = null;
  if (fields.length === 6) {
    const [h, w] = fields.slice(4);
    for (const i of [4, 5]) {
      if (!isInt(i) || fields[i] < 1 || fields[i] > MAX_SIDE) {
        throw new IRError('bad-size', `IR image size ${h}x${w} is out of bounds (1..${MAX_SIDE})`);
      }
    }
    size = [h, w];
  }
  return { model, digest, payload, size };
}
