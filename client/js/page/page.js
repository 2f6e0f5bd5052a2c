// The page at GET /: an image goes to the server's POST /encode; its IR is decoded here by
// the JavaScript decoder and set beside the original, WebP and JPEG at the same byte budget
// (and at the same PSNR), and a map of where the IR's bits went.
import { decode, DecoderStore, IRError, parseIR } from '../latentwire.js';

const $ = (id) => document.getElementById(id);
// The server this page came from, with any path prefix a proxy put in front of it.
const BASE = new URL('.', document.baseURI).href.replace(/\/+$/, '');

let apiKey = ''; // in memory only: never stored, gone when the page is closed or reloaded
let store = null;
let busy = false;

/**
 * Where the page's state is for a test driving it (tests/client/test_page.py): data-state
 * on <body>, and this: the last result, the last error, and decode(ir) with the page's
 * store. Nothing more: neither the store nor its options (they hold the API key).
 */
const page = { last: null, error: null, decode: (ir) => decode(ir, { store: storeFor() }) };
window.latentwirePage = Object.seal(page);

function storeFor() {
  // One store per key: it holds each model's decoder (one onnxruntime session) for reuse.
  if (!store || store.options.apiKey !== (apiKey || undefined)) {
    store = new DecoderStore({ baseUrl: BASE, apiKey: apiKey || undefined });
  }
  return store;
}

function setState(state, message, isError = false) {
  document.body.dataset.state = state;
  $('status').textContent = message;
  $('status').classList.toggle('error', isError);
}

const headers = () => (apiKey ? { Authorization: `Bearer ${apiKey}` } : {});

