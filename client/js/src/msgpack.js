// MessagePack as latentwire's Python readers see it. @msgpack/msgpack decodes a float
// that holds a whole number (2.0) to the same JS number as the integer 2, where Python's
// msgpack gives a float that wire.py and decoder_package.py refuse as an integer field.
// Here floats decode to a MsgpackFloat box instead: `Number.isInteger` and `typeof` then
// tell the two apart at any depth (IR fields and a package's nested maps alike).
import { Decoder } from '@msgpack/msgpack';

/** A MessagePack float (float32 or float64): never taken for an integer field. */
export class MsgpackFloat {
  /** @param {number} value */
  constructor(value) {
    this.value = value;
  }

  toString() {
    return `${this.value} (a float)`;
  }
}

class StrictDecoder extends Decoder {
  readF32() {
    return new MsgpackFloat(super.readF32());
  }

  readF64() {
    return new MsgpackFloat(super.readF64());
  }
}

/**
 * Decode one MessagePack value (@msgpack/msgpack's `decode`, with its length limits), with
 * floats as {@link MsgpackFloat}.
 * @param {Uint8Array} bytes
 * @param {import('@msgpack/msgpack').DecoderOptions} options
 */
export function unpack(bytes, options) {
  return new StrictDecoder(options).decode(bytes);
}
