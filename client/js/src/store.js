// Finding the decoder package an IR names (latentwire/client/decoding.py DecoderStore):
// in memory, in options.packages, in local folders, in the cache (a folder in Node, the
// Cache API in browsers), then from the server. A package is used only when its SHA-256
// digest is the IR's and it is for the IR's model; a fetched one is cached only then.
// An IR may name a deployment's model by its code (1..32) instead of its id: then the
// package's `code` must be it.
import { IRError } from './errors.js';
import { digestHex, digestOf, MAX_PACKAGE_BYTES, packageCode, parsePackage } from './package.js';
import { createSession } from './synthesis.js';

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const BROWSER_CACHE = 'latentwire-decoders';

/**
 * @typedef {object} StoreOptions
 * @property {Record<string, Uint8Array | ArrayBuffer | Array<Uint8Array | ArrayBuffer>>} [packages]
 *   decoder packages by model id (several versions of one model: an array); an IR that
 *   names a model by its code is decoded by any of them that carries the code
 * @property {string[] | string} [packageDirs] Node: folders of model folders, each
 *   `<id>/decoder.msgpack.gz` (gzip, as latentwire's shared/zoo) or
 *   `<id>/decoder.msgpack`; a model named by its code is the folder whose
 *   `<id>/manifest.json` has that `code` (as the Python client finds it)
 * @property {string} [cacheDir] Node: where fetched packages are kept, as
 *   `<id>-<digest>.msgpack` (the Python client's cache layout: the two can share it)
 * @property {boolean} [browserCache] keep fetched packages in the Cache API (default:
 *   true where `caches` exists)
 * @property {string} [baseUrl] a latentwire server: packages from `GET {baseUrl}/models/{id}/decoder`
 * @property {string} [apiKey] sent as `Authorization: Bearer <key>`
 * @property {(model: string | number) => Promise<Uint8Array | ArrayBuffer>} [fetchPackage]
 *   how to get a package the store lacks (instead of baseUrl): by model id, or by a
 *   deployment's model code (a number)
 * @property {object} [ort] an onnxruntime-web module to use (default: imported once)
 * @property {number} [numThreads] onnxruntime-web's wasm threads (default 1)
 * @property {string | object} [wasmPaths] where onnxruntime-web finds its .wasm
 */

/** One model's decoder: its checked package and its synthesis session. */
export class Decoder {
  constructor(pkg, digest, runner) {
    /** @type {import('./package.js').DecoderPackage} */
    this.package = pkg;
    /** @type {number} */
    this.digest = digest;
    this.runner = runner;
  }
}

const bytesOf = (data) => (data instanceof Uint8Array ? data : new Uint8Array(data));
const isCode = (model) => typeof model === 'number';
/** The key of (model, digest): a code (7) and an id ("7") never share one. */
const keyOf = (model, digest) => `${digest}:${JSON.stringify(model)}`;
/** A model as messages name it: `model "photo-q3"`, `model code 7`. */
const named = (model) => (isCode(model) ? `model code ${model}` : `model ${JSON.stringify(model)}`);

export class DecoderStore {
  /** @param {StoreOptions} [options] */
  constructor(options = {}) {
    this.options = options;
    /** @type {Map<string, Promise<Decoder>>} */
    this.decoders = new Map();
  }

  /**
   * The decoder of (model, digest), or an IRError (`no-decoder`, `digest-mismatch`,
   * `bad-decoder`, `fetch-failed`).
   * @param {string | number} model a model id, or a deployment's model code
   * @param {number} digest
   * @returns {Promise<Decoder>}
   */
  get(model, digest) {
    const key = keyOf(model, digest);
    let found = this.decoders.get(key);
    if (!found) {
      found = this.#find(model, digest);
      this.decoders.set(key, found);
      // A failure is not remembered (unless add() has put a decoder there meanwhile).
      found.catch(() => this.decoders.get(key) === found && this.decoders.delete(key));
    }
    return found;
  }

  /**
   * Keep a package (downloaded or given), after checking it is the one wanted.
   * @param {string | number} model a model id, or a deployment's model code
   * @param {number} digest
   * @param {Uint8Array | ArrayBuffer} data
   * @returns {Promise<Decoder>}
   */
  async add(model, digest, data) {
    const bytes = bytesOf(data);
    const actual = await digestOf(bytes);
    if (actual !== digest) {
      throw new IRError(
        'bad-decoder',
        `the decoder offered for ${named(model)} has digest ${digestHex(actual)}, the IR needs ${digestHex(digest)}; refused`,
      );
    }
    const decoder = await this.#load(model, digest, bytes);
    this.decoders.set(keyOf(model, digest), Promise.resolve(decoder));
    return decoder;
  }

