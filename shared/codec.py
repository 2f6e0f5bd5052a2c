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

import numpy as np
import torch
from PIL import Image

from latentwire.shared.coding import SymbolTables, encode_hyper, encode_latent, encode_latents
from latentwire.shared.decoder_package import DecoderPackage, decoder_path, read_decoder
from latentwire.shared.decoding import Decoder
from latentwire.shared.images import PixelRange
from latentwire.shared.models import make_config
from latentwire.shared.models.codec import ENCODE_CHUNK, FactorizedCodec, pad_to_stride
from latentwire.shared.models.loading import load_model
from latentwire.shared.package import Manifest, PackageError, package_folder
from latentwire.shared.wire import IR, parse

AUTO = "auto"  # the model name that picks a codec by the image
# Encoder effort: gradient steps of latent refinement at effort 0, 1, 2, 3 (Codec.compress).
EFFORT_STEPS = (0, 20, 60, 150)
# Adam's first step size, in quantization steps (it falls to zero), by family: measured
# best on Fashion-MNIST (factorized) and on Kodak (hyperprior; docs/benchmarks.md).
REFINE_LR = {"factorized": 0.002, "hyperprior": 0.005}
REFINE_CANDIDATES = 25  # points along the way compared by their real cost (and the start)
# What an unnamed choice means, unless a server's settings say otherwise.
DEFAULT_QUALITY, SMALL_CODEC, PHOTO_CODEC = 3, "fashion-mnist", "photo"
GRAY_PHOTO_CODEC = "photo-gray"


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
    to it, any other to the photo codec when there is one, a grayscale image to the
    grayscale photo codec when there is one (without a photo codec, to the small codec,
    whose error then says what it takes).
    """

    def __init__(
        self,
        levels: Sequence[CodecLevel],
        default_model: str = AUTO,
        default_quality: int = DEFAULT_QUALITY,
        small_codec: str = SMALL_CODEC,
        photo_codec: str = PHOTO_CODEC,
        gray_photo_codec: str = GRAY_PHOTO_CODEC,
    ) -> None:
        self.levels = {level.id: level for level in levels}
        self.default_model, self.default_quality = default_model, default_quality
        self.small, self.photo, self.gray_photo = small_codec, photo_codec, gray_photo_codec
        self._has_photo = any(level.name == photo_codec for level in levels)
        self._has_gray_photo = any(level.name == gray_photo_codec for level in levels)
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
            gray = image.mode in ("L", "LA")
            fits = any(
                level.shape[1:] == (image.height, image.width) and (level.shape[0] == 1) == gray
                for level in self._small
            )
            if fits or not self._has_photo:
                name = self.small
            else:
                name = self.gray_photo if gray and self._has_gray_photo else self.photo
            return self.resolve(name, quality).id

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
        # For use only: nothing here trains it, and latent refinement must not leave
        # gradients in its parameters (several threads may refine with one model).
        self.model, self.manifest, self.device = model.requires_grad_(False), manifest, device
        self.decoder_bytes = decoder_bytes
        self.package = DecoderPackage.from_bytes(decoder_bytes)
        self.pixels = PixelRange.from_json(manifest.pixel_range)
        self._decoder: Decoder | None = None

    @classmethod
    def load(cls, package: str | os.PathLike, device: str = "cpu") -> Codec:
        """A codec by package folder or shipped id, its weights checked against the manifest."""
        folder = package_folder(package)
        model, manifest = load_model(folder, device)
        decoder = decoder_path(folder)
        if manifest.task != "codec" or decoder is None:
            raise PackageError(f"{manifest.id} is a {manifest.task} package, not a codec")
        return cls(model, manifest, read_decoder(decoder), torch.device(device))

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

    def compress(self, images: Sequence[np.ndarray], effort: int = 0) -> list[bytes]:
        """uint8 (C, H, W) images of the codec's geometry (:func:`~latentwire.shared.images.
        model_input`) -> one IR each. The same image gives the same bytes whatever it is
        sent with (the model runs on fixed-size chunks; an any-size codec on one image).

        ``effort`` above 0 spends encoder time for fewer bits at the same quality, with the
        same decoder and format: the latent is refined for rate + lambda * distortion
        through the synthesis (``EFFORT_STEPS`` gradient steps, rounding straight through),
        and each image keeps whichever of the refined and the plain latent costs less,
        measured on the real IR and the rounded latent's reconstruction.
        """
        if not 0 <= effort < len(EFFORT_STEPS):
            raise ValueError(f"effort must be 0 to {len(EFFORT_STEPS) - 1}, not {effort}")
        # A deployment's own model is named by its code (one byte), a shipped one by its id.
        package = self.package
        model = package.model if package.code is None else package.code
        digest = package.digest
        if self._one_by_one:
            irs = []
            for image in images:
                x = pad_to_stride(self._to_model(image[None]), self.model.stride)
                latent = self.model.quantized_latent(x)
                if effort:
                    latent = self._refined(x, latent, EFFORT_STEPS[effort], image.shape[0])
                payload = self._code(latent[0])
                size = image.shape[1:] if self.model.any_size else None
                irs.append(IR(model, digest, payload, size=size).to_bytes())
            return irs
        x = self._to_model(np.stack(images))
        latents = self.model.quantized_latents(x)
        if effort:  # in chunks of exactly ENCODE_CHUNK, as the analysis: batch-invariant
            for start in range(0, len(x), ENCODE_CHUNK):
                chunk = x[start : start + ENCODE_CHUNK]
                real = len(chunk)
                padded = torch.cat([chunk, chunk.new_zeros(ENCODE_CHUNK - real, *chunk.shape[1:])])
                found = np.zeros((ENCODE_CHUNK, *latents.shape[1:]), latents.dtype)
                found[:real] = latents[start : start + real]
                refined = self._refined(padded, found, EFFORT_STEPS[effort], images[0].shape[0])
                latents[start : start + real] = refined[:real]
        tables = self.package.tables
        return [IR(model, digest, p).to_bytes() for p in encode_latents(latents, tables)]

    @property
    def _one_by_one(self) -> bool:
        """Whether images are coded one at a time: those of any size, and a hyperprior
        codec's (its tables follow each image's side information)."""
        return self.model.any_size or self.package.hyper is not None

    @property
    def lmbda(self) -> float:
        """The rate-distortion trade-off the codec was trained for (its manifest's)."""
        value = self.manifest.training.get("lmbda")
        if value is None:
            raise ValueError(f"{self.id}'s manifest records no lambda: it cannot refine")
        return float(value)

    def _refined(self, x: torch.Tensor, plain: np.ndarray, steps: int, channels: int) -> np.ndarray:
        """Latents (N, M, h, w) refined for bits + lambda * 255**2 * MSE, starting from the
        analysis' float latent: Adam on the latent, its learning rate falling to zero, the
        rate read off the coder's own integer tables (linearly between integers, so it has
        a slope) and the distortion of the latent rounded (gradients straight through).
        Per image the cheapest of the plain latent and a few points along the way wins, by
        the real cost: the bits of the real payload and the rounded latent's error."""
        weight = self.lmbda * 255**2 / channels  # the training loss, times the pixels
        candidates = [plain]
        with torch.enable_grad():
            y = self.model.analysis(x).detach().requires_grad_(True)
            optimizer = torch.optim.Adam([y], lr=REFINE_LR[self.model.family])
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 - i / steps)
            for step in range(1, steps + 1):
                y_hat = y + (torch.round(y) - y).detach()
                error = (self.model.synthesis(y_hat) - x).pow(2).flatten(1).sum(1) / 4
                optimizer.zero_grad(set_to_none=True)
                (self._table_bits(y) + weight * error).sum().backward()
                optimizer.step()
                schedule.step()
                if step % max(1, steps // REFINE_CANDIDATES) == 0 or step == steps:
                    candidates.append(torch.round(y.detach()).to(torch.int32).cpu().numpy())
        chosen = plain.copy()
        for i in range(len(plain)):
            costs = [self._cost(x[i : i + 1], latents[i], weight) for latents in candidates]
            chosen[i] = candidates[int(np.argmin(costs))][i]
        return chosen

    def _table_bits(self, y: torch.Tensor) -> torch.Tensor:
        """Bits per image of coding ``y`` with the package's tables, linear between the
        integers (exact at them). A hyperprior codec's z follows y through the
        hyper-analysis; the tables of y are those its rounded z picks."""
        hyper = self.package.hyper
        if hyper is None:
            tables = self.package.tables
            n, c = y.shape[:2]
            flat = y.reshape(n, c, -1)
            rows = torch.from_numpy(tables._first_table).to(y.device)[None]  # (1, C, P or 1)
            if tables.contexts > 1:
                rounded = torch.round(flat.detach())
                before = torch.cumsum((rounded != 0).long(), 1) - (rounded != 0).long()
                rows = rows + before.clamp(max=tables.contexts - 1)
            return (
                _interpolated_bits(flat, rows.expand(n, c, flat.shape[2]), tables).flatten(1).sum(1)
            )
        z = self.model.hyper_latent(y + (torch.round(y) - y).detach())
        radius = self.package.tables.radius
        z_int = np.clip(torch.round(z.detach()).to(torch.int32).cpu().numpy(), -radius, radius)
        bits = []
        for i in range(len(y)):
            index, mean = hyper.synthesis(z_int[i], y.shape[-2:])
            values = y[i] - torch.from_numpy(mean).to(y.device)
            y_bits = _level_bits(values, torch.from_numpy(index).to(y.device), hyper.scale_tables)
            z_rows = torch.arange(z.shape[1], device=y.device)[:, None].expand(-1, z[i, 0].numel())
            z_bits = _interpolated_bits(z[i].reshape(z.shape[1], -1), z_rows, self.package.tables)
            bits.append(y_bits.sum() + z_bits.sum())
        return torch.stack(bits)

    @torch.inference_mode()
    def _cost(self, x: torch.Tensor, latent: np.ndarray, weight: float) -> float:
        """Bits of the real payload + weight * squared error of the reconstruction."""
        bits = 8 * len(
            self._code(latent)
            if self._one_by_one
            else encode_latents(latent[None], self.package.tables)[0]
        )
        y = torch.from_numpy(latent[None]).to(x.device, torch.float32)
        error = float((self.model.synthesis(y) - x).pow(2).sum() / 4)
        return bits + weight * error

    def _code(self, latent: np.ndarray) -> bytes:
        """The payload of one integer latent (M, h, w), coded on its own."""
        hyper = self.package.hyper
        if hyper is None:
            return encode_latent(latent, self.package.tables)
        radius = self.package.tables.radius
        # The decoder sees z as coded, clamped to its tables: so must the hyper-synthesis.
        z = np.clip(self.model.side_information(latent), -radius, radius)
        index, mean = hyper.synthesis(z, latent.shape[1:])
        return encode_hyper(
            z, self.package.tables, latent - mean, index, hyper.scale_tables, excess=hyper.excess
        )

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


def _interpolated_bits(
    values: torch.Tensor, rows: torch.Tensor, tables: SymbolTables
) -> torch.Tensor:
    """-log2 p of each value under its table row (``rows`` of ``tables``), linear between
    the integers: at an integer, exactly the bits the coder spends on it."""
    radius = tables.radius
    table = torch.from_numpy(-np.log2(tables.probabilities)).to(values.device, values.dtype)
    v = values.clamp(-radius, radius) + radius
    low = torch.floor(v.detach()).long().clamp(0, 2 * radius)
    high = (low + 1).clamp(max=2 * radius)
    width = table.shape[1]
    flat = rows.reshape(-1) * width
    low_bits = table.reshape(-1)[flat + low.reshape(-1)].reshape(v.shape)
    high_bits = table.reshape(-1)[flat + high.reshape(-1)].reshape(v.shape)
    return low_bits + (v - low) * (high_bits - low_bits)


def _level_bits(
    values: torch.Tensor, index: torch.Tensor, tables: list[SymbolTables]
) -> torch.Tensor:
    """Bits of each value under the scale table its index picks (see _interpolated_bits)."""
    bits = torch.zeros_like(values)
    for level in torch.unique(index).tolist():
        where = index == level
        row = torch.zeros(int(where.sum()), dtype=torch.long, device=values.device)
        bits[where] = _interpolated_bits(values[where], row, tables[level])
    return bits
