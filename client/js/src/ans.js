// The range-ANS decoder of docs/ir-format.md ("The entropy coder"), a port of
// tests/shared/ans_reference.py: 64-bit state, 32-bit words, 24-bit probabilities. It
// yields exactly constriction's symbols (what the Python client decodes with).
//
// The 64-bit state is kept as two 32-bit halves in Numbers: every intermediate value
// below stays under 2^53, so double arithmetic is exact (BigInt is several times slower).
import { IRError } from './errors.js';

const PRECISION = 24;
const ONE = 2 ** PRECISION;
const FREQUENCY_TOTAL = 2 ** 16;
const WORD = 2 ** 32;

/**
 * The coder's 24-bit cumulative table (n + 1 entries) of one row of integer frequencies
 * (each >= 1, summing to 2^16): cdf[i] = floor(C[i] * (2^24 - n) / 2^16) + i.
 * @param {ArrayLike<number>} frequencies
 * @returns {Uint32Array}
 */
export function cumulative(frequencies) {
  const n = frequencies.length;
  const free = ONE - n; // each symbol first gets 1 quantile, the rest is shared out
  const cdf = new Uint32Array(n + 1);
  let total = 0;
  for (let i = 0; i < n; i++) {
    cdf[i] = Math.floor((total * free) / FREQUENCY_TOTAL) + i; // < 2^40: exact
    total += frequencies[i];
  }
  cdf[n] = ONE;
  return cdf;
}

/** Pops symbols off a payload, in the order they were pushed last first. */
export class AnsDecoder {
  /** @param {Uint8Array} payload */
  constructor(payload) {
    // Zero bytes appended to a multiple of 4; little-endian words.
    const padded = new Uint8Array(Math.ceil(payload.length / 4) * 4);
    padded.set(payload);
    const view = new DataView(padded.buffer);
    this.words = new Uint32Array(padded.length / 4);
    for (let i = 0; i < this.words.length; i++) this.words[i] = view.getUint32(4 * i, true);
    this.unread = this.words.length; // words[0 .. unread) are left, read from the end
    this.hi = 0;
    this.lo = 0;
    if (this.unread) {
      const first = this.words[--this.unread];
      if (first === 0) throw new IRError('corrupt-payload', 'payload is not valid ANS data (its last 32-bit word is zero)');
      this.lo = first;
      if (this.unread) {
        this.hi = first;
        this.lo = this.words[--this.unread];
      }
    }
  }

  /**
   * One symbol (0 .. n-1) with a cumulative table from {@link cumulative}.
   * @param {Uint32Array} cdf
   * @returns {number}
   */
  decode(cdf) {
    const hi = this.hi;
    const lo = this.lo;
    const q = lo & 0xffffff;
    // Binary search: cdf[s] <= q < cdf[s + 1].
    let a = 0;
    let b = cdf.length - 1;
    while (b - a > 1) {
      const m = (a + b) >>> 1;
      if (cdf[m] <= q) a = m;
      else b = m;
    }
    const left = cdf[a];
    const p = cdf[a + 1] - left;
    // state = (state >> 24) * p + (q - left), with x = state >> 24 = xh * 2^32 + xl.
    const xh = hi >>> 24;
    const xl = (((hi & 0xffffff) << 8) | (lo >>> 24)) >>> 0;
    const t0 = (xl & 0xffff) * p + (q - left); // < 2^41
    const t1 = (xl >>> 16) * p; // < 2^40
    const t1l = t1 % 65536;
    const low = t1l * 65536 + t0; // < 2^42
    const newLo = low % WORD;
    let newHi = xh * p + (t1 - t1l) / 65536 + Math.floor(low / WORD); // < 2^32 for a 64-bit state
    if (newHi === 0 && this.unread) {
      // The state fell under 2^32: read the next word (at most one per symbol).
      this.hi = newLo;
      this.lo = this.words[--this.unread];
    } else {
      this.hi = newHi;
      this.lo = newLo;
    }
    return a;
  }

  /**
   * Decode `count` symbols with one table into `out` (from `offset`), each minus `radius`.
   * @param {Uint32Array} cdf
   * @param {Int32Array} out
   * @param {number} offset
   * @param {number} count
   * @param {number} radius
   */
  decodeRun(cdf, out, offset, count, radius) {
    for (let i = 0; i < count; i++) out[offset + i] = this.decode(cdf) - radius;
  }

  /** Whether every word was read and the state is back to 0 (a valid end). */
  isEmpty() {
    return this.hi === 0 && this.lo === 0 && this.unread === 0;
  }

  /** The state as a BigInt (for tests). */
  get state() {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }
}
