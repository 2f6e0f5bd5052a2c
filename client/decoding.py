"""Decode IRs locally: find the decoder an IR names (shipped, cached or fetched, checked by
digest), then parse, entropy-decode and synthesize (:class:`latentwire.shared.decoding.Decoder`).

Needs numpy, onnxruntime, constriction, msgpack and Pillow; never torch.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from latentwire.shared.decoder_package import (
    DecoderPackage,
    DecoderPackageError,
    decoder_path,
    digest_of,
    read_decoder,
)
from latentwire.shared.decoding import Decoder
from latentwire.shared.package import ZOO_DIR, list_packages, read_manifest, write_atomically
from latentwire.shared.wire import IRError, parse

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
Model = str | int  # an IR's model: an id, or a deployment's model code


class DecoderStore:
    """Finds decoders by (model id, digest), in this order: the shipped models and
    ``search_dirs``, the cache folder, then ``fetch`` (the server). A fetched decoder is
    kept, and written to the cache, only when its digest is the one the IR asks for.

    A model id from an IR is never used as a path unless it is a plain name. A deployment's
    model code (an int) is found by the ``code`` of the packages here, or asked of ``fetch``.
    """

    def __init__(
        self,
        search_dirs: Sequence[str | os.PathLike] = (),
        cache_dir: str | os.PathLike | None = None,
        fetch: Callable[[str], bytes] | None = None,
    ) -> None:
        self.roots = [ZOO_DIR, *(Path(d) for d in search_dirs)]
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.fetch = fetch
        self._decoders: dict[tuple[Model, int], Decoder] = {}
        self._lock = threading.Lock()
        self._index: dict[Model, list[Path]] | None = None

    def _installed(self, model: Model) -> list[Path]:
        """The decoder files of the model folders that hold ``model`` (by id or code). The
        folders are indexed once; their files are looked up now (a package exported again
        meanwhile is read as it is now)."""
        if self._index is None:
            index: dict[Model, list[Path]] = {}
            for root in self.roots:
                for folder in list_packages(root):
                    if decoder_path(folder) is not None:
                        manifest = read_manifest(folder)
                        for key in (manifest.id, manifest.code):
                            if key is not None:
                                index.setdefault(key, []).append(folder)
            self._index = index
        return [p for p in map(decoder_path, self._index.get(model, [])) if p is not None]

    def _cache_path(self, model: Model, digest: int) -> Path | None:
        if self.cache_dir is None or not isinstance(model, str) or not SAFE_ID.fullmatch(model):
            return None
        return self.cache_dir / f"{model}-{digest:04x}.msgpack"

    def has(self, model: Model, digest: int) -> bool:
        try:
            self.get(model, digest, fetch=False)
        except IRError:
            return False
        return True

    def add(self, model: Model, digest: int, data: bytes) -> Decoder:
        """Keep a downloaded decoder package, after checking it is the one wanted."""
        if digest_of(data) != digest:
            raise IRError(
                f"the decoder offered for {model!r} has digest {digest_of(data):04x}, "
                f"the IR needs {digest:04x}; refused"
            )
        decoder = self._load(model, data)
        path = self._cache_path(model, digest)
        if path is not None:
            write_atomically(path, data)
        with self._lock:
            self._decoders[(model, digest)] = decoder
        return decoder

    def get(self, model: Model, digest: int, fetch: bool = True) -> Decoder:
        with self._lock:
            found = self._decoders.get((model, digest))
        if found is not None:
            return found
        candidates = list(self._installed(model))
        cached = self._cache_path(model, digest)
        if cached is not None and cached.is_file():
            candidates.append(cached)
        refused: IRError | None = None  # an unreadable file: skipped, and said if nothing else
        for path in candidates:
            try:
                data = read_decoder(path)
            except (DecoderPackageError, OSError) as e:
                refused = IRError(f"decoder for {model!r} is unusable: {e}")
                continue
            if digest_of(data) == digest:
                decoder = self._load(model, data)
                with self._lock:
                    self._decoders[(model, digest)] = decoder
                return decoder
        if fetch and self.fetch is not None:
            return self.add(model, digest, self.fetch(model))
        if refused is not None:
            raise refused
        if candidates:
            raise IRError(
                f"IR was made for a different version of {model} (decoder digest {digest:04x}); "
                "this client has another"
            )
        raise IRError(f"no decoder for model {model!r} is available here")

    @staticmethod
    def _load(model: Model, data: bytes) -> Decoder:
        try:
            package = DecoderPackage.from_bytes(data)
        except DecoderPackageError as e:
            raise IRError(f"decoder for {model!r} is unusable: {e}") from None
        named = package.code if isinstance(model, int) else package.model
        if named != model:
            raise IRError(f"decoder package is for {named!r}, not {model!r}")
        return Decoder(package)


MODEL_DIR_ENV = "LATENTWIRE_MODEL_DIR"  # a deployment's own packages, as the server's
_default_stores: dict[str, DecoderStore] = {}
_lock = threading.Lock()


def default_store() -> DecoderStore:
    """The store a bare :func:`decode` uses: the shipped models and the packages in
    ``$LATENTWIRE_MODEL_DIR`` (read at each call: one store per folder)."""
    folder = os.environ.get(MODEL_DIR_ENV, "")
    with _lock:
        if folder not in _default_stores:
            _default_stores[folder] = DecoderStore([folder] if folder else [])
        return _default_stores[folder]


def decode_batch(irs: Sequence[bytes], store: DecoderStore | None = None) -> list[np.ndarray]:
    """Decode many IRs (any mix of models) into uint8 arrays, batching per model."""
    store = store or default_store()
    parsed = [parse(ir) for ir in irs]
    out: list[np.ndarray] = [None] * len(parsed)  # type: ignore[list-item]
    by_model: dict[tuple[Model, int], list[int]] = {}
    for i, ir in enumerate(parsed):
        by_model.setdefault((ir.model, ir.digest), []).append(i)
    for (model, digest), indices in by_model.items():
        images = store.get(model, digest).decode([parsed[i] for i in indices])
        for i, image in zip(indices, images, strict=True):
            out[i] = image
    return out


def decode_array(ir: bytes, store: DecoderStore | None = None) -> np.ndarray:
    """Decode one IR into a uint8 array: (H, W) grayscale or (H, W, 3) RGB."""
    return decode_batch([ir], store)[0]


def decode(ir: bytes, store: DecoderStore | None = None) -> Image.Image:
    """Decode one IR into a PIL image. Raises :class:`IRError` (a ValueError) for bad input."""
    return Image.fromarray(decode_array(ir, store))
