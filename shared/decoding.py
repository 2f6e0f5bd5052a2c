"""The torch-free decoder of one codec: its symbol tables and its synthesis transform in
onnxruntime. The client decodes with it; :class:`latentwire.shared.codec.Codec` offers it
as its other half. Needs numpy, onnxruntime and constriction; never torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from latentwire.shared.coding import CodingError, decode_hyper, decode_latent, hyper_element_bits
from latentwire.shared.decoder_package import MAX_PIXELS, DecoderPackage
from latentwire.shared.images import SIGNED
from latentwire.shared.tiling import codec_tiles
from latentwire.shared.wire import IR, IRError

# Latents per synthesis run. onnxruntime's time per image is flat in the batch size here
# (0.49 ms at 1, 0.38 ms at 16 on the 2-core CPU), so one at a time: the lowest latency,
# and an image decodes to the same pixels whatever it was batched with.
CHUNK = 1


@dataclass(frozen=True)
class LatentView:
    """One IR's latent and where its bits went (:meth:`Decoder.latent_view`)."""

    latent: np.ndarray  # (M, h, w) integers
    bits: np.ndarray  # (M, h, w): the bits each element cost
    side_bits: float  # a hyperprior codec's z; 0 for a factorized one


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

    def _check_digest(self, ir: IR) -> None:
        if ir.digest != self.package.digest:
            raise IRError(
                f"IR was made for a different version of {ir.model} (decoder digest "
                f"{ir.digest:04x}, this decoder is {self.package.digest:04x})"
            )

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
            self._check_digest(ir)
        by_shape: dict[tuple[int, int, int], list[int]] = {}
        latents = []
        for i, ir in enumerate(irs):
            shape = self.latent_shape(ir)
            try:
                latents.append(self._latent(ir.payload, shape))
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

    def latent_view(self, ir: IR) -> LatentView:
        """Where one IR's bits went: its integer latent and the bits of each element (the
        ideal code length under the tables that coded it), and the side information's."""
        self._check_digest(ir)
        shape = self.latent_shape(ir)
        tables, hyper = self.package.tables, self.package.hyper
        try:
            if hyper is None:
                latent = decode_latent(ir.payload, tables, shape)
                return LatentView(latent, tables.element_bits(latent), 0.0)
            z, values, index, mean = self._hyper_parts(ir.payload, shape)
        except CodingError as e:
            raise IRError(str(e)) from None
        bits = hyper_element_bits(values, index, hyper.scale_tables, hyper.excess)
        return LatentView(values + mean, bits, tables.bits(z))

    def _latent(self, payload: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """The integer latent of a payload: with the fixed tables, or for a hyperprior
        codec, z first, then y with the tables and means the hyper-synthesis gives."""
        if self.package.hyper is None:
            return decode_latent(payload, self.package.tables, shape)
        _, values, _, mean = self._hyper_parts(payload, shape)
        return values + mean

    def _hyper_parts(
        self, payload: bytes, shape: tuple[int, int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(z, values of y less their means, scale indexes, means) of a hyperprior payload."""
        hyper = self.package.hyper
        _, h, w = shape
        z_shape = (self.package.tables.channels, -(-h // 4), -(-w // 4))
        found: list[tuple[np.ndarray, np.ndarray]] = []

        def parameters(z: np.ndarray) -> np.ndarray:
            found.append(hyper.synthesis(z, (h, w)))
            return found[0][0]

        z, values = decode_hyper(
            payload,
            self.package.tables,
            z_shape,
            hyper.scale_tables,
            parameters,
            excess=hyper.excess,
        )
        index, mean = found[0]
        return z, values, index, mean

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
                pixels = SIGNED.to_pixels(image[..., in_y, in_x])  # a codec's range
                out[start : start + real, :, out_y, out_x] = pixels.astype(np.uint8)
        return out
