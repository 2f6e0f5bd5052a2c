"""Entropy coding of integer latents with ANS (constriction) over fixed integer tables.

Pure numpy: the server encodes with it and the client decodes with it, so both sides share
one implementation and one set of tables. Symbols are coded channel by channel, each
channel with its own categorical model over the values [-R, R]; values outside are clamped
by the encoder (the tables hold all but a negligible tail of every channel's density).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import constriction
import numpy as np

FREQUENCY_BITS = 16  # each channel's frequencies sum to 2**16


class CodingError(ValueError):
    """The payload does not decode to the expected symbols."""


@dataclass(frozen=True, eq=False)
class SymbolTables:
    radius: int  # symbols are the integers [-radius, radius]
    frequencies: np.ndarray  # (channels, 2 * radius + 1) uint32, every entry >= 1

    def __post_init__(self) -> None:
        f = self.frequencies
        if f.ndim != 2 or f.shape[1] != 2 * self.radius + 1 or f.shape[0] < 1:
            raise ValueError(
                f"frequency table of shape {f.shape} does not match radius {self.radius}"
            )
        if (f < 1).any() or (f.sum(axis=1) != 1 << FREQUENCY_BITS).any():
            raise ValueError(f"every row must be positive and sum to 2**{FREQUENCY_BITS}")

    @property
    def channels(self) -> int:
        return self.frequencies.shape[0]

    @classmethod
    def from_pmf(cls, pmf: np.ndarray, radius: int, bits: int = FREQUENCY_BITS) -> SymbolTables:
        """Quantize per-channel probabilities to integer frequencies summing to 2**bits."""
        total = 1 << bits
        pmf = np.asarray(pmf, dtype=np.float64)
        pmf = pmf / pmf.sum(axis=1, keepdims=True)
        freq = np.maximum(1, np.floor(pmf * total)).astype(np.int64)
        for row, p in zip(freq, pmf, strict=True):
            # Hand out (or take back) the remainder where it costs the least rate.
            excess = int(row.sum()) - total
            order = np.argsort(-p)
            i = 0
            while excess != 0:
                j = order[i % len(order)]
                if excess > 0 and row[j] > 1:
                    row[j] -= 1
                    excess -= 1
                elif excess < 0:
                    row[j] += 1
                    excess += 1
                i += 1
        return cls(radius, freq.astype(np.uint32))

    @cached_property
    def models(self) -> list:
        """One constriction model per channel, built from the integers alone (exact, portable)."""
        probabilities = self.frequencies.astype(np.float64) / (1 << FREQUENCY_BITS)
        return [constriction.stream.model.Categorical(p, perfect=False) for p in probabilities]

    def bits(self, latent: np.ndarray) -> float:
        """Ideal code length in bits of an integer latent (channels first)."""
        symbols = np.clip(latent, -self.radius, self.radius) + self.radius
        flat = symbols.reshape(self.channels, -1)
        p = np.take_along_axis(self.frequencies, flat, axis=1) / (1 << FREQUENCY_BITS)
        return float(-np.log2(p).sum())


def encode_latent(latent: np.ndarray, tables: SymbolTables) -> bytes:
    """Code an integer latent of shape (channels, ...) into bytes."""
    if latent.shape[0] != tables.channels:
        raise ValueError(f"latent has {latent.shape[0]} channels, tables {tables.channels}")
    symbols = (np.clip(latent, -tables.radius, tables.radius) + tables.radius).astype(np.int32)
    symbols = symbols.reshape(tables.channels, -1)
    coder = constriction.stream.stack.AnsCoder()
    for channel in reversed(range(tables.channels)):  # a stack: the decoder reads forwards
        coder.encode_reverse(symbols[channel], tables.models[channel])
    # Trailing zero bytes of the last little-endian word carry nothing; the decoder restores them.
    return coder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


def decode_latent(payload: bytes, tables: SymbolTables, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_latent`; ``shape`` is the latent's shape (channels first)."""
    if shape[0] != tables.channels:
        raise ValueError(f"latent shape {shape} does not match {tables.channels} channels")
    per_channel = int(np.prod(shape[1:], dtype=np.int64))
    padded = payload + b"\0" * (-len(payload) % 4)
    words = np.frombuffer(padded, dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        rows = [coder.decode(tables.models[c], per_channel) for c in range(tables.channels)]
    except (ValueError, RuntimeError) as e:
        raise CodingError(f"payload is not valid ANS data ({e})") from None
    if not coder.is_empty():
        raise CodingError("payload holds more data than the latent it should code (corrupt?)")
    return (np.stack(rows).astype(np.int32) - tables.radius).reshape(shape)
