"""Entropy coding of integer latents with ANS (constriction) over fixed integer tables.

Pure numpy: the server encodes with it and the client decodes with it, so both sides share
one implementation and one set of tables. Symbols are coded channel by channel, each with
a categorical model over the values [-R, R]; values outside are clamped by the encoder (the
tables hold all but a negligible tail of every density).

Which table codes a symbol is fixed by its channel and, for models of one fixed geometry,
by its position and a context: how many earlier channels are nonzero at that position (the
decoder knows them by then). No network is evaluated, so coding is bit-exact anywhere.
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
    """Integer frequency tables and the rule that picks one for each latent symbol.

    The symbol at channel ``c``, position ``p`` (row-major over the latent's h x w) is coded
    with table ``(c * positions + p) * contexts + x``, where ``x`` is the number of channels
    before ``c`` that are nonzero at ``p``, capped at ``contexts - 1``.
    ``positions`` is 1 (one table for all positions of a channel: any-size models) or h * w.
    """

    radius: int  # symbols are the integers [-radius, radius]
    frequencies: np.ndarray  # (tables, 2 * radius + 1) uint32, every entry >= 1
    positions: int = 1
    contexts: int = 1

    def __post_init__(self) -> None:
        f = self.frequencies
        if f.ndim != 2 or f.shape[1] != 2 * self.radius + 1 or f.shape[0] < 1:
            raise ValueError(
                f"frequency table of shape {f.shape} does not match radius {self.radius}"
            )
        per_channel = self.positions * self.contexts
        if self.positions < 1 or self.contexts < 1 or f.shape[0] % per_channel:
            raise ValueError(
                f"{f.shape[0]} tables do not divide into {self.positions} positions x "
                f"{self.contexts} contexts per channel"
            )
        if (f < 1).any() or (f.sum(axis=1) != 1 << FREQUENCY_BITS).any():
            raise ValueError(f"every row must be positive and sum to 2**{FREQUENCY_BITS}")

    @property
    def channels(self) -> int:
        return self.frequencies.shape[0] // (self.positions * self.contexts)

    @property
    def one_per_channel(self) -> bool:
        return self.positions == self.contexts == 1

    @classmethod
    def from_pmf(
        cls,
        pmf: np.ndarray,
        radius: int,
        bits: int = FREQUENCY_BITS,
        positions: int = 1,
        contexts: int = 1,
    ) -> SymbolTables:
        """Quantize each table's probabilities to integer frequencies summing to 2**bits."""
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
        return cls(radius, freq.astype(np.uint32), positions, contexts)

    @cached_property
    def probabilities(self) -> np.ndarray:
        """The tables as constriction takes them, from the integers alone (exact, portable)."""
        return self.frequencies.astype(np.float64) / (1 << FREQUENCY_BITS)

    @cached_property
    def models(self) -> list:
        """One prebuilt constriction model per table (used when one table codes a channel)."""
        return [constriction.stream.model.Categorical(p, perfect=False) for p in self.probabilities]

    def rows(self, channel: int | slice, nonzero_before: np.ndarray) -> np.ndarray:
        """The probability row (the table) of each symbol, given how many earlier channels
        are nonzero at its position: ``nonzero_before`` is (positions,) for channel number
        ``channel``, or (channels, positions) with ``channel`` the slice of all channels."""
        context = np.minimum(nonzero_before, self.contexts - 1)
        # One flat index and one take: several times faster than indexing a 4-d grid.
        return np.take(self.probabilities, self._first_table[channel] + context, axis=0)

    def _all_rows(self, symbols: np.ndarray) -> np.ndarray:
        """The rows of all (..., channels, positions) symbols at once: the encoder knows
        every context up front (the decoder learns them channel by channel)."""
        return self.rows(slice(None), nonzero_before(symbols != self.radius))

    @cached_property
    def _first_table(self) -> np.ndarray:
        """(channels, positions or 1): the table number of context 0 at each position."""
        return np.arange(0, len(self.frequencies), self.contexts).reshape(self.channels, -1)

    def check_latent_shape(self, shape: tuple[int, ...]) -> None:
        if shape[0] != self.channels:
            raise ValueError(f"latent shape {shape} does not match {self.channels} channels")
        if self.positions > 1 and int(np.prod(shape[1:], dtype=np.int64)) != self.positions:
            raise ValueError(f"latent shape {shape} does not match {self.positions} positions")

    def bits(self, latent: np.ndarray) -> float:
        """Ideal code length in bits of an integer latent (channels first)."""
        return float(self.element_bits(latent).sum())

    def element_bits(self, latent: np.ndarray) -> np.ndarray:
        """Ideal code length in bits of each element of an integer latent (its shape)."""
        symbols = _symbols(latent[None], self)[0]
        p = np.take_along_axis(self._all_rows(symbols), symbols[..., None], axis=-1)
        return -np.log2(p[..., 0]).reshape(latent.shape)


def nonzero_before(nonzero: np.ndarray) -> np.ndarray:
    """For a (..., channels, positions) mask, how many earlier channels are nonzero at each
    position: the coding context."""
    counts = np.zeros(nonzero.shape, dtype=np.int64)
    np.cumsum(nonzero[..., :-1, :], axis=-2, out=counts[..., 1:, :])
    return counts


def _symbols(latents: np.ndarray, tables: SymbolTables) -> np.ndarray:
    """(N, channels, positions) symbols in [0, 2R] of N latents (N, channels, ...): each
    latent clamped to [-R, R], plus R."""
    tables.check_latent_shape(latents.shape[1:])
    clamped = np.clip(latents, -tables.radius, tables.radius) + tables.radius
    positions = int(np.prod(latents.shape[2:], dtype=np.int64))
    return clamped.astype(np.int32).reshape(len(latents), tables.channels, positions)


# constriction's categorical family, parameterized per symbol by a row of probabilities; it
# quantizes a row exactly as the prebuilt model of that row does (tested).
_PER_SYMBOL = constriction.stream.model.Categorical(perfect=False)


def encode_latent(latent: np.ndarray, tables: SymbolTables) -> bytes:
    """Code an integer latent of shape (channels, ...) into bytes."""
    return encode_latents(latent[None], tables)[0]


def encode_latents(latents: np.ndarray, tables: SymbolTables) -> list[bytes]:
    """Code N integer latents of one shape (N, channels, ...), each into its own bytes.

    The symbols and their tables are worked out for a group of latents at once, and only
    the coder runs per latent (per-latent numpy calls cost more than the coding itself at
    28x28); groups of :data:`GROUP` keep the table rows, a float per possible symbol value
    of every symbol, to a few MB however big the batch.
    """
    payloads = []
    for start in range(0, len(latents), GROUP):
        payloads += _encode_group(latents[start : start + GROUP], tables)
    return payloads


GROUP = 16  # latents whose table rows are looked up together (see encode_latents)


def _encode_group(latents: np.ndarray, tables: SymbolTables) -> list[bytes]:
    symbols = _symbols(latents, tables)
    if not tables.one_per_channel:
        n, channels, positions = symbols.shape
        rows = tables._all_rows(symbols).reshape(n, channels * positions, 2 * tables.radius + 1)
    payloads = []
    for i, latent_symbols in enumerate(symbols):
        coder = constriction.stream.stack.AnsCoder()
        # A stack: symbols are pushed last first, so the decoder reads channel 0 first.
        if tables.one_per_channel:
            for c in reversed(range(tables.channels)):
                coder.encode_reverse(latent_symbols[c], tables.models[c])
        else:
            coder.encode_reverse(latent_symbols.ravel(), _PER_SYMBOL, rows[i])
        # Trailing zero bytes of the last little-endian word carry nothing; the decoder
        # restores them.
        payloads.append(coder.get_compressed().astype("<u4").tobytes().rstrip(b"\0"))
    return payloads


def decode_latent(payload: bytes, tables: SymbolTables, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_latent`; ``shape`` is the latent's shape (channels first)."""
    tables.check_latent_shape(shape)
    per_channel = int(np.prod(shape[1:], dtype=np.int64))
    padded = payload + b"\0" * (-len(payload) % 4)
    words = np.frombuffer(padded, dtype="<u4").astype(np.uint32)
    before = np.zeros(per_channel, dtype=np.int64)
    rows = []
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        for c in range(tables.channels):
            if tables.one_per_channel:
                row = coder.decode(tables.models[c], per_channel)
            else:
                row = coder.decode(_PER_SYMBOL, tables.rows(c, before))
            before += row != tables.radius
            rows.append(row)
    except (ValueError, RuntimeError) as e:
        raise CodingError(f"payload is not valid ANS data ({e})") from None
    if not coder.is_empty():
        raise CodingError("payload holds more data than the latent it should code (corrupt?)")
    return (np.stack(rows).astype(np.int32) - tables.radius).reshape(shape)


# Hyperprior codecs (latentwire.shared.hyper): one ANS stream holds the hyper-latent z,
# each channel with its own table, then the latent y, each element with the table of its
# scale index. The decoder knows every index before it reads a symbol of y, so the
# symbols of y are coded grouped by index (0, 1, ... L-1; raster order within a group),
# one prebuilt model per group: no table is looked up per symbol. Values on a table's
# edge are followed by their excess (docs/ir-format.md).


def encode_hyper(
    z: np.ndarray,
    z_tables: SymbolTables,
    y: np.ndarray,
    index: np.ndarray,
    scale_tables: list[SymbolTables],
    *,
    excess: SymbolTables,
) -> bytes:
    """Code integer ``z`` (Cz, ...) with one table per channel, then the integer values
    ``y`` (M, ...) (the latent minus its means), each with ``scale_tables[index]``.

    A value at or beyond its table's edge (|v| >= R, the edge holding the tail) is coded
    as the edge and, after all of y, its excess |v| - R with ``excess`` (symbol = excess +
    its radius): a misjudged scale costs bits, never the value (up to R + the excess
    table's radius; beyond, it is clamped)."""
    z_symbols = _symbols(z[None], z_tables)[0]
    coder = constriction.stream.stack.AnsCoder()
    flat_index = index.ravel()
    symbols, at_edge, over = _hyper_symbols(y.ravel(), flat_index, scale_tables, excess)
    # A stack: the last pushed is read first. The decoder reads z, then y by index, then
    # the excesses of the values on an edge, in raster order.
    if len(at_edge):
        coder.encode_reverse(over, excess.models[0])
    for level in reversed(range(len(scale_tables))):
        where = flat_index == level
        if where.any():
            coder.encode_reverse(symbols[where], scale_tables[level].models[0])
    for c in reversed(range(z_tables.channels)):
        coder.encode_reverse(z_symbols[c], z_tables.models[c])
    return coder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


def hyper_element_bits(
    values: np.ndarray, index: np.ndarray, scale_tables: list[SymbolTables], excess: SymbolTables
) -> np.ndarray:
    """Ideal code length in bits of each value of y (the latent minus its means) under its
    scale table, with the excess of a value on the table's edge: what :func:`encode_hyper`
    spends on it."""
    flat_index = index.ravel()
    symbols, at_edge, over = _hyper_symbols(values.ravel(), flat_index, scale_tables, excess)
    bits = np.empty(len(symbols))
    for level, table in enumerate(scale_tables):
        where = flat_index == level
        bits[where] = -np.log2(table.probabilities[0][symbols[where]])
    bits[at_edge] -= np.log2(excess.probabilities[0][over])
    return bits.reshape(values.shape)


def _hyper_symbols(
    flat_y: np.ndarray,
    flat_index: np.ndarray,
    scale_tables: list[SymbolTables],
    excess: SymbolTables,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`encode_hyper` codes for the values of y: (each value's symbol in its
    scale table, the edge value clamped; the positions of the values at or beyond their
    table's edge; the symbols of their excesses)."""
    radius = np.array([t.radius for t in scale_tables])[flat_index]
    symbols = (np.clip(flat_y, -radius, radius) + radius).astype(np.int32)
    at_edge = np.flatnonzero(np.abs(flat_y) >= radius)
    over = np.minimum(np.abs(flat_y[at_edge]) - radius[at_edge], excess.radius) + excess.radius
    return symbols, at_edge, over.astype(np.int32)


def decode_hyper(
    payload: bytes,
    z_tables: SymbolTables,
    z_shape: tuple[int, ...],
    scale_tables: list[SymbolTables],
    parameters,
    *,
    excess: SymbolTables,
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_hyper`: (z, y values). ``parameters(z)`` gives the scale
    index of every element of y (and its shape) from the decoded z: the hyper-synthesis."""
    z_tables.check_latent_shape(z_shape)
    per_channel = int(np.prod(z_shape[1:], dtype=np.int64))
    padded = payload + b"\0" * (-len(payload) % 4)
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(padded, "<u4").astype(np.uint32))
        z_rows = [coder.decode(z_tables.models[c], per_channel) for c in range(z_tables.channels)]
        z = (np.stack(z_rows).astype(np.int32) - z_tables.radius).reshape(z_shape)
        index = parameters(z)
        flat_index, y = index.ravel(), np.empty(index.size, dtype=np.int32)
        for level, table in enumerate(scale_tables):
            where = np.flatnonzero(flat_index == level)
            if len(where):
                y[where] = coder.decode(table.models[0], len(where)).astype(np.int32) - table.radius
        radius = np.array([t.radius for t in scale_tables])[flat_index]
        at_edge = np.flatnonzero(np.abs(y) >= radius)
        if len(at_edge):
            over = coder.decode(excess.models[0], len(at_edge)).astype(np.int32) - excess.radius
            if (over < 0).any():
                raise ValueError("a negative excess")
            y[at_edge] += np.sign(y[at_edge]) * over
    except (ValueError, RuntimeError) as e:
        raise CodingError(f"payload is not valid ANS data ({e})") from None
    if not coder.is_empty():
        raise CodingError("payload holds more data than the latent it should code (corrupt?)")
    return z, y.reshape(index.shape)
