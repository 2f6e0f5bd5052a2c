/**
 * The one error class of this package: every malformed, truncated, foreign or
 * future-version IR, and every decoder package that cannot be used for it, is an
 * IRError with a stable `code` (the message is for people and may change).
 *
 * Codes:
 * - `not-bytes`: the IR is not a Uint8Array / ArrayBuffer (or decodeBatch got no iterable)
 * - `too-large`: over the size limit of an IR or a decoder package
 * - `malformed`: not a MessagePack IR of 4 or 6 fields of the right types
 * - `version`: an IR format version this decoder does not read (a newer one may)
 * - `unknown-model`: a model code this decoder does not know (or a negative one out of
 *   the deployments' -1..-32)
 * - `bad-size`: the image size is out of bounds or does not fit the model
 * - `no-decoder`: no decoder package for the model (or the deployment code) is available
 * - `digest-mismatch`: the IR was made for another version of the model's decoder
 * - `bad-decoder`: a decoder package is corrupt, of an unknown format, for another
 *   model (or of another code), or not the one the IR asks for (refused, never used)
 * - `corrupt-payload`: the entropy-coded payload does not decode to a latent
 * - `fetch-failed`: the decoder package could not be downloaded
 * - `synthesis`: onnxruntime failed: to load, to start a session for reasons not the
 *   model's (a model onnxruntime refuses is `bad-decoder`), or to run the synthesis
 */
export class IRError extends Error {
  /**
   * @param {string} code one of the codes above
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'IRError';
    /** @type {string} */
    this.code = code;
  }
}
