"""What a server hosts: one class per task, each a batch handler that describes itself.

Every hosted model offers the rest of the server the same small surface: ``handle(items)``
(one batch, run on the model's own worker thread; a list of results of the same length),
``size(item)`` (how much of a batch an item takes), ``limits(settings)`` (the largest
batch and the longest queue), ``warm_up()`` and ``describe()`` (its entry in
``GET /models``). :data:`HOSTED` maps a manifest's task to its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from latentwire.server.batcher import DynamicBatcher
from latentwire.server.settings import Settings
from latentwire.server.workers import ProcessLanes
from latentwire.shared.codec import Codec, codec_name
from latentwire.shared.generation import generate, to_uint8
from latentwire.shared.models.loading import load_model
from latentwire.shared.models.sr import SRResNet
from latentwire.shared.package import Manifest
from latentwire.shared.upscaling import run_windows, serving_dtype


class Hosted(Protocol):
    task: ClassVar[str]
    manifest: Manifest
    batcher: DynamicBatcher

    def handle(self, items: list) -> list: ...

    def size(self, item: Any) -> int: ...

    def limits(self, settings: Settings) -> tuple[int, int]: ...

    def warm_up(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class HostedCodec:
    """A codec; its batcher's items are uint8 (C, H, W) images, its results IRs."""

    task: ClassVar[str] = "codec"
    codec: Codec
    batcher: DynamicBatcher = field(init=False)
    # Effort above 0 (latent refinement: seconds for a photo) queues apart, on a worker of
    # its own, so one-pass encodes never wait behind it.
    refiner: DynamicBatcher = field(init=False)

    @classmethod
    def load(cls, folder: Path, device: torch.device, settings: Settings) -> HostedCodec:
        return cls(Codec.load(folder, device))

    @property
    def manifest(self) -> Manifest:
        return self.codec.manifest

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.codec.shape

    def handle(self, images: list[np.ndarray]) -> list[bytes]:
        return self.codec.compress(images)

    def refine(self, items: list[tuple[np.ndarray, int]]) -> list[bytes]:
        """(image, effort) items -> IRs, each effort's images compressed together."""
        irs: list[bytes] = [b""] * len(items)
        for effort in sorted({e for _, e in items}):
            places = [i for i, (_, e) in enumerate(items) if e == effort]
            coded = self.codec.compress([items[i][0] for i in places], effort)
            for i, ir in zip(places, coded, strict=True):
                irs[i] = ir
        return irs

    def size(self, image: np.ndarray) -> int:
        return 1

    def limits(self, settings: Settings) -> tuple[int, int]:
        return settings.max_batch, settings.queue_capacity

    def warm_up(self) -> None:
        self.handle([np.zeros(tuple(side or 64 for side in self.shape), dtype=np.uint8)])

    def describe(self) -> dict[str, Any]:
        c, h, w = self.shape
        m = self.manifest
        return {
            "id": m.id,
            "task": m.task,
            "name": codec_name(m.id),
            "family": m.family,
            "dataset": m.dataset,
            "quality": m.quality,
            "input": {"channels": c, "height": h or None, "width": w or None},  # None: any
            "digest": f"{self.codec.package.digest:04x}",
            "code": m.code,
            "metrics": m.metrics,
            "parameters": m.parameters,
        }


@dataclass
class HostedUpscaler:
    """A super-resolution generator; its batcher's items are a step of one request's tile
    windows (a list of uint8 (h, w, C) arrays), its results their upscales."""

    task: ClassVar[str] = "upscale"
    manifest: Manifest
    model: SRResNet
    device: torch.device
    folder: Path
    max_tiles: int  # per batch, and per step of one request
    batcher: DynamicBatcher = field(init=False)
    lanes: ProcessLanes | None = None  # on a CPU, where the windows are computed

    @classmethod
    def load(cls, folder: Path, device: torch.device, settings: Settings) -> HostedUpscaler:
        model, manifest = load_model(folder, device)
        model.to(serving_dtype(device, settings.upscale_precision))
        return cls(manifest, model, device, folder, settings.upscale_tiles(device.type == "cuda"))

    @property
    def scale(self) -> int:
        return self.model.config.scale

    def handle(self, steps: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """Every window of every step through the model in one go (in the lanes, if any)."""
        flat = [w for windows in steps for w in windows]
        flat = self.lanes.run(flat) if self.lanes else run_windows(self.model, flat)
        out, start = [], 0
        for windows in steps:
            out.append(flat[start : start + len(windows)])
            start += len(windows)
        return out

    def size(self, windows: list[np.ndarray]) -> int:
        return len(windows)

    def limits(self, settings: Settings) -> tuple[int, int]:
        return self.max_tiles, settings.upscale_queue_capacity

    def warm_up(self) -> None:
        self.handle([[np.zeros((8, 8, self.model.config.channels), dtype=np.uint8)]])

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
    """A GAN or DCGAN generator; its batcher's items are (n, seed) requests, its results
    uint8 (n, H, W, C) images."""

    task: ClassVar[str] = "generate"
    manifest: Manifest
    model: torch.nn.Module
    device: torch.device
    batcher: DynamicBatcher = field(init=False)

    @classmethod
    def load(cls, folder: Path, device: torch.device, settings: Settings) -> HostedGenerator:
        model, manifest = load_model(folder, device)
        return cls(manifest, model, device)

    def handle(self, requests: list[tuple[int, int]]) -> list[np.ndarray]:
        """Each request runs on its own, so its images depend on its seed alone, not on
        what it was batched with."""
        return [to_uint8(generate(self.model, n, seed)) for n, seed in requests]

    def size(self, request: tuple[int, int]) -> int:
        return request[0]

    def limits(self, settings: Settings) -> tuple[int, int]:
        return settings.max_generate_images, settings.generate_queue_capacity

    def warm_up(self) -> None:
        self.handle([(1, 0)])

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


HOSTED: dict[str, type[HostedCodec] | type[HostedUpscaler] | type[HostedGenerator]] = {
    cls.task: cls for cls in (HostedCodec, HostedUpscaler, HostedGenerator)
}
