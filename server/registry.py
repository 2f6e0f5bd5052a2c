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

from PIL import Image

from latentwire.server.batcher import DynamicBatcher
from latentwire.server.hosted import HOSTED, Hosted, HostedCodec, HostedGenerator, HostedUpscaler
from latentwire.server.settings import Settings
from latentwire.server.workers import ModelWorker, ProcessLanes
from latentwire.shared.codec import CodecChoice
from latentwire.shared.models.codec import ENCODE_CHUNK
from latentwire.shared.models.loading import pick_device
from latentwire.shared.package import ZOO_DIR, PackageError, list_packages, read_manifest

log = logging.getLogger("latentwire.server")

ROUTES = {"codec": "/encode", "upscale": "/upscale", "generate": "/generate"}


class HostingError(LookupError):
    """A request asks for a model or task this server does not serve; ``code`` is stable
    and machine-readable (errors.py gives each its HTTP status)."""

    code = "unknown_model"


class UnknownModel(HostingError):
    code = "unknown_model"


class TaskNotHosted(HostingError):
    code = "task_not_hosted"


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = pick_device(settings.device)
        self.hosted: dict[str, Hosted] = {}
        self._by_task: dict[str, dict[str, Hosted]] = {}
        self._choice = CodecChoice([])
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
                codecs = self._by_task.get("codec", {})
                clash = [
                    m
                    for m, h in codecs.items()
                    if manifest.code is not None and h.manifest.code == manifest.code
                ]
                if clash:  # its IRs would name two models: a deployment's mistake to fix
                    raise PackageError(
                        f"{folder}: model code {manifest.code} is {clash[0]}'s already; "
                        "export one of them with another --code"
                    )
                hosted = HOSTED[manifest.task].load(folder, self.device, self.settings)
                self.hosted[manifest.id] = hosted
                self._by_task.setdefault(hosted.task, {})[manifest.id] = hosted
                log.info("loaded %s on %s", manifest.id, self.device)
        s = self.settings
        self._choice = CodecChoice(
            [c.codec.level for c in self.of_task("codec").values()],
            s.default_model,
            s.default_quality,
            s.small_codec,
            s.photo_codec,
            s.gray_photo_codec,
        )

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
            if isinstance(hosted, HostedCodec):
                refining = ModelWorker(f"{model_id}-effort", self.device, threads, nice)
                self._workers.append(refining)
                hosted.refiner = DynamicBatcher(
                    hosted.refine,
                    refining,
                    max_batch=ENCODE_CHUNK if s.batching else 1,
                    max_wait_ms=s.max_wait_ms if s.batching else 0,
                    capacity=s.effort_queue_capacity,
                    on_batch=lambda n, sec, model=f"{model_id}+effort": on_batch(model, n, sec),
                )
                hosted.refiner.start()

    async def stop(self) -> None:
        for hosted in self.hosted.values():
            await hosted.batcher.stop()
            if isinstance(hosted, HostedCodec):
                await hosted.refiner.stop()
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
        """The hosted codec for an image (:class:`~latentwire.shared.codec.CodecChoice`
        decides): a named codec is checked now, before any upload is read."""
        if "codec" not in self.settings.hosted_tasks:
            self._hosted("codec", "")  # raises TaskNotHosted
        choose, codecs = self._choice.chooser(model, quality), self.of_task("codec")
        return lambda image: codecs[choose(image)]