  async #load(model, digest, bytes) {
    const pkg = parsePackage(bytes);
    // An IR names its model by id, or by the code its package carries (wire.js).
    const is = isCode(model) ? pkg.code : pkg.model;
    if (is !== model) {
      throw new IRError('bad-decoder', `decoder package is for ${is === null ? 'no model code' : named(is)}, not ${named(model)}`);
    }
    return new Decoder(pkg, digest, await createSession(pkg, this.options));
  }

  async #find(model, digest) {
    let candidates = 0;
    let refused = null; // the last package of the right digest that did not load
    for await (const { data, cached, error } of this.#local(model, digest)) {
      candidates++;
      if (error) {
        refused = error; // an unreadable file: look further
        continue;
      }
      if ((await digestOf(data)) !== digest) continue;
      try {
        return await this.#load(model, digest, data);
      } catch (e) {
        if (!(e instanceof IRError && e.code === 'bad-decoder')) throw e;
        // A corrupt copy (a 16-bit digest matches by chance one time in 65536): drop it
        // from the cache, so that a good one can take its place, and look further.
        refused = e;
        if (cached) await cached.remove().catch(() => {});
      }
    }
    const { baseUrl, fetchPackage } = this.options;
    if (fetchPackage || baseUrl) {
      const data = await this.#fetch(model, digest);
      const decoder = await this.add(model, digest, data);
      await this.#keep(model, digest, data);
      return decoder;
    }
    if (refused) throw refused;
    if (candidates) {
      throw new IRError(
        'digest-mismatch',
        `IR was made for a different version of ${isCode(model) ? named(model) : model} (decoder digest ${digestHex(digest)}); this client has another`,
      );
    }
    throw new IRError('no-decoder', `no decoder for ${named(model)} is available here`);
  }

  /**
   * Local packages of a model: given, in folders, cached. Each as {data, cached}: `cached`,
   * for a copy in the cache, has remove() (a copy elsewhere is never deleted).
   */
  async *#local(model, digest) {
    if (isCode(model)) {
      yield* this.#byCode(model, digest);
      return;
    }
    const given = this.options.packages;
    if (given && Object.hasOwn(given, model)) {
      for (const data of [given[model]].flat()) yield { data: bytesOf(data), cached: null };
    }
    if (!SAFE_ID.test(model)) return; // a model id from an IR becomes a path only if plain
    const dirs = [this.options.packageDirs ?? []].flat();
    const cacheDir = this.options.cacheDir;
    if (dirs.length || cacheDir) {
      const { readFile, unlink } = await import('node:fs/promises');
      const { join } = await import('node:path');
      for (const dir of dirs) yield* unlessUnreadable(join(dir, model));
      if (cacheDir) {
        const cachePath = join(cacheDir, `${model}-${digestHex(digest)}.msgpack`);
        let data;
        try {
          data = await readFile(cachePath);
        } catch {
          data = null; // not there
        }
        if (data) {
          const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
          yield { data: bytes, cached: { remove: () => unlink(cachePath) } };
        }
      }
    }
    yield* this.#browserCached(model, digest);
  }

  /**
   * The local packages of a deployment's model code: those given that carry it, those in
   * folders whose manifest.json says it (as the Python client indexes them), the Cache
   * API's. Never cacheDir: its files are named by model id (the Python client's layout).
   */
  async *#byCode(code, digest) {
    for (const data of Object.values(this.options.packages ?? {}).flat()) {
      const bytes = bytesOf(data);
      if (packageCode(bytes) === code) yield { data: bytes, cached: null };
    }
    const dirs = [this.options.packageDirs ?? []].flat();
    if (dirs.length) {
      const { readdir, readFile } = await import('node:fs/promises');
      const { join } = await import('node:path');
      for (const dir of dirs) {
        let names;
        try {
          names = (await readdir(dir)).sort();
        } catch {
          continue; // not there
        }
        for (const name of names) {
          let manifest;
          try {
            manifest = JSON.parse(await readFile(join(dir, name, 'manifest.json'), 'utf8'));
          } catch {
            continue; // not a model folder
          }
          if (manifest?.code !== code) continue;
          yield* unlessUnreadable(join(dir, name));
        }
      }
    }
    yield* this.#browserCached(code, digest);
  }

  async *#browserCached(model, digest) {
    const cache = await this.#browserCache();
    if (cache) {
      const key = this.#cacheKey(model, digest);
      const response = await cache.match(key);
      if (response) yield { data: new Uint8Array(await response.arrayBuffer()), cached: { remove: () => cache.delete(key) } };
    }
  }

  #url(model) {
    return `${this.options.baseUrl.replace(/\/+$/, '')}/models/${encodeURIComponent(model)}/decoder`;
  }

  #cacheKey(model, digest) {
    // A code names no URL; the digest (and the code check on loading) make the entry safe.
    if (isCode(model)) return `https://latentwire.invalid/codes/${model}/decoder?digest=${digestHex(digest)}`;
    const base = this.options.baseUrl ? this.#url(model) : `https://latentwire.invalid/models/${encodeURIComponent(model)}/decoder`;
    return `${base}?digest=${digestHex(digest)}`; // a package per digest: a new version is a new entry
  }

  async #browserCache() {
    if (this.options.browserCache === false || typeof globalThis.caches === 'undefined') return null;
    try {
      return await globalThis.caches.open(BROWSER_CACHE);
    } catch {
      return null; // e.g. an opaque origin
    }
  }

  async #fetch(model, digest) {
    const { fetchPackage, apiKey } = this.options;
    try {
      if (fetchPackage) return bytesOf(await fetchPackage(model));
      const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
      const id = isCode(model) ? await this.#hostedId(model, headers) : model;
      // Revalidated every time (the server's Cache-Control says so too): the URL names no
      // digest, so an HTTP-cached package could be another version of the model.
      const response = await fetch(this.#url(id), { headers, cache: 'no-cache' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      // The server's ETag is the digest of the package it has: another one is refused
      // without reading it.
      const etag = response.headers.get('etag');
      if (etag && etag.replace(/^W\//, '') !== `"${digestHex(digest)}"`) {
        response.body?.cancel();
        throw new IRError(
          'digest-mismatch',
          `IR was made for a different version of ${model} (decoder digest ${digestHex(digest)}); the server has ${etag}`,
        );
      }
      const length = Number(response.headers.get('content-length'));
      if (length > MAX_PACKAGE_BYTES) throw new Error('the decoder package is too large');
      return new Uint8Array(await response.arrayBuffer());
    } catch (e) {
      if (e instanceof IRError) throw e;
      throw new IRError('fetch-failed', `could not fetch the decoder of ${named(model)} (${e?.message ?? e})`);
    }
  }

  /** The id of the server's model of a deployment's code: its `GET /models` says whose. */
  async #hostedId(code, headers) {
    const response = await fetch(`${this.options.baseUrl.replace(/\/+$/, '')}/models`, { headers, cache: 'no-cache' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const hosted = await response.json();
    const found = Array.isArray(hosted) ? hosted.find((m) => m?.code === code) : undefined;
    if (typeof found?.id !== 'string') throw new IRError('no-decoder', `the server hosts no model with code ${code}`);
    return found.id;
  }

  /** Cache a fetched package: best-effort (a cache that cannot be written fails no decode). */
  async #keep(model, digest, data) {
    const { cacheDir } = this.options;
    if (cacheDir && !isCode(model) && SAFE_ID.test(model)) {
      const { mkdir, rename, rm, writeFile } = await import('node:fs/promises');
      const { join } = await import('node:path');
      const path = join(cacheDir, `${model}-${digestHex(digest)}.msgpack`);
      const temporary = `${path}.${process.pid}.${Date.now()}.tmp`;
      try {
        await mkdir(cacheDir, { recursive: true });
        await writeFile(temporary, data);
        await rename(temporary, path); // atomically: a reader never sees half a package
      } catch {
        await rm(temporary, { force: true }).catch(() => {}); // read-only, full, not a folder...
      }
    }
    const cache = await this.#browserCache();
    if (cache) {
      const headers = { 'Content-Type': 'application/msgpack' };
      await cache.put(this.#cacheKey(model, digest), new Response(data, { headers })).catch(() => {});
    }
  }
}

/** A model folder's package as a candidate of #local: its bytes, or the error reading it. */
async function* unlessUnreadable(folder) {
  let data;
  try {
    data = await readPackageFile(folder);
  } catch (e) {
    if (!(e instanceof IRError)) throw e;
    yield { data: null, cached: null, error: e };
    return;
  }
  if (data) yield { data, cached: null };
}

/**
 * Node: the decoder package in a model folder, as latentwire/shared/decoder_package.py
 * reads it: `decoder.msgpack.gz` (one gzip member, at most MAX_PACKAGE_BYTES once
 * inflated), else `decoder.msgpack`; null when the folder has neither.
 */
export async function readPackageFile(folder) {
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  let packed = null;
  try {
    packed = await readFile(join(folder, 'decoder.msgpack.gz'));
  } catch {
    // not there: the plain file, if any
  }
  if (packed) {
    const { gunzipSync } = await import('node:zlib');
    let data;
    try {
      data = gunzipSync(packed, { maxOutputLength: MAX_PACKAGE_BYTES });
    } catch (e) {
      throw new IRError('bad-decoder', `${folder}: unreadable decoder package (${e.message})`);
    }
    // One member only, as the Python reader: node joins several, whose last trailer then
    // gives the last one's length, not the whole.
    const trailer = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
    const size = trailer.getUint32(packed.byteLength - 4, true);
    if (size !== data.byteLength) {
      throw new IRError('bad-decoder', `${folder}: the decoder package is not one gzip member`);
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  try {
    const data = await readFile(join(folder, 'decoder.msgpack'));
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } catch {
    return null; // not there
  }
}
