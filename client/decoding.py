"""Decode IRs locally: parse, entropy-decode with the integer tables, run the ONNX synthesis.

Needs numpy, onnxruntime, constriction, msgpack and Pillow; never torch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from latentwire.shared.coding import CodingError, decode_latent
from latentwire.shared.decoder_package import DECODER_NAME, DecoderPackage, DecoderPackageError
from latentwire.shared.package import ZOO_DIR, list_packages, read_manifest
from latentwire.shared.wire import IR, IRError, parse

MAX_PIXELS = 4096 * 4096  # the largest image a client decodes


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
                    f"{ir.digest:08x}, this decoder is {self.package.digest:08x})"
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
        for indices in by_shape.values():  # one synthesis run per latent geometry
            batch = np.stack([latents[i] for i in indices]).astype(np.float32)
            out = self.session.run(None, {self.input_name: batch})[0]
            pixels = np.round((np.clip(out, -1, 1) + 1) * 127.5).astype(np.uint8)
            for i, image in zip(indices, pixels, strict=True):
                h, w = self.image_size(irs[i])
                image = image[:, :h, :w].transpose(1, 2, 0)
                images[i] = image[..., 0] if image.shape[2] == 1 else image
        return images


class DecoderStore:
    """Finds and caches decoders by model id: the shipped models first, then ``search_dirs``.

    A model id from an IR is only ever looked up in this index, never used as a path.
    """

    def __init__(self, search_dirs: Sequence[str | os.PathLike] = ()) -> None:
        self.roots = [ZOO_DIR, *(Path(d) for d in search_dirs)]
        self._decoders: dict[str, Decoder] = {}
        self._lock = threading.Lock()
        self._index: dict[str, Path] | None = None

    def _package_paths(self) -> dict[str, Path]:
        if self._index is None:
            index: dict[str, Path] = {}
            for root in self.roots:
                for folder in list_packages(root):
                    if (folder / DECODER_NAME).is_file():
                        index.setdefault(read_manifest(folder).id, folder / DECODER_NAME)
            self._index = index
        return self._index

    def get(self, model: str) -> Decoder:
        with self._lock:
            if model not in self._decoders:
                path = self._package_paths().get(model)
                if path is None:
                    raise IRError(f"no decoder for model {model!r} is available here")
                try:
                    self._decoders[model] = Decoder(DecoderPackage.from_bytes(path.read_bytes()))
                except DecoderPackageError as e:
                    raise IRError(f"decoder for {model!r} is unusable: {e}") from None
            return self._decoders[model]


_default_store = DecoderStore()


def decode_batch(irs: Sequence[bytes], store: DecoderStore | None = None) -> list[np.ndarray]:
    """Decode many IRs (any mix of models) into uint8 arrays, batching per model."""
    store = store or _default_store
    parsed = [parse(ir) for ir in irs]
    out: list[np.ndarray] = [None] * len(parsed)  # type: ignore[list-item]
    by_model: dict[str, list[int]] = {}
    for i, ir in enumerate(parsed):
        by_model.setdefault(ir.model, []).append(i)
    for model, indices in by_model.items():
        images = store.get(model).decode([parsed[i] for i in indices])
        for i, image in zip(indices, images, strict=True):
            out[i] = image
    return out


def decode_array(ir: bytes, store: DecoderStore | None = None) -> np.ndarray:
    """Decode one IR into a uint8 array: (H, W) grayscale or (H, W, 3) RGB."""
    return decode_batch([ir], store)[0]


def decode(ir: bytes, store: DecoderStore | None = None) -> Image.Image:
    """Decode one IR into a PIL image. Raises :class:`IRError` (a ValueError) for bad input."""
    return Image.fromarray(decode_array(ir, store))
