"""A codec at run time, and which codec encodes an image.

:class:`Codec` is one codec package loaded for use, with CompressAI's surface:
``compress(images)`` gives one IR per image (the analysis transform in torch, rounding,
entropy coding with the package's integer tables, the wire format); ``decompress(irs)``
gives the images back with the torch-free decoder (:mod:`latentwire.shared.decoding`),
its other half. The server, local encoding, export and the benchmarks all code through it.

:class:`CodecChoice` decides which codec a request means: a full id, a codec name and a
quality level, or ``auto`` (by the image).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentwire.shared.coding import encode_latent, encode_latents
from latentwire.shared.decoder_package import DECODER_NAME, DecoderPackage
from latentwire.shared.decoding import Decoder
from latentwire.shared.images import PixelRange
from latentwire.shared.models import make_config
from latentwire.shared.models.codec import FactorizedCodec, pad_to_stride
from latentwire.shared.models.loading import load_model
from latentwire.shared.package import Manifest, PackageError, package_folder
from latentwire.shared.wire import IR, parse

AUTO = "auto"  # the model name that picks a codec by the image
# What an unnamed choice means, unless a server's settings say otherwise.
DEFAULT_QUALITY, SMALL_CODEC, PHOTO_CODEC = 3, "fashion-mnist", "photo"


class ChoiceError(ValueError):
    """A request names a codec or level that is not here; ``code`` is stable."""

    code = "unknown_model"


class NoSuchCodec(ChoiceError):
    code = "unknown_model"


class NoSuchQuality(ChoiceError):
    code = "unknown_quality"


class QualityMismatch(ChoiceError):
    code = "quality_mismatch"


def codec_name(model_id: str) -> str:
    """A codec's name without its quality level: ``fashion-mnist-q3`` -> ``fashion-mnist``."""
    base, _, level = model_id.rpartition("-q")
    return base if base and level.isdigit() else model_id


@dataclass(frozen=True)
class CodecLevel:
    """What choosing needs to know of a codec: its id, level and geometry (C, H, W; H and
    W 0 for a codec of any size)."""

    id: str
    quality: int | None
    shape: tuple[int, int, int]

    @property
    def name(self) -> str:
        return codec_name(self.id)

    @classmethod
    def of(cls, manifest: Manifest) -> CodecLevel:
        config = make_config(manifest.family, manifest.config)
        return cls(manifest.id, manifest.quality, config.image_shape)


