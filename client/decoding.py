"""Decode IRs locally: parse, entropy-decode with the integer tables, run the ONNX synthesis.

Needs numpy, onnxruntime, constriction, msgpack and Pillow; never torch.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from latentwire.shared.coding import CodingError, decode_latent
from latentwire.shared.decoder_package import (
    DECODER_NAME,
    DecoderPackage,
    DecoderPackageError,
    digest_of,
)
from latentwire.shared.package import ZOO_DIR, list_packages, read_manifest, write_atomically
from latentwire.shared.tiling import codec_tiles
from latentwire.shared.wire import IR, IRError, parse

MAX_PIXELS = 4096 * 4096  # the largest image a client decodes
# Latents per synthesis run. onnxruntime's time per image is flat in the batch size here
# (0.49 ms at 1, 0.38 ms at 16 on the 2-core CPU), so one at a time: the lowest latency,
# and an image decodes to the same pixels whatever it was batched with.
CHUNK = 1
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Decoder:
    """One model's decoder: its symbol tables and its synthesis transform in onnxruntime."""

    def __init__(self, package: DecoderPackage) -> None:
        self.package = package
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            package.onnx, options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def latent_shape(self, ir: IR) -> tuple[int, int, int]:
        """The latent geometry an IR decodes to, checked before anything is allocated."""
        _, height, width = self.package.image_shape
        if height:  # a model of fixed geometry
            if ir.size is not None and ir.size != (height, width):
                raise IRError(f"{ir.model} codes {height}x{width} images, the IR says {ir.size}")
            return self.package.latent_shape
        if ir.size is None:
            raise IRError(f"an IR for {ir.model} must carry the image size")
        if ir.size[0] * ir.size[1] > MAX_PIXELS:
            raise IRError(f"IR image size {ir.size} is over the {MAX_PIXELS}-pixel limit")
        s = self.package.stride
        return self.package.latent_shape[0], -(-ir.size[0] // s), -(-ir.size[1] // s)

    def image_size(self, ir: IR) -> tuple[int, int]:
        return ir.size if ir.size is not None else self.package.image_shape[1:]

    def decode(self, irs: Sequence[IR]) -> list[np.ndarray]:
        """Images as uint8 arrays, (H, W) for grayscale and (H, W, 3) for colour."""
        for ir in irs:
            if ir.digest != self.package.digest:
                raise IRError(
                    f"IR was made for a different version of {ir.model} (decoder digest "
                    f"{ir.digest:04x}, this decoder is {self.package.digest:04x})"
                )
        by_shape: dict[tuple[int, int, int], list[int]] = {}
        latents = []
        for i, ir in enumerate(irs):
            shape = self.latent_shape(ir)
            try:
                latents.append(decode_latent(ir.payload, self.package.tables, shape))
            except CodingError as e:
                raise IRError(str(e)) from None
            by_shape.setdefault(shape, []).append(i)
        images: list[np.ndarray] = [None] * len(irs)  # type: ignore[list-item]
        for indices in by_shape.values():  # synthesis runs per latent geometry
            batch = np.stack([latents[i] for i in indices]).astype(np.float32)
            pixels = self._synthesize(batch)
            for i, image in zip(indices, pixels, strict=True):
                h, w = self.image_size(irs[i])
                image = image[:, :h, :w].transpose(1, 2, 0)
                images[i] = image[..., 0] if image.shape[2] == 1 else image
        return images

    def _synthesize(self, latents: np.ndarray) -> np.ndarray:
        """uint8 images from latents, in runs of exactly ``CHUNK`` (the last one padded).

        Big latents are synthesized in overlapping windows (:func:`codec_tiles`), so
        memory is bounded by the window, not the image; each window's core is kept.
        """
        n, _, height, width = latents.shape
        s = self.package.stride
        out = np.empty((n, self.package.image_shape[0], height * s, width * s), np.uint8)
        tiles = codec_tiles(height, width)
        for start in range(0, n, CHUNK):
            chunk = latents[start : start + CHUNK]
            real = len(chunk)
            if real < CHUNK:
                pad = np.zeros((CHUNK - real, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            for tile in tiles:
                top, left, bottom, right = tile.window
                window = chunk[..., top:bottom, left:right]
                image = self.session.run(None, {self.input_name: window})[0][:real]
                (out_y, out_x), (in_y, in_x) = tile.core(s)
                pixels = np.round((np.clip(image[..., in_y, in_x], -1, 1) + 1) * 127.5)
                out[start : start + real, :, out_y, out_x] = pixels.astype(np.uint8)
        return out


class DecoderStore:
    """Finds decoders by (model id, digest), in this order: the shipped models and
    ``search_dirs``, the cache folder, then ``fetch`` (the server). A fetched decoder is
    kept, and written to the cache, only when its digest is the one the IR asks for.

    A model id from an IR is never used as a path unless it is a plain name.
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
        self._decoders: dict[tuple[str, int], Decoder] = {}
        self._lock = threading.Lock()
        self._index: dict[str, list[Path]] | None = None

    def _installed(self, model: str) -> list[Path]:
        if self._index is None:
            index: dict[str, list[Path]] = {}
            for root in self.roots:
                for folder in list_packages(root):
                    if (folder / DECODER_NAME).is_file():
                        index.setdefault(read_manifest(folder).id, []).append(folder / DECODER_NAME)
            self._index = index
        return self._index.get(model, [])

    def _cache_path(self, model: str, digest: int) -> Path | None:
        if self.cache_dir is None or not SAFE_ID.fullmatch(model):
            return None
        return self.cache_dir / f"{model}-{digest:04x}.msgpack"

    def has(self, model: str, digest: int) -> bool:
        try:
            self.get(model, digest, fetch=False)
        except IRError:
            return False
        return True

    def add(self, model: str, digest: int, data: bytes) -> Decoder:
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

    def get(self, model: str, digest: int, fetch: bool = True) -> Decoder:
        with self._lock:
            found = self._decoders.get((model, digest))
        if found is not None:
            return found
        candidates = list(self._installed(model))
        cached = self._cache_path(model, digest)
        if cached is not None and cached.is_file():
            candidates.append(cached)
        for path in candidates:
            data = path.read_bytes()
            if digest_of(data) == digest:
                decoder = self._load(model, data)
                with self._lock:
                    self._decoders[(model, digest)] = decoder
                return decoder
        if fetch and self.fetch is not None:
            return self.add(model, digest, self.fetch(model))
        if candidates:
            raise IRError(
                f"IR was made for a different version of {model} (decoder digest {digest:04x}); "
                "this client has another"
            )
        raise IRError(f"no decoder for model {model!r} is available here")

    @staticmethod
    def _load(model: str, data: bytes) -> Decoder:
        try:
            package = DecoderPackage.from_bytes(data)
        except DecoderPackageError as e:
            raise IRError(f"decoder for {model!r} is unusable: {e}") from None
        if package.model != model:
            raise IRError(f"decoder package is for {package.model!r}, not {model!r}")
        return Decoder(package)


_default_store = DecoderStore()


def decode_batch(irs: Sequence[bytes], store: DecoderStore | None = None) -> list[np.ndarray]:
    """Decode many IRs (any mix of models) into uint8 arrays, batching per model."""
    store = store or _default_store
    parsed = [parse(ir) for ir in irs]
    out: list[np.ndarray] = [None] * len(parsed)  # type: ignore[list-item]
    by_model: dict[tuple[str, int], list[int]] = {}
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
