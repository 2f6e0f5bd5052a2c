"""Every server setting, in one place: environment variables ``LATENTWIRE_*``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from latentwire.shared.codec import (
    AUTO,
    DEFAULT_QUALITY,
    GRAY_PHOTO_CODEC,
    PHOTO_CODEC,
    SMALL_CODEC,
)

TASKS = ("codec", "upscale", "generate")  # what a server can host, by route family


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATENTWIRE_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    model_dir: Path | None = Field(
        None, description="folder of extra model packages, loaded beside the shipped ones"
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N")
    tasks: str = Field(
        ",".join(TASKS),
        description="the task families this replica hosts: codec (/encode), upscale, generate",
    )
    default_model: str = Field(
        AUTO, description="codec used when none is named; auto picks by the image"
    )
    small_codec: str = Field(
        SMALL_CODEC, description="auto: the codec for images of its exact size and mode"
    )
    photo_codec: str = Field(PHOTO_CODEC, description="auto: the codec for every other image")
    gray_photo_codec: str = Field(
        GRAY_PHOTO_CODEC, description="auto: the codec for other grayscale images, when hosted"
    )
    default_quality: int = Field(
        DEFAULT_QUALITY, ge=1, description="quality used when none is named"
    )
    max_body_bytes: int = Field(16 << 20, ge=1024, description="largest request body (413)")
    max_pixels: int = Field(
        4096 * 4096, ge=1, description="largest image, read from its header before decoding (413)"
    )
    max_images_per_request: int = Field(256, ge=1, description="images per /encode/batch")
    api_keys: str = Field(
        "", description="comma-separated keys; when set, every route but health needs one"
    )
    batching: bool = Field(True, description="group concurrent requests into model batches")
    max_batch: int = Field(256, ge=1, description="images per model batch")
    max_wait_ms: float = Field(
        2.0, ge=0, description="how long a batch waits to fill up (after one with company)"
    )
    queue_capacity: int = Field(4096, ge=1, description="images waiting per model before 503")
    request_timeout_s: float = Field(30.0, gt=0, description="a request waits at most this (504)")
    max_effort: int = Field(
        3, ge=0, le=3, description="the highest encoder effort /encode accepts (0: one pass only)"
    )
    effort_queue_capacity: int = Field(
        64, ge=1, description="images waiting per codec for effort above 0 before 503"
    )
    default_upscaler: str = Field("sr2x", description="upscaler used when none is named")
    max_upscale_pixels: int = Field(
        2048 * 2048, ge=1, description="largest image /upscale takes, read from its header (413)"
    )
    upscale_tile: int = Field(128, ge=16, description="input tile side for /upscale")
    upscale_overlap: int = Field(24, ge=0, description="context around each tile (no seams)")
    upscale_max_tiles: int = Field(
        0,
        ge=0,
        description="tiles per upscale batch, and per step of a bigger request (run in turn "
        "with others); 0 = 4 on a CPU, 32 on CUDA",
    )
    upscale_precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="upscaler dtype: auto = fp16 on CUDA, fp32 on CPU (the only choice)"
    )
    upscale_queue_capacity: int = Field(
        64, ge=1, description="/upscale requests waiting per model before 503"
    )
    default_generator: str = Field(
        "fashion-mnist-dcgan", description="generator used by /generate when none is named"
    )
    max_generate_images: int = Field(256, ge=1, description="images per /generate request")
    generate_queue_capacity: int = Field(
        64, ge=1, description="/generate requests waiting per model before 503"
    )
    codec_threads: int = Field(1, ge=0, description="CPU threads of each codec's worker")
    upscale_threads: int = Field(
        0,
        ge=0,
        description="CPU cores of each upscaler: on a CPU, lane processes of one thread each; "
        "0 = one per core",
    )
    generate_threads: int = Field(1, ge=0, description="CPU threads of each generator's worker")
    upscale_priority: int = Field(
        2,
        ge=0,
        le=19,
        description="on a CPU with an upscaler, the nice value of everything else the server "
        "runs (HTTP, codecs, generators), so the upscaler's lanes keep their share of the cores",
    )
    access_log: bool = Field(False, description="log every request (costs CPU under load)")
    shutdown_grace_s: int = Field(
        10, ge=0, description="on SIGTERM, how long in-flight requests may take to finish"
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_are_not_placeholders(cls, value: str) -> str:
        for key in cls.split_keys(value):
            if len(key) < 16:
                raise ValueError("API keys must be at least 16 characters")
        return value

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: str) -> str:
        asked = [t.strip() for t in value.split(",") if t.strip()]
        if not asked or set(asked) - set(TASKS):
            raise ValueError(f"tasks must be a comma-separated subset of {', '.join(TASKS)}")
        return ",".join(t for t in TASKS if t in asked)

    @property
    def hosted_tasks(self) -> tuple[str, ...]:
        return tuple(self.tasks.split(","))

    def threads_for(self, task: str) -> int:
        """A worker's CPU thread budget: the task's setting, 0 meaning one per core."""
        threads = {
            "codec": self.codec_threads,
            "upscale": self.upscale_threads,
            "generate": self.generate_threads,
        }[task]
        if threads:
            return threads
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )

    def upscale_tiles(self, cuda: bool) -> int:
        """``upscale_max_tiles`` with 0 resolved for the device: a GPU wants many windows a
        call; on a CPU a window costs the same alone (65 ms for 176x176 on 2 cores), so a
        short step lets other requests take turns at no cost."""
        return self.upscale_max_tiles or (32 if cuda else 4)

    @staticmethod
    def split_keys(value: str) -> list[str]:
        return [k.strip() for k in value.split(",") if k.strip()]

    @property
    def keys(self) -> list[str]:
        return self.split_keys(self.api_keys)


def _default(name: str) -> str:
    value = Settings.model_fields[name].default
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def settings_table() -> str:
    """The settings as a markdown table (docs/server.md holds it; a test keeps it current)."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = _default(name)
        shown = f"`{default}`" if default else "unset" if name == "model_dir" else "empty"
        rows.append(f"| `LATENTWIRE_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows) + "\n"


IMAGE_SETS = ("host", "port", "model_dir")  # the Dockerfile sets these


def env_file_body() -> str:
    """Every setting the image leaves open, commented out at its default (latentwire.env)."""
    lines = []
    for name, field in Settings.model_fields.items():
        if name not in IMAGE_SETS:
            lines += [f"# {field.description}", f"# LATENTWIRE_{name.upper()}={_default(name)}"]
    return "\n".join(lines) + "\n"