class CodecChoice:
    """Which codec encodes an image, decided here only.

    ``model`` is a full id, a codec name (at ``quality``, or the default level) or ``auto``:
    an image the small codec takes exactly (its size; grayscale for a grayscale codec) goes
    to it, any other to the photo codec when there is one (without one, to the small
    codec, whose error then says what it takes).
    """

    def __init__(
        self,
        levels: Sequence[CodecLevel],
        default_model: str = AUTO,
        default_quality: int = DEFAULT_QUALITY,
        small_codec: str = SMALL_CODEC,
        photo_codec: str = PHOTO_CODEC,
    ) -> None:
        self.levels = {level.id: level for level in levels}
        self.default_model, self.default_quality = default_model, default_quality
        self.small, self.photo = small_codec, photo_codec
        self._has_photo = any(level.name == photo_codec for level in levels)
        self._small = [level for level in levels if level.name == small_codec]
        self._resolved: dict[tuple[str, int | None], CodecLevel] = {}  # every request asks

    def chooser(self, model: str | None, quality: int | None) -> Callable[[Image.Image], str]:
        """The id of the codec for an image. A named codec is checked now, before any image
        is read; ``auto`` decides once the image is decoded."""
        name = model or self.default_model
        if name != AUTO:
            chosen = self.resolve(name, quality).id
            return lambda image: chosen

        def choose(image: Image.Image) -> str:
            fits = any(
                level.shape[1:] == (image.height, image.width)
                and (level.shape[0] == 1) == (image.mode in ("L", "LA"))
                for level in self._small
            )
            return self.resolve(
                self.small if fits or not self._has_photo else self.photo, quality
            ).id

        return choose

    def resolve(self, model: str, quality: int | None) -> CodecLevel:
        """A codec by full id, or by name and quality (``fashion-mnist``, 3)."""
        found = self._resolved.get((model, quality))
        if found is None:
            found = self._resolved[model, quality] = self._look_up(model, quality)
        return found

    def _look_up(self, model: str, quality: int | None) -> CodecLevel:
        if model in self.levels:
            level = self.levels[model]
            if quality is not None and level.quality != quality:
                raise QualityMismatch(f"{model} is quality {level.quality}")
            return level
        by_quality = {v.quality: v for v in self.levels.values() if v.name == model}
        if not by_quality:
            raise NoSuchCodec(f"no codec named {model!r} here; see GET /models")
        if quality is None:
            default = self.default_quality
            quality = default if default in by_quality else sorted(by_quality)[len(by_quality) // 2]
        if quality not in by_quality:
            raise NoSuchQuality(f"{model} has quality levels {sorted(by_quality)}, not {quality}")
        return by_quality[quality]


class Codec:
    """One codec package, loaded for use: ``compress`` in torch, ``decompress`` without."""

    def __init__(
        self,
        model: FactorizedCodec,
        manifest: Manifest,
        decoder_bytes: bytes,
        device: torch.device,
    ) -> None:
        self.model, self.manifest, self.device = model, manifest, device
        self.decoder_bytes = decoder_bytes
        self.package = DecoderPackage.from_bytes(decoder_bytes)
        self.pixels = PixelRange.from_json(manifest.pixel_range)
        self._decoder: Decoder | None = None

    @classmethod
    def load(cls, package: str | os.PathLike, device: str = "cpu") -> Codec:
        """A codec by package folder or shipped id, its weights checked against the manifest."""
        folder = package_folder(package)
        model, manifest = load_model(folder, device)
        if manifest.task != "codec" or not (Path(folder) / DECODER_NAME).is_file():
            raise PackageError(f"{manifest.id} is a {manifest.task} package, not a codec")
        return cls(
            model, manifest, (Path(folder) / DECODER_NAME).read_bytes(), torch.device(device)
        )

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images it takes; H and W 0: any size."""
        return self.package.image_shape

    @property
    def level(self) -> CodecLevel:
        return CodecLevel(self.id, self.manifest.quality, self.shape)

    def compress(self, images: Sequence[np.ndarray]) -> list[bytes]:
        """uint8 (C, H, W) images of the codec's geometry (:func:`~latentwire.shared.images.
        model_input`) -> one IR each. The same image gives the same bytes whatever it is
        sent with (the model runs on fixed-size chunks; an any-size codec on one image)."""
        tables, model, digest = self.package.tables, self.package.model, self.package.digest
        if self.model.any_size:
            irs = []
            for image in images:
                x = pad_to_stride(self._to_model(image[None]), self.model.stride)
                payload = encode_latent(self.model.quantized_latent(x)[0], tables)
                irs.append(IR(model, digest, payload, size=image.shape[1:]).to_bytes())
            return irs
        latents = self.model.quantized_latents(self._to_model(np.stack(images)))
        return [IR(model, digest, p).to_bytes() for p in encode_latents(latents, tables)]

    def _to_model(self, pixels: np.ndarray) -> torch.Tensor:
        if not pixels.flags.writeable:  # torch takes only writable arrays without a copy
            pixels = pixels.copy()
        x = torch.from_numpy(pixels).to(self.device, torch.float32, copy=True)  # ours to change
        return self.pixels.to_model_(x)

    @property
    def decoder(self) -> Decoder:
        """The torch-free decoder (onnxruntime), loaded on first use."""
        if self._decoder is None:
            self._decoder = Decoder(self.package)
        return self._decoder

    def decompress(self, irs: Sequence[bytes]) -> list[np.ndarray]:
        """uint8 images, (H, W) for grayscale or (H, W, 3), exactly as the client decodes."""
        return self.decoder.decode([parse(ir) for ir in irs])
