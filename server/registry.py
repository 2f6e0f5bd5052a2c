"""The models a server hosts: every codec package found at start-up, loaded and warmed up."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from latentwire.server.batcher import DynamicBatcher
from latentwire.server.errors import ApiError
from latentwire.server.settings import Settings
from latentwire.shared.decoder_package import DECODER_NAME, DecoderPackage
from latentwire.shared.generation import generate, to_uint8
from latentwire.shared.models.codec import FactorizedCodec, encode_any_size, encode_images
from latentwire.shared.models.loading import load_model
from latentwire.shared.models.sr import SRResNet
from latentwire.shared.package import ZOO_DIR, Manifest, list_packages, read_manifest
from latentwire.shared.upscaling import run_windows, serving_dtype

log = logging.getLogger("latentwire.server")

AUTO = "auto"  # the model name that picks a codec by the image


@contextmanager
def one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run torch on one CPU thread inside: a small codec's convolutions (28x28 images) gain
    little from a second core under load, and their threads' spinning takes it from the
    event loop (on 2 cores, /encode at concurrency 32: ~600 -> ~750 requests/s)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class HostedCodec:
    manifest: Manifest
    model: FactorizedCodec
    decoder_bytes: bytes
    decoder: DecoderPackage
    device: torch.device
    batcher: DynamicBatcher = field(init=False)

    @cached_property  # read for every request that leaves the choice to ``auto``
    def name(self) -> str:
        """The codec's name without its quality level: ``fashion-mnist-q3`` -> ``fashion-mnist``."""
        base, _, level = self.manifest.id.rpartition("-q")
        return base if base and level.isdigit() else self.manifest.id

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.decoder.image_shape

    def encode_batch(self, images: list[np.ndarray]) -> list[bytes]:
        """uint8 (C, H, W) images -> IRs; runs in the batcher's worker thread. An any-size
        codec codes each image on its own (they differ in size)."""
        if self.model.any_size:
            return [
                encode_any_size(self.model, self.decoder, self._to_model(image[None])[0])
                for image in images
            ]
        with one_thread_on_cpu(self.device):
            return encode_images(self.model, self.decoder, self._to_model(np.stack(images)))

    def _to_model(self, pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(pixels).to(self.device, torch.float32)
        return x.div_(127.5).sub_(1.0)

    def describe(self) -> dict[str, Any]:
        c, h, w = self.shape
        m = self.manifest
        return {
            "id": m.id,
            "task": m.task,
            "name": self.name,
            "family": m.family,
            "dataset": m.dataset,
            "quality": m.quality,
            "input": {"channels": c, "height": h or None, "width": w or None},  # None: any
            "digest": f"{self.decoder.digest:04x}",
            "metrics": m.metrics,
            "parameters": m.parameters,
        }


@dataclass
class HostedUpscaler:
    """A super-resolution generator; its batcher's items are one request's tile windows."""

    manifest: Manifest
    model: SRResNet
    device: torch.device
    batcher: DynamicBatcher = field(init=False)

    @property
    def scale(self) -> int:
        return self.model.config.scale

    def upscale_batch(self, requests: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """Every window of every request through the model in one go; runs in the worker."""
        flat = run_windows(self.model, [w for windows in requests for w in windows])
        out, start = [], 0
        for windows in requests:
            out.append(flat[start : start + len(windows)])
            start += len(windows)
        return out

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "id": m.id,
            "task": m.task,
            "family": m.family,
            "dataset": m.dataset,
            "scale": self.scale,
            "input": {"channels": self.model.config.channels, "height": None, "width": None},
            "metrics": m.metrics,
            "parameters": m.parameters,
        }


@dataclass
class HostedGenerator:
    """A GAN or DCGAN generator; its batcher's items are (n, seed) requests."""

    manifest: Manifest
    model: torch.nn.Module
    device: torch.device
    batcher: DynamicBatcher = field(init=False)

    def generate_batch(self, requests: list[tuple[int, int]]) -> list[np.ndarray]:
        """uint8 (N, H, W, C) images per request; each request runs on its own, so its
        images depend on its seed alone, not on what it was batched with."""
        return [to_uint8(generate(self.model, n, seed)) for n, seed in requests]

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        shape = self.model.config.shape
        return {
            "id": m.id,
            "task": m.task,
            "family": m.family,
            "dataset": m.dataset,
            "output": {"channels": shape.channels, "height": shape.height, "width": shape.width},
            "classes": self.model.config.classes,
            "metrics": m.metrics,
            "parameters": m.parameters,
        }


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = pick_device(settings.device)
        self.codecs: dict[str, HostedCodec] = {}
        self.upscalers: dict[str, HostedUpscaler] = {}
        self.generators: dict[str, HostedGenerator] = {}

    def load(self) -> None:
        """Load every codec, upscaler and generator package (shipped first, then
        ``model_dir``) and warm each up."""
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        roots = [ZOO_DIR] + ([Path(self.settings.model_dir)] if self.settings.model_dir else [])
        for root in roots:
            for folder in list_packages(root):
                manifest = read_manifest(folder)
                if manifest.task not in ("codec", "upscale", "generate"):
                    continue
                if manifest.id in self.hosted:
                    log.warning("%s: model %s is already loaded; skipped", folder, manifest.id)
                    continue
                model, manifest = load_model(folder, self.device)
                if manifest.task == "upscale":
                    model.to(serving_dtype(self.device, self.settings.upscale_precision))
                    upscaler = HostedUpscaler(manifest, model, self.device)
                    blank = np.zeros((8, 8, model.config.channels), dtype=np.uint8)
                    upscaler.upscale_batch([[blank]])  # warm-up
                    self.upscalers[manifest.id] = upscaler
                elif manifest.task == "generate":
                    generator = HostedGenerator(manifest, model, self.device)
                    generator.generate_batch([(1, 0)])  # warm-up
                    self.generators[manifest.id] = generator
                else:
                    data = (folder / DECODER_NAME).read_bytes()
                    codec = HostedCodec(
                        manifest, model, data, DecoderPackage.from_bytes(data), self.device
                    )
                    warm = tuple(side or 64 for side in codec.shape)  # 0: any size
                    codec.encode_batch([np.zeros(warm, dtype=np.uint8)])
                    self.codecs[manifest.id] = codec
                log.info("loaded %s on %s", manifest.id, self.device)

    def start(self, executor: Executor, on_batch) -> None:
        s = self.settings

        def attach(hosted, handler, max_batch: int, capacity: int, size=None) -> None:
            # Batching off: one item at a time (for an upscaler, all of one request's tiles).
            hosted.batcher = DynamicBatcher(
                handler,
                executor,
                max_batch=max_batch if s.batching else 1,
                max_wait_ms=s.max_wait_ms if s.batching else 0,
                capacity=capacity,
                on_batch=lambda n, sec, model=hosted.manifest.id: on_batch(model, n, sec),
                size=size,
            )
            hosted.batcher.start()

        for codec in self.codecs.values():
            attach(codec, codec.encode_batch, s.max_batch, s.queue_capacity)
        for upscaler in self.upscalers.values():
            # Items are requests, sized by their tiles: batches fill with many requests' tiles.
            attach(
                upscaler, upscaler.upscale_batch, s.upscale_max_tiles, s.upscale_queue_capacity, len
            )
        for generator in self.generators.values():
            attach(
                generator,
                generator.generate_batch,
                s.max_generate_images,
                s.generate_queue_capacity,
                lambda request: request[0],  # (n, seed): sized by its images
            )

    async def stop(self) -> None:
        for hosted in self.hosted.values():
            await hosted.batcher.stop()

    @property
    def hosted(self) -> dict[str, HostedCodec | HostedUpscaler | HostedGenerator]:
        return {**self.codecs, **self.upscalers, **self.generators}

    def upscaler(self, model_id: str | None) -> HostedUpscaler:
        model_id = model_id or self.settings.default_upscaler
        try:
            return self.upscalers[model_id]
        except KeyError:
            raise ApiError(
                404,
                "unknown_model",
                f"no upscaler {model_id!r}; have {sorted(self.upscalers) or 'none'}",
            ) from None

    def generator(self, model_id: str | None) -> HostedGenerator:
        model_id = model_id or self.settings.default_generator
        try:
            return self.generators[model_id]
        except KeyError:
            raise ApiError(
                404,
                "unknown_model",
                f"no generator {model_id!r}; have {sorted(self.generators) or 'none'}",
            ) from None

    def get(self, model_id: str) -> HostedCodec:
        try:
            return self.codecs[model_id]
        except KeyError:
            raise ApiError(
                404, "unknown_model", f"no model {model_id!r} here; see GET /models"
            ) from None

    def auto_codec_name(self, image: Image.Image) -> str:
        """``model=auto``: an image the small codec takes exactly (its size, grayscale) goes
        to it; any other to the photo codec, when one is loaded."""
        small = self.settings.small_codec
        fits = [
            c
            for c in self.codecs.values()
            if c.name == small
            and c.shape[1:] == (image.height, image.width)
            and (c.shape[0] == 1) == (image.mode in ("L", "LA"))
        ]
        photo = self.settings.photo_codec
        if fits or not any(c.name == photo for c in self.codecs.values()):
            return small  # without a photo codec, the small one's 422 says what it takes
        return photo

    def codec_for(self, image: Image.Image, model: str | None, quality: int | None) -> HostedCodec:
        """The codec that encodes ``image``: ``model`` (default: the setting), where
        ``auto`` picks by the image (:meth:`auto_codec_name`)."""
        name = model or self.settings.default_model
        return self.resolve(self.auto_codec_name(image) if name == AUTO else name, quality)

    def resolve(self, model: str, quality: int | None) -> HostedCodec:
        """A codec by name and quality (``fashion-mnist``, 3) or by full id."""
        if model in self.codecs:
            codec = self.codecs[model]
            if quality is not None and codec.manifest.quality != quality:
                raise ApiError(
                    422, "quality_mismatch", f"{model} is quality {codec.manifest.quality}"
                )
            return codec
        levels = {c.manifest.quality: c for c in self.codecs.values() if c.name == model}
        if not levels:
            raise ApiError(404, "unknown_model", f"no codec named {model!r}; see GET /models")
        if quality is None:
            default = self.settings.default_quality
            quality = default if default in levels else sorted(levels)[len(levels) // 2]
        if quality not in levels:
            raise ApiError(
                422,
                "unknown_quality",
                f"{model} has quality levels {sorted(levels)}, not {quality}",
            )
        return levels[quality]
