"""The browser page (``GET /``) and the JavaScript decoder it runs (``GET /client/...``),
served by the server itself: no CDN, nothing fetched from elsewhere, works offline.

The files are client/js's layout, found in the checkout (an editable install: client/js
beside the ``latentwire.client`` package, with its ``npm ci``-installed node_modules) or
else in the ``latentwire-web`` distribution, which the ``server`` extra installs and which
holds the same files. They are not in the base ``latentwire`` wheel: onnxruntime-web's
wasm alone is 14 MB, and a receiver decoding in Python never needs it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import importlib.util
import posixpath
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

from latentwire.server.deps import registry_of
from latentwire.server.errors import ApiError
from latentwire.server.routes.common import accepts_gzip, etag_matches

router = APIRouter(tags=["web"])

WEB_DISTRIBUTION = "latentwire_web"  # the import name of the latentwire-web distribution
PAGE = "page/index.html"
MSGPACK = "node_modules/@msgpack/msgpack/dist.esm"
ORT_BUNDLE = "node_modules/onnxruntime-web/dist/ort.wasm.bundle.min.mjs"
ORT_WASM = "node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm"
# What a browser needs; a root lacking any of these is not used.
REQUIRED = ("latentwire.js", "src/wire.js", PAGE, f"{MSGPACK}/index.mjs", ORT_BUNDLE, ORT_WASM)
# The bare imports of the decoder's modules, rewritten to relative paths as they are served:
# then any page can `import { decode } from "/client/latentwire.js"` without an import map.
BARE_IMPORTS = {"@msgpack/msgpack": f"{MSGPACK}/index.mjs", "onnxruntime-web/wasm": ORT_BUNDLE}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",  # what WebAssembly.instantiateStreaming insists on
    ".png": "image/png",
}
MISSING = (
    "the web page's files are not installed: from a checkout run `make js-deps` (npm ci in "
    "client/js); from wheels install latentwire[server], which brings latentwire-web"
)


def served(root: Path) -> dict[str, Path]:
    """URL path under /client/ -> file: the decoder, the page and the two runtime packages
    (only the files a browser loads, never node_modules at large)."""
    files = [root / "latentwire.js", *root.glob("src/*.js"), *root.glob("page/*")]
    files += [*(root / MSGPACK).rglob("*.mjs"), root / ORT_BUNDLE, root / ORT_WASM]
    return {f.relative_to(root).as_posix(): f for f in files if f.suffix in TYPES}


def candidate_roots() -> list[Path]:
    """Where the files may be: the checkout's client/js, then latentwire-web's package."""
    # The package root (server/routes/ is two below it): no import of the client layer.
    roots = [Path(__file__).resolve().parents[2] / "client" / "js"]
    spec = importlib.util.find_spec(WEB_DISTRIBUTION)
    if spec is not None and spec.submodule_search_locations:
        roots += [Path(p) for p in spec.submodule_search_locations]
    return roots


@cache
def asset_root() -> Path | None:
    """The first complete set of files, or None (then /client/... answers 503)."""
    return next((r for r in candidate_roots() if all((r / f).is_file() for f in REQUIRED)), None)


@dataclass(frozen=True, eq=False)
class Asset:
    body: bytes
    gzipped: bytes | None
    tag: str  # of the body: the ETags are "<tag>" (plain) and "<tag>-gz" (gzipped)
    media_type: str

    def etag(self, gzipped: bool) -> str:
        """Each encoding its own ETag: a cache holding one never answers for the other."""
        return f'"{self.tag}-gz"' if gzipped else f'"{self.tag}"'


def _asset(body: bytes, media_type: str, compress: bool = True) -> Asset:
    """``body`` as served: its ETag, and gzipped once (text and wasm shrink 3-4x, the
    wasm 14.2 MB to 3.7 MB; images are compressed already)."""
    gzipped = gzip.compress(body, 6, mtime=0) if compress else None
    return Asset(body, gzipped, hashlib.sha256(body).hexdigest()[:20], media_type)


def _rewrite_bare_imports(path: str, text: str) -> str:
    here = posixpath.dirname(path) or "."
    for bare, target in BARE_IMPORTS.items():
        relative = posixpath.relpath(target, here)
        relative = relative if relative.startswith(".") else f"./{relative}"
        text = re.sub(rf"(['\"]){re.escape(bare)}\1", f"'{relative}'", text)
    return text


@cache
def served_files() -> dict[str, Path]:
    root = asset_root()
    return served(root) if root else {}


def load_asset(path: str) -> Asset | None:
    """One file as served: read, rewritten and gzipped once, then kept in memory until
    the file changes (an edit in the checkout shows on the next reload)."""
    file = served_files().get(path)
    if file is None:
        return None
    stat = file.stat()
    return _load(file, path, stat.st_mtime_ns, stat.st_size)


# Keyed by the file's mtime and size: bounded, as every edit in a checkout adds an entry
# (a few more than the files served, so that none is read twice in one page load).
@lru_cache(maxsize=64)
def _load(file: Path, path: str, mtime_ns: int, size: int) -> Asset:
    body = file.read_bytes()
    if path == "latentwire.js" or path.startswith("src/"):
        body = _rewrite_bare_imports(path, body.decode()).encode()
    return _asset(body, TYPES[file.suffix], compress=file.suffix != ".png")


async def _answer(path: str, request: Request, needs_key: bool = False) -> Response:
    if asset_root() is None:
        raise ApiError(503, "web_assets_missing", MISSING)
    asset = await asyncio.to_thread(load_asset, path)  # the first read gzips: off the loop
    if asset is None:
        raise ApiError(404, "not_found", f"no such file: /client/{path}")
    if needs_key:
        asset = _with_key_prompt(asset)
    # Revalidated on every visit (a 304 of a few hundred bytes): an upgraded server's files
    # are used at once, and an unchanged one costs no body.
    gzipped = asset.gzipped is not None and accepts_gzip(request)
    etag = asset.etag(gzipped)
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@lru_cache(maxsize=8)  # keyed by the page's Asset (by identity): one per version of the page
def _with_key_prompt(asset: Asset) -> Asset:
    """The page marked as needing an API key: it asks for one before any request, rather
    than learning it from a 401 (which a browser logs as an error)."""
    body = asset.body.replace(b"<body ", b'<body data-api-key="required" ', 1)
    return _asset(body, asset.media_type)


@router.get("/", include_in_schema=False)
async def page(request: Request) -> Response:
    """Encode an image here, decode it in the browser, compare with WebP and JPEG."""
    return await _answer(PAGE, request, needs_key=bool(registry_of(request).settings.keys))


@router.get("/client/{path:path}", include_in_schema=False)
async def client_file(path: str, request: Request) -> Response:
    """The JavaScript decoder (``/client/latentwire.js``), its runtime and the page's files."""
    return await _answer(path, request)
