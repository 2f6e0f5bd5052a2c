"""The models a server hosts: the packages of its tasks, loaded at start-up, each with a
worker thread and a batcher of its own; and which codec encodes an image.

A replica hosts the task families in ``settings.tasks`` (codec, upscale, generate) and
loads nothing else, so encode replicas and upscale replicas scale on their own. A request
for a task the replica does not host is a :class:`TaskNotHosted`, not a missing model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from latentwire.server.batcher import DynamicBatcher
from latentwire.server.hosted import HOSTED, Hosted, HostedCodec, HostedGenerator, HostedUpscaler
from latentwire.server.settings import Settings
from latentwire.server.workers import ModelWorker, ProcessLanes
from latentwire.shared.package import ZOO_DIR, list_packages, read_manifest

log = logging.getLogger("latentwire.server")

AUTO = "auto"  # the model name that picks a codec by the image
ROUTES = {"codec": "/encode", "upscale": "/upscale", "generate": "/generate"}


class HostingError(Exception):
    """A request asks for a model, task or level this server does not serve; ``code`` is
    stable and machine-readable (errors.py gives each its HTTP status)."""

    code = "unknown_model"


class UnknownModel(HostingError):
    code = "unknown_model"


class TaskNotHosted(HostingError):
    code = "task_not_hosted"


class UnknownQuality(HostingError):
    code = "unknown_quality"


class QualityMismatch(HostingError):
    code = "quality_mismatch"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = pick_device(settings.device)
        self.hosted: dict[str, Hosted] = {}
        self._by_task: dict[str, dict[str, Hosted]] = {}
        self._resolved: dict[tuple[str, int | None], HostedCodec] = {}  # (name, quality)
        self._workers: list[ModelWorker] = []

    def load(self) -> None:
        """Load every package of a hosted task: the shipped ones first, then ``model_dir``."""
        tasks = self.settings.hosted_tasks
        roots = [ZOO_DIR] + ([Path(self.settings.model_dir)] if self.settings.model_dir else [])
        for root in roots:
            for folder in list_packages(root):
                manifest = read_manifest(folder)
                if manifest.task not in tasks:
                    continue
                if manifest.id in self.hosted:
                    log.warning("%s: model %s is already loaded; skipped", folder, manifest.id)
                    continue
                hosted = HOSTED[manifest.task].load(folder, self.device, self.settings)
                self.hosted[manifest.id] = hosted
                self._by_task.setdefault(hosted.task, {})[manifest.id] = hosted
                log.info("loaded %s on %s", manifest.id, self.device)

    @property
    def stand_back(self) -> int:
        """The nice value of everything but the upscaler's lanes: ``upscale_priority`` when
        lanes share this CPU, else 0."""
        lanes = self.device.type == "cpu" and bool(self.of_task("upscale"))
        return self.settings.upscale_priority if lanes else 0

    async def start(self, on_batch: Callable[[str, int, float], None]) -> None:
        """A worker and a batcher for every hosted model, each warmed up on its worker."""
        s = self.settings
        loop = asyncio.get_running_loop()
        for model_id, hosted in self.hosted.items():
            threads, nice = s.threads_for(hosted.task), self.stand_back
            if isinstance(hosted, HostedUpscaler) and self.device.type == "cpu":
                # Its thread budget as processes of one thread (see ProcessLanes); the
                # worker thread only hands them the windows (and starts new ones, which
                # inherit its priority).
                hosted.lanes = ProcessLanes(hosted.folder, threads)
                threads, nice = 1, 0
            worker = ModelWorker(model_id, self.device, threads, nice)
            self._workers.append(worker)
            max_batch, capacity = hosted.limits(s)
            # Batching off: one item at a time (for an upscaler, one step of one request).
            hosted.batcher = DynamicBatcher(
                hosted.handle,
                worker,
                max_batch=max_batch if s.batching else 1,
                max_wait_ms=s.max_wait_ms if s.batching else 0,
                capacity=capacity,
                on_batch=lambda n, sec, model=model_id: on_batch(model, n, sec),
                size=hosted.size,
            )
            await loop.run_in_executor(worker, hosted.warm_up)
            hosted.batcher.start()

    async def stop(self) -> None:
        for hosted in self.hosted.values():
            await hosted.batcher.stop()
        for worker in self._workers:
            worker.shutdown(wait=True)
        for hosted in self.hosted.values():
            if isinstance(hosted, HostedUpscaler) and hosted.lanes:
                hosted.lanes.shutdown()

    def of_task(self, task: str) -> dict[str, Hosted]:
        return self._by_task.get(task, {})

    def _hosted(self, task: str, model_id: str) -> Hosted:
        if task not in self.settings.hosted_tasks:
            raise TaskNotHosted(
                f"this server hosts {', '.join(self.settings.hosted_tasks)}, not {task}; "
                f"{ROUTES[task]} is served by replicas that host {task}"
            )
        hosted = self.hosted.get(model_id)
        if hosted is None or hosted.task != task:
            have = sorted(self.of_task(task)) or "none"
            raise UnknownModel(f"no {task} model {model_id!r} here; have {have}")
        return hosted

    def upscaler(self, model_id: str | None) -> HostedUpscaler:
        return self._hosted("upscale", model_id or self.settings.default_upscaler)

    def generator(self, model_id: str | None) -> HostedGenerator:
        return self._hosted("generate", model_id or self.settings.default_generator)

    def codec(self, model_id: str) -> HostedCodec:
        """A codec by its full id (``GET /models/{id}/decoder``)."""
        return self._hosted("codec", model_id)

    def codec_chooser(
        self, model: str | None, quality: int | None
    ) -> Callable[[Image.Image], HostedCodec]:
        """Which codec encodes an image, decided here only: ``model`` is a full id, a codec
        name (its ``quality``, or the default one) or ``auto`` (the default): an image the
        small codec takes exactly (its size, grayscale) goes to it, any other to the photo
        codec when one is loaded. A named codec is checked now, before any upload is read;
        ``auto`` picks once the image is decoded."""
        if "codec" not in self.settings.hosted_tasks:
            self._hosted("codec", "")  # raises TaskNotHosted
        name = model or self.settings.default_model
        if name != AUTO:
            codec = self._resolve(name, quality)
            return lambda image: codec
        small, photo = self.settings.small_codec, self.settings.photo_codec
        codecs: list[HostedCodec] = list(self.of_task("codec").values())
        has_photo = any(c.name == photo for c in codecs)

        def choose(image: Image.Image) -> HostedCodec:
            fits = any(
                c.name == small
                and c.shape[1:] == (image.height, image.width)
                and (c.shape[0] == 1) == (image.mode in ("L", "LA"))
                for c in codecs
            )
            # Without a photo codec, the small one's 422 says what it takes.
            return self._resolve(small if fits or not has_photo else photo, quality)

        return choose

    def _resolve(self, model: str, quality: int | None) -> HostedCodec:
        """A codec by name and quality (``fashion-mnist``, 3) or by full id."""
        found = self._resolved.get((model, quality))  # every request asks: remember answers
        if found is None:
            found = self._resolved[model, quality] = self._look_up(model, quality)
        return found

    def _look_up(self, model: str, quality: int | None) -> HostedCodec:
        codecs: dict[str, HostedCodec] = self.of_task("codec")
        if model in codecs:
            codec = codecs[model]
            if quality is not None and codec.manifest.quality != quality:
                raise QualityMismatch(f"{model} is quality {codec.manifest.quality}")
            return codec
        levels = {c.manifest.quality: c for c in codecs.values() if c.name == model}
        if not levels:
            raise UnknownModel(f"no codec named {model!r} here; see GET /models")
        if quality is None:
            default = self.settings.default_quality
            quality = default if default in levels else sorted(levels)[len(levels) // 2]
        if quality not in levels:
            raise UnknownQuality(f"{model} has quality levels {sorted(levels)}, not {quality}")
        return levels[quality]
