"""The decoder package: everything the client needs to decode one model's IRs, in one file.

The package holds the synthesis transform as ONNX, the integer symbol tables, and the
geometry. Its SHA-256 (first 2 bytes) is the digest every IR of the model carries. It is
msgpack, never pickle, because it may be downloaded from a server.

A model folder keeps it gzip-compressed, as ``decoder.msgpack.gz`` (:func:`read_decoder`,
:func:`write_decoder`): the tables of the 28x28 codecs shrink about twentyfold, which is
what lets the base install carry every shipped level. The digest is always of the package
itself, decompressed, and the server sends it so. A plain ``decoder.msgpack`` (a package
written before, or one downloaded) is read too.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

from latentwire.shared import hyper
from latentwire.shared.coding import SymbolTables
from latentwire.shared.package import write_atomically

MAX_PIXELS = 4096 * 4096  # the largest image a client decodes
MAX_DEPLOYMENT_CODE = 32  # a deployment's own model codes: 1..32, one byte on the wire

DECODER_NAME = "decoder.msgpack.gz"  # in a model folder: the package, gzip-compressed
PLAIN_DECODER_NAME = "decoder.msgpack"  # read too: packages written before, or downloaded
# 1: one table per latent channel, frequencies as uint32. 2: tables per channel, position and
# context (see SymbolTables), frequencies as uint16 (a row sums to 2**16 over 3 or more
# entries, each at least 1, so none reaches 2**16). Packages with one table per channel
# are still written as format 1, so their bytes and digests stay what they were.
# 3: hyperprior codecs: per-channel tables for z (uint16), the fixed scale tables of y
# (uint16, one radius each) and the integer hyper-synthesis (see latentwire.shared.hyper).
FORMATS = (1, 2, 3)
MAX_CONTEXTS = 64
MAX_PACKAGE_BYTES = 256 << 20


class DecoderPackageError(ValueError):
    """A decoder package is malformed or not the one an IR asks for."""


def decoder_path(folder: str | os.PathLike) -> Path | None:
    """The decoder package file of a model folder, or None for a folder without one."""
    for name in (DECODER_NAME, PLAIN_DECODER_NAME):
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def read_decoder(path: str | os.PathLike) -> bytes:
    """The package bytes of a decoder file (:func:`decoder_path`): a ``.gz`` file is one
    gzip member, inflated to at most ``MAX_PACKAGE_BYTES``, whatever it claims; any other
    file is the package itself."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the gzip wrapper
        out = inflate.decompress(data, MAX_PACKAGE_BYTES + 1)
    except zlib.error as e:
        raise DecoderPackageError(f"{path}: corrupt gzip ({e})") from None
    if len(out) > MAX_PACKAGE_BYTES:
        raise DecoderPackageError(f"{path}: decoder package is too large")
    if not inflate.eof:
        raise DecoderPackageError(f"{path}: the gzip stream is cut short")
    if inflate.unused_data:
        raise DecoderPackageError(f"{path}: bytes after the gzip stream")
    return out


def gzip_package(package: bytes) -> bytes:
    """A package as one gzip member, as a model folder keeps it and the server sends it to
    clients that accept gzip. The header is fixed (no time, no name; GzipFile writes OS
    "unknown", where gzip.compress takes zlib's OS byte), so a given zlib makes the same
    bytes anywhere."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as f:
        f.write(package)
    return buffer.getvalue()


def write_decoder(folder: str | os.PathLike, package: bytes) -> Path:
    """Keep a package in a model folder, gzip-compressed (:func:`gzip_package`)."""
    path = Path(folder) / DECODER_NAME
    write_atomically(path, gzip_package(package))
    stale = Path(folder) / PLAIN_DECODER_NAME
    if stale.is_file():  # the folder's package is the one just written, never an older one
        stale.unlink()
    return path


def digest_of(data: bytes) -> int:
    """The package's digest: the first 2 bytes of its SHA-256 (what IRs carry, see wire)."""
    return int.from_bytes(hashlib.sha256(data).digest()[:2], "big")


