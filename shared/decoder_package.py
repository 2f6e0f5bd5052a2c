"""The decoder package: everything the client needs to decode one model's IRs, in one file.

``decoder.msgpack`` holds the synthesis transform as ONNX, the integer symbol tables, and
the geometry. Its SHA-256 (first 2 bytes) is the digest every IR of the model carries.
It is msgpack, never pickle, because it may be downloaded from a server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgpack
import numpy as np

from latentwire.shared.coding import SymbolTables

DECODER_NAME = "decoder.msgpack"
# 1: one table per latent channel, frequencies as uint32. 2: tables per channel, position and
# context (see SymbolTables), frequencies as uint16 (a row sums to 2**16 over 3 or more
# entries, each at least 1, so none reaches 2**16). Packages with one table per channel
# are still written as format 1, so their bytes and digests stay what they were.
FORMATS = (1, 2)
MAX_CONTEXTS = 64
MAX_PACKAGE_BYTES = 256 << 20


class DecoderPackageError(ValueError):
    """A decoder package is malformed or not the one an IR asks for."""


def digest_of(data: bytes) -> int:
    """The package's digest: the first 2 bytes of its SHA-256 (what IRs carry, see wire)."""
    return int.from_bytes(hashlib.sha256(data).digest()[:2], "big")


@dataclass(frozen=True, eq=False)
class DecoderPackage:
    model: str
    image_shape: tuple[int, int, int]  # (channels, height, width); height/width 0 = any size
    latent_shape: tuple[int, int, int]  # (channels, height, width); 0 = from the image size
    stride: int  # image side / latent side, for size-agnostic models
    tables: SymbolTables
    onnx: bytes
    digest: int = 0  # of the serialized package; set by from_bytes (see digest_of)

    def to_bytes(self) -> bytes:
        tables = self.tables
        fields = {
            "format": 1 if tables.one_per_channel else 2,
            "model": self.model,
            "image_shape": list(self.image_shape),
            "latent_shape": list(self.latent_shape),
            "stride": self.stride,
            "radius": tables.radius,
        }
        if tables.one_per_channel:
            fields["frequencies"] = tables.frequencies.astype("<u4").tobytes()
        else:
            fields["positions"] = tables.positions
            fields["contexts"] = tables.contexts
            fields["frequencies"] = tables.frequencies.astype("<u2").tobytes()
        fields["onnx"] = self.onnx
        return msgpack.packb(fields, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> DecoderPackage:
        if len(data) > MAX_PACKAGE_BYTES:
            raise DecoderPackageError("decoder package is too large")
        try:
            d = msgpack.unpackb(data, raw=False, max_str_len=1024, max_array_len=16)
            shape = tuple(int(v) for v in d["image_shape"])
            latent = tuple(int(v) for v in d["latent_shape"])
            radius = int(d["radius"])
            version = d["format"]
            if version not in FORMATS or len(shape) != 3 or len(latent) != 3:
                raise ValueError("unsupported format or bad shapes")
            if not 0 < radius < 4096:
                raise ValueError(f"radius {radius} out of bounds")
            positions = int(d["positions"]) if version == 2 else 1
            contexts = int(d["contexts"]) if version == 2 else 1
            if positions not in (1, latent[1] * latent[2]) or not 0 < contexts <= MAX_CONTEXTS:
                raise ValueError(f"{positions} positions, {contexts} contexts do not fit {latent}")
            dtype = "<u4" if version == 1 else "<u2"
            freq = np.frombuffer(d["frequencies"], dtype=dtype).reshape(-1, 2 * radius + 1)
            if len(freq) != latent[0] * positions * contexts:
                raise ValueError(f"{len(freq)} tables for a latent of shape {latent}")
            tables = SymbolTables(radius, freq.astype(np.uint32), positions, contexts)
            model, onnx = str(d["model"]), bytes(d["onnx"])
            stride = int(d["stride"])
        except (DecoderPackageError, KeyError, TypeError, ValueError, msgpack.UnpackException) as e:
            raise DecoderPackageError(f"malformed decoder package ({e})") from None
        return cls(model, shape, latent, stride, tables, onnx, digest_of(data))
