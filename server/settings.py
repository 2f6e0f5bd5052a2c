"""Every server setting, in one place: environment variables ``LATENTWIRE_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATENTWIRE_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    model_dir: Path | None = Field(
        None, description="folder of extra model packages, loaded beside the shipped ones"
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N")
    default_model: str = Field(
        "auto", description="codec used when none is named; auto picks by the image"
    )
    small_codec: str = Field(
        "fashion-mnist", description="auto: the codec for images of its exact size and mode"
    )
    photo_codec: str = Field("photo", description="auto: the codec for every other image")
    default_quality: int = Field(3, ge=1, description="quality used when none is named")
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
    default_upscaler: str = Field("sr2x", description="upscaler used when none is named")
    max_upscale_pixels: int = Field(
        2048 * 2048, ge=1, description="largest image /upscale takes, read from its header (413)"
    )
    upscale_tile: int = Field(128, ge=16, description="input tile side for /upscale")
    upscale_overlap: int = Field(24, ge=0, description="context around each tile (no seams)")
    upscale_max_tiles: int = Field(32, ge=1, description="tiles per upscale batch")
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
    torch_threads: int = Field(
        0, ge=0, description="CPU threads for the models; 0 = torch's default (one per core)"
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

    @staticmethod
    def split_keys(value: str) -> list[str]:
        return [k.strip() for k in value.split(",") if k.strip()]

    @property
    def keys(self) -> list[str]:
        return self.split_keys(self.api_keys)