@dataclass(frozen=True, eq=False)
class DecoderPackage:
    model: str
    image_shape: tuple[int, int, int]  # (channels, height, width); height/width 0 = any size
    latent_shape: tuple[int, int, int]  # (channels, height, width); 0 = from the image size
    stride: int  # image side / latent side, for size-agnostic models
    tables: SymbolTables  # of the latent; of the hyper-latent z for a hyperprior codec
    onnx: bytes
    digest: int = 0  # of the serialized package; set by from_bytes (see digest_of)
    hyper: HyperTables | None = None  # a hyperprior codec's: y's tables, the hyper-synthesis
    code: int | None = None  # a deployment's own model code, what its IRs carry (see wire)

    def __post_init__(self) -> None:
        # What decoding divides by and allocates from: checked once, here.
        if self.image_shape[0] not in (1, 3) or self.latent_shape[0] < 1:
            raise ValueError(f"images of {self.image_shape[0]} channels are not decoded here")
        if not 1 <= self.stride <= 64:
            raise ValueError(f"stride {self.stride} out of bounds")
        if self.code is not None and not 1 <= self.code <= MAX_DEPLOYMENT_CODE:
            raise ValueError(f"model code {self.code} is not 1 to {MAX_DEPLOYMENT_CODE}")

    def to_bytes(self) -> bytes:
        tables = self.tables
        if self.hyper is not None:
            return self._hyper_bytes()
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
        return msgpack.packb(self._with_code(fields), use_bin_type=True)

    def _with_code(self, fields: dict) -> dict:
        """A package with a deployment code carries it (packages without one are as before)."""
        return fields if self.code is None else {**fields, "code": self.code}

    def _hyper_bytes(self) -> bytes:
        h = self.hyper
        fields = {
            "format": 3,
            "model": self.model,
            "image_shape": list(self.image_shape),
            "latent_shape": list(self.latent_shape),
            "stride": self.stride,
            "radius": self.tables.radius,
            "frequencies": self.tables.frequencies.astype("<u2").tobytes(),
            "scale_radii": [t.radius for t in h.scale_tables],
            "scale_frequencies": b"".join(
                t.frequencies.astype("<u2").tobytes() for t in h.scale_tables
            ),
            "excess_radius": h.excess.radius,
            "excess_frequencies": h.excess.frequencies.astype("<u2").tobytes(),
            "hyper": {
                "mean": h.synthesis.mean,
                "constants": hyper_constants(),
                "layers": [
                    {
                        "kind": layer.kind,
                        "shape": list(layer.weight.shape),
                        "weight": layer.weight.astype("<i2").tobytes(),
                        "bias": layer.bias.astype("<i8").tobytes(),
                    }
                    for layer in h.synthesis.layers
                ],
            },
            "onnx": self.onnx,
        }
        return msgpack.packb(self._with_code(fields), use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> DecoderPackage:
        if len(data) > MAX_PACKAGE_BYTES:
            raise DecoderPackageError("decoder package is too large")
        try:
            d = msgpack.unpackb(data, raw=False, max_str_len=1024, max_array_len=256)
            if d.get("format") not in FORMATS:
                raise DecoderPackageError(
                    f"decoder package format {d.get('format')!r} is not supported (this "
                    f"client reads formats {', '.join(map(str, FORMATS))}; a newer latentwire "
                    "may read it)"
                )
            if d.get("format") == 3:
                return cls._from_hyper(d, data)
            shape = tuple(_whole(v) for v in d["image_shape"])
            latent = tuple(_whole(v) for v in d["latent_shape"])
            radius = _whole(d["radius"])
            version = d["format"]
            if version not in FORMATS or len(shape) != 3 or len(latent) != 3:
                raise ValueError("unsupported format or bad shapes")
            if not 0 < radius < 4096:
                raise ValueError(f"radius {radius} out of bounds")
            positions = _whole(d["positions"]) if version == 2 else 1
            contexts = _whole(d["contexts"]) if version == 2 else 1
            if positions not in (1, latent[1] * latent[2]) or not 0 < contexts <= MAX_CONTEXTS:
                raise ValueError(f"{positions} positions, {contexts} contexts do not fit {latent}")
            dtype = "<u4" if version == 1 else "<u2"
            freq = np.frombuffer(d["frequencies"], dtype=dtype).reshape(-1, 2 * radius + 1)
            if len(freq) != latent[0] * positions * contexts:
                raise ValueError(f"{len(freq)} tables for a latent of shape {latent}")
            tables = SymbolTables(radius, freq.astype(np.uint32), positions, contexts)
            model, onnx = str(d["model"]), bytes(d["onnx"])
            stride = _whole(d["stride"])
            return cls(model, shape, latent, stride, tables, onnx, digest_of(data), code=_code(d))
        except DecoderPackageError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError, msgpack.UnpackException) as e:
            raise DecoderPackageError(f"malformed decoder package ({e})") from None

    @classmethod
    def _from_hyper(cls, d: dict, data: bytes) -> DecoderPackage:
        shape = tuple(_whole(v) for v in d["image_shape"])
        latent = tuple(_whole(v) for v in d["latent_shape"])
        if len(shape) != 3 or len(latent) != 3 or bool(shape[1]) != bool(latent[1]):
            raise ValueError("image and latent shapes disagree on being of fixed size")
        if shape[1]:  # one fixed geometry: the latent is the image's, strided
            stride = _whole(d["stride"])
            if not (shape[1] > 0 and shape[2] > 0 and shape[1] * shape[2] <= MAX_PIXELS):
                raise ValueError(f"images of {shape[1]}x{shape[2]} are out of bounds")
            if latent[1:] != (-(-shape[1] // stride), -(-shape[2] // stride)):
                raise ValueError(f"a latent of {latent} does not make {shape} images")
        radius = _whole(d["radius"])
        if not 0 < radius < 4096:
            raise ValueError(f"radius {radius} out of bounds")
        z_freq = np.frombuffer(d["frequencies"], dtype="<u2").reshape(-1, 2 * radius + 1)
        z_tables = SymbolTables(radius, z_freq.astype(np.uint32))
        radii = [_whole(r) for r in d["scale_radii"]]
        if len(radii) != hyper.SCALES or not all(0 < r < 4096 for r in radii):
            raise ValueError("scale tables do not match this decoder's scale levels")
        flat = np.frombuffer(d["scale_frequencies"], dtype="<u2")
        if len(flat) != sum(2 * r + 1 for r in radii):
            raise ValueError("scale tables are cut short")
        scale_tables, start = [], 0
        for r in radii:
            row = flat[start : start + 2 * r + 1].astype(np.uint32)[None]
            scale_tables.append(SymbolTables(r, row))
            start += 2 * r + 1
        excess_radius = _whole(d["excess_radius"])
        if not 0 < excess_radius < 4096:
            raise ValueError(f"excess radius {excess_radius} out of bounds")
        excess = np.frombuffer(d["excess_frequencies"], dtype="<u2")
        if len(excess) != 2 * excess_radius + 1:
            raise ValueError("the excess table is cut short")
        excess_table = SymbolTables(excess_radius, excess.astype(np.uint32)[None])
        h = d["hyper"]
        if h["constants"] != hyper_constants():
            raise ValueError("its integer hyper-synthesis uses other constants than this decoder")
        layers = []
        if not 0 < len(h["layers"]) <= 16:
            raise ValueError(f"a hyper-synthesis of {len(h['layers'])} layers")
        for layer in h["layers"]:
            out, c_in, k, k2 = (_whole(v) for v in layer["shape"])
            if out * c_in * k * k2 > 1 << 24:
                raise ValueError("a hyper-synthesis layer is too large")
            weight = np.frombuffer(layer["weight"], "<i2").astype(np.int64)
            bias = np.frombuffer(layer["bias"], "<i8").astype(np.int64)
            layers.append(
                hyper.IntegerLayer(str(layer["kind"]), weight.reshape(out, c_in, k, k2), bias)
            )
        synthesis = hyper.HyperSynthesis(tuple(layers), latent[0], bool(h["mean"]))
        if layers[0].weight.shape[1] != z_tables.channels:
            raise ValueError("the hyper-synthesis does not take the hyper-latent's channels")
        return cls(
            str(d["model"]),
            shape,
            latent,
            _whole(d["stride"]),
            z_tables,
            bytes(d["onnx"]),
            digest_of(data),
            HyperTables(scale_tables, synthesis, excess_table),
            _code(d),
        )


@dataclass(frozen=True, eq=False)
class HyperTables:
    """What a hyperprior codec's decoder adds: the scale tables of y, the integer
    hyper-synthesis that picks one (and a mean) for every element of y, and the table of
    the excesses of values beyond their table's edge."""

    scale_tables: list[SymbolTables]
    synthesis: hyper.HyperSynthesis
    excess: SymbolTables = field(default_factory=hyper.excess_table)


def _code(d: dict) -> int | None:
    return None if d.get("code") is None else _whole(d["code"])


def _whole(value: object) -> int:
    """An integer field: msgpack's int, never a float, bool or string that int() would take."""
    if type(value) is not int:
        raise ValueError(f"{value!r} is not an integer")
    return value


def hyper_constants() -> dict[str, int]:
    """The integer arithmetic a format-3 package's hyper-synthesis was exported for."""
    return {
        "weight_bits": hyper.WEIGHT_BITS,
        "activation_bits": hyper.ACTIVATION_BITS,
        "activation_max": hyper.ACTIVATION_MAX,
        "scales": hyper.SCALES,
        "mean_max": hyper.MEAN_MAX,
    }