async function serverError(response) {
  try {
    const body = await response.json();
    return `${response.status} ${body.error.code}: ${body.error.message}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** The codec names and quality levels the server hosts; asks for a key if it needs one. */
async function loadModels() {
  const response = await fetch(`${BASE}/models`, { headers: headers() });
  if (response.status === 401) {
    $('key-field').hidden = false;
    setState('key', 'This server needs an API key: enter it above (it stays in this page only).');
    return false;
  }
  if (!response.ok) throw new Error(await serverError(response));
  const codecs = (await response.json()).filter((m) => m.task === 'codec');
  const names = [...new Set(codecs.map((m) => m.name))].sort();
  const levels = [...new Set(codecs.map((m) => m.quality))].sort((a, b) => a - b);
  $('model').replaceChildren(new Option('auto', ''), ...names.map((n) => new Option(n, n)));
  $('quality').replaceChildren(new Option('default', ''), ...levels.map((q) => new Option(String(q), String(q))));
  return true;
}

/** The image as the server sees it: upright, transparency over black, at full size. */
async function originalPixels(file) {
  // No colour management: the pixels as stored, as the server's Pillow reads them.
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d');
  context.fillStyle = '#000';
  context.fillRect(0, 0, bitmap.width, bitmap.height);
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context.getImageData(0, 0, canvas.width, canvas.height);
}

const isGray = (image) => {
  const d = image.data;
  for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i] !== d[i + 2]) return false;
  return true;
};

/** Pillow's convert('L'): what a grayscale codec is given. */
function toGray(image) {
  const d = new Uint8ClampedArray(image.data);
  for (let i = 0; i < d.length; i += 4) {
    const l = Math.floor((d[i] * 19595 + d[i + 1] * 38470 + d[i + 2] * 7471 + 0x8000) / 65536);
    d[i] = d[i + 1] = d[i + 2] = l;
  }
  return new ImageData(d, image.width, image.height);
}

/** PSNR over the RGB samples (a grayscale image: its one channel). */
function psnr(a, b) {
  let sum = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    for (let k = 0; k < 3; k++) {
      const d = a.data[i + k] - b.data[i + k];
      sum += d * d;
    }
  }
  const mse = sum / ((a.data.length / 4) * 3);
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

function show(canvasId, image, scale) {
  const canvas = $(canvasId);
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext('2d').putImageData(image, 0, 0);
  canvas.style.width = `${image.width * scale}px`;
  canvas.style.height = `${image.height * scale}px`;
}

const canvasOf = (image) => {
  const canvas = new OffscreenCanvas(image.width, image.height);
  canvas.getContext('2d').putImageData(image, 0, 0);
  return canvas;
};

/** A browser-made WebP or JPEG of the source at one quality, and its decoded pixels. */
async function browserCoded(source, type, quality) {
  const blob = await source.convertToBlob({ type, quality });
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d');
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { bytes: blob.size, quality, image: context.getImageData(0, 0, canvas.width, canvas.height) };
}

/**
 * Binary search of the encoder quality (0..1): the best that fits `budget` bytes, and the
 * smallest that reaches `target` dB. The browser's toBlob/convertToBlob is the only
 * encoder a page has; its quality is monotone enough for a search.
 */
async function compare(original, type, budget, target) {
  const source = canvasOf(original);
  const at = async (q) => {
    const coded = await browserCoded(source, type, q);
    coded.psnr = psnr(original, coded.image);
    return coded;
  };
  let lo = 0;
  let hi = 1;
  let fit = await at(0);
  if (fit.bytes <= budget) {
    for (let i = 0; i < 8; i++) {
      const mid = (lo + hi) / 2;
      const coded = await at(mid);
      if (coded.bytes <= budget) [lo, fit] = [mid, coded];
      else hi = mid;
    }
  } else fit.over = true; // even the lowest quality is over the budget
  lo = 0;
  hi = 1;
  let equal = await at(1);
  if (equal.psnr >= target) {
    for (let i = 0; i < 8; i++) {
      const mid = (lo + hi) / 2;
      const coded = await at(mid);
      if (coded.psnr >= target) [hi, equal] = [mid, coded];
      else lo = mid;
    }
  } else equal.short = true; // even the highest quality stays under the PSNR
  return { fit, equal };
}

// A perceptually even colour map (inferno, 9 stops) for the bit map.
const INFERNO = [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85], [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]];

function colour(t) {
  const x = Math.min(Math.max(t, 0), 1) * (INFERNO.length - 1);
  const i = Math.min(Math.floor(x), INFERNO.length - 2);
  const f = x - i;
  return INFERNO[i].map((v, k) => Math.round(v + f * (INFERNO[i + 1][k] - v)));
}

function heatmap(codeLengths) {
  const { width, height, bits } = codeLengths;
  const max = bits.reduce((a, b) => Math.max(a, b), 0) || 1;
  const image = new ImageData(width, height);
  for (let p = 0; p < bits.length; p++) {
    const [r, g, b] = colour(bits[p] / max);
    image.data.set([r, g, b, 255], 4 * p);
  }
  return { image, max, total: bits.reduce((a, b) => a + b, 0) };
}

const fmt = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : '∞');

function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) tr.append(Object.assign(document.createElement('td'), { textContent: c }));
  return tr;
}

async function run(file) {
  if (busy) return;
  busy = true;
  try {
    setState('working', `Encoding ${file.name} on the server…`);
    const params = new URLSearchParams({ effort: $('effort').value });
    if ($('model').value) params.set('model', $('model').value);
    if ($('quality').value) params.set('quality', $('quality').value);
    const response = await fetch(`${BASE}/encode?${params}`, {
      method: 'POST',
      body: file,
      headers: { ...headers(), 'Content-Type': file.type || 'application/octet-stream' },
    });
    if (!response.ok) {
      if (response.status === 401) $('key-field').hidden = false;
      throw new Error(`the server refused the image: ${await serverError(response)}`);
    }
    const ir = new Uint8Array(await response.arrayBuffer());
    const model = response.headers.get('x-latentwire-model');

    setState('working', `Decoding the ${ir.length}-byte IR in the browser…`);
    const known = storeFor().decoders.size;
    const began = performance.now();
    const decoded = await decode(ir, { store: storeFor(), codeLengths: true });
    const decodeMs = performance.now() - began;
    const fetched = storeFor().decoders.size > known; // the first IR of a model: package + session

    let original = await originalPixels(file);
    if (isGray(decoded) && !isGray(original)) original = toGray(original);
    const quality = psnr(original, decoded);
    const pixels = decoded.width * decoded.height;
    // Small images (28x28) blown up by whole pixels; photos shrunk to fit 360 pixels.
    const side = Math.max(decoded.width, decoded.height);
    const scale = side <= 90 ? Math.floor(224 / side) : Math.min(1, 360 / side);
    show('original', original, scale);
    show('decoded', decoded, scale);
    const map = heatmap(decoded.codeLengths);
    show('heatmap', map.image, (decoded.width * scale) / map.image.width);
    $('original-caption').textContent = `original, ${original.width}x${original.height} (${file.size} bytes as uploaded)`;
    $('decoded-caption').textContent = `latentwire ${model}: ${ir.length} bytes, ${fmt(quality)} dB`;
    $('heatmap-caption').textContent =
      `bits per latent position (${map.image.width}x${map.image.height}): black 0, yellow ${fmt(map.max, 1)}; ` +
      `${fmt(map.total, 0)} bits coded in ${8 * parseIR(ir).payload.length} payload bits`;
    $('results').hidden = false;

    setState('working', 'Making WebP and JPEG in the browser at the same bytes and the same PSNR…');
    const tbody = $('figures').querySelector('tbody');
    tbody.replaceChildren(row([`latentwire (${model})`, String(ir.length), fmt(quality), fmt((8 * ir.length) / pixels, 3), 'the whole IR']));
    const comparisons = {};
    for (const [type, name] of [['image/webp', 'webp'], ['image/jpeg', 'jpeg']]) {
      const { fit, equal } = await compare(original, type, ir.length, quality);
      comparisons[name] = {
        sameBytes: { bytes: fit.bytes, psnr: fit.psnr, quality: fit.quality, overBudget: Boolean(fit.over) },
        samePsnr: { bytes: equal.bytes, psnr: equal.psnr, quality: equal.quality, reached: !equal.short },
      };
      show(name, fit.image, scale);
      const label = name === 'webp' ? 'WebP' : 'JPEG';
      $(`${name}-caption`).textContent = `${label} ${fit.over ? 'at its lowest quality (over the budget)' : 'at the same bytes'}: ${fit.bytes} bytes, ${fmt(fit.psnr)} dB`;
      tbody.append(
        row([`${label}, same bytes`, String(fit.bytes), fmt(fit.psnr), fmt((8 * fit.bytes) / pixels, 3), fit.over ? `even quality 0 is over ${ir.length} bytes` : `quality ${fmt(fit.quality, 3)}`]),
        row([`${label}, same PSNR`, String(equal.bytes), fmt(equal.psnr), fmt((8 * equal.bytes) / pixels, 3), equal.short ? 'even quality 1 stays under the PSNR' : `quality ${fmt(equal.quality, 3)}, ${fmt(equal.bytes / ir.length, 1)}x the IR`]),
      );
    }
    $('timing').textContent = `Decoded in ${fmt(decodeMs, 1)} ms in this browser${fetched ? ' (the first IR of this model: fetching its decoder package and starting onnxruntime included; the next one is faster)' : ''}.`;
    const link = $('download');
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([ir], { type: 'application/msgpack' }));
    link.download = `${file.name.replace(/\.[^.]*$/, '')}.lw`;
    page.last = { ir, model, irBytes: ir.length, psnr: quality, decodeMs, firstOfModel: fetched, width: decoded.width, height: decoded.height, comparisons };
    setState('done', `Done: ${file.name} as ${model}.`);
  } catch (e) {
    page.error = String(e?.message ?? e);
    const what = e instanceof IRError ? `the IR did not decode (${e.code}): ${e.message}` : page.error;
    setState('error', what, true);
  } finally {
    busy = false;
  }
}

function wire() {
  const drop = $('drop');
  $('file').addEventListener('change', () => $('file').files[0] && run($('file').files[0]));
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files?.[0];
    if (file) run(file);
  });
  let applied = null;
  const applyKey = async () => {
    if ($('key').value.trim() === applied) return;
    apiKey = applied = $('key').value.trim();
    try {
      if (await loadModels()) setState('idle', 'Choose or drop an image.');
    } catch (e) {
      setState('error', String(e?.message ?? e), true);
    }
  };
  $('key').addEventListener('change', applyKey);
  // Enter in the key field: apply it, never submit the form (that would reload the page).
  $('controls').addEventListener('submit', (e) => {
    e.preventDefault();
    applyKey();
  });
}

async function start() {
  wire();
  if (!window.isSecureContext) {
    // WebCrypto (the decoder checks each package's SHA-256) and the Cache API need one.
    setState('error', 'This page needs a secure context: open it over https, or on localhost.', true);
    return;
  }
  if (document.body.dataset.apiKey === 'required') {
    // The server said so in the page: ask first, send nothing without a key.
    $('key-field').hidden = false;
    setState('key', 'This server needs an API key: enter it above (it stays in this page only).');
    return;
  }
  try {
    if (await loadModels()) setState('idle', 'Choose or drop an image.');
  } catch (e) {
    setState('error', `Could not list the models: ${e?.message ?? e}`, true);
  }
}

start();
