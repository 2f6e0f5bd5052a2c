"""The IR wire format: one msgpack array per image. See docs/ir-format.md.

    [version, model, digest, payload]            models of fixed geometry
    [version, model, digest, payload, h, w]      size-agnostic models (true image size)

``model`` is a small integer from :data:`MODEL_CODES` for the shipped models (one byte on
the wire), a negative one, -1 to -32, for a deployment's own models (code 1 to 32 in
their packages; one byte too), or the model id as a string for any other. ``digest`` is
the first 2 bytes of the SHA-256 of the model's decoder package, as an unsigned integer,
so an IR is not decoded by a decoder it was not made for (a check against mix-ups between
versions of a model, at 3 bytes on the wire; version 1 spent 5 on a 32-bit digest). Pure
Python: no torch, no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

VERSION = 2
DIGEST_BITS = 16  # see latentwire.shared.decoder_package.digest_of
MAX_IR_BYTES = 64 << 20  # no image we can decode needs more
MAX_SIDE = 1 << 15  # bound on a declared height or width, checked before any allocation

# The fixed table of shipped models. Codes are never reused or renumbered.
MODEL_CODES: dict[int, str] = {
    1: "fashion-mnist-q1",
    2: "fashion-mnist-q2",
    3: "fashion-mnist-q3",
    4: "fashion-mnist-q4",
    5: "fashion-mnist-q5",
    6: "fashion-mnist-q6",
    11: "mnist-q1",
    12: "mnist-q2",
    13: "mnist-q3",
    14: "mnist-q4",
}
MODEL_IDS: dict[str, int] = {name: code for code, name in MODEL_CODES.items()}


class IRError(ValueError):
    """An IR is malformed, truncated, foreign, from a future version, or for another decoder.

    The only exception :func:`parse` and ``latentwire.client.decode`` raise for bad input.
    """


DEPLOYMENT_CODES = range(1, 33)  # as decoder_package.MAX_DEPLOYMENT_CODE


@dataclass(frozen=True)
class IR:
    model: str | int  # a model id, or a deployment's model code (an int, 1 to 32)
    digest: int
    payload: bytes
    size: tuple[int, int] | None = None  # (height, width) for size-agnostic models

    def to_bytes(self) -> bytes:
        if isinstance(self.model, int):
            if self.model not in DEPLOYMENT_CODES:
                raise IRError(f"model code {self.model} is not 1 to {DEPLOYMENT_CODES[-1]}")
            model: int | str = -self.model
        else:
            model = MODEL_IDS.get(self.model, self.model)
        fields: list = [VERSION, model, self.digest, self.payload]
        if self.size is not None:
            fields += list(self.size)
        return msgpack.packb(fields, use_bin_type=True)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # msgpack's True is a bool


def parse(data: bytes) -> IR:
    """Parse and bounds-check an IR; raises :class:`IRError` for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise IRError(f"an IR is bytes, not {type(data).__name__}")
    if len(data) > MAX_IR_BYTES:
        raise IRError(f"IR of {len(data)} bytes is larger than the {MAX_IR_BYTES}-byte limit")
    try:
        fields = msgpack.unpackb(
            bytes(data),
            raw=False,
            strict_map_key=True,
            max_array_len=8,
            max_map_len=0,
            max_str_len=128,
            max_bin_len=MAX_IR_BYTES,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises several types for truncated or bad data
        raise IRError(f"not a msgpack message ({type(e).__name__}: {e})") from None
    if not isinstance(fields, list) or len(fields) not in (4, 6):
        raise IRError("an IR is a msgpack array of 4 or 6 fields")
    version, model, digest, payload = fields[:4]
    if not _is_int(version):
        raise IRError("IR version is not an integer")
    if version != VERSION:
        raise IRError(
            f"IR format version {version} is not supported (this decoder reads {VERSION})"
        )
    if _is_int(model) and model < 0:
        if -model not in DEPLOYMENT_CODES:
            raise IRError(f"model code {model} is out of the deployments' range (-1 to -32)")
        model = -model
    elif _is_int(model):
        if model not in MODEL_CODES:
            raise IRError(f"unknown model code {model}")
        model = MODEL_CODES[model]
    elif not isinstance(model, str) or not model:
        raise IRError("IR model is neither a known code nor a model id")
    if not _is_int(digest) or not 0 <= digest < 1 << DIGEST_BITS:
        raise IRError(f"IR decoder digest is not a {DIGEST_BITS}-bit unsigned integer")
    if not isinstance(payload, bytes):
        raise IRError("IR payload is not binary")
    size = None
    if len(fields) == 6:
        h, w = fields[4:]
        for side in (h, w):
            if not _is_int(side) or not 1 <= side <= MAX_SIDE:
                raise IRError(f"IR image size {h}x{w} is out of bounds (1..{MAX_SIDE})")
        size = (h, w)
    return IR(model, digest, payload, size)
