"""An independent decoder for latentwire's entropy-coded payloads, from first principles.

Pure Python, integers only: no constriction, no numpy, no floats. It is the executable
form of the specification a decoder in another language (JavaScript) is written from;
``test_ans_reference.py`` checks it symbol for symbol against ``latentwire.shared.coding``
(which codes with constriction 0.5's ``stack.AnsCoder`` and ``Categorical(perfect=False)``).

The coder is rANS with a 64-bit state, 32-bit words and 24-bit probabilities:

* Tables. A table is a row of ``n >= 2`` integer frequencies ``f[i] >= 1`` summing to
  ``2**16``. The coder codes with its 24-bit cumulative table ``cdf`` (:func:`cumulative`):
  with ``C[i] = f[0] + ... + f[i-1]`` and ``K = 2**24 - n``,
  ``cdf[i] = floor(C[i] * K / 2**16) + i`` for ``i < n`` and ``cdf[n] = 2**24``. Symbol ``i``
  owns the quantiles ``cdf[i] <= q < cdf[i + 1]`` (at least one each).
* Payload. The compressed 32-bit words ``w[0] .. w[m-1]``, little-endian, with trailing zero
  bytes stripped; the decoder appends zero bytes up to a multiple of 4. The last word is
  never zero (``m == 0``: an empty stream).
* Start. The decoder reads words from the END: ``state = w[m-1]`` if ``m == 1``, else
  ``state = w[m-1] * 2**32 + w[m-2]``, and the next word to read is ``w[m-3]``, then
  ``w[m-4]``, ... down to ``w[0]``. ``m == 0``: ``state = 0``.
* One symbol. ``q = state mod 2**24``; the symbol ``s`` is the one with
  ``cdf[s] <= q < cdf[s + 1]``; ``state = (state >> 24) * (cdf[s + 1] - cdf[s]) + q - cdf[s]``;
  then, if ``state < 2**32`` and a word is left, ``state = state * 2**32 + next word``
  (at most one word per symbol). With no word left, nothing is read (decoding goes on).
* End. The stream is fully consumed ("empty") exactly when ``state == 0``.

The encoder (:func:`encode`, for the tests: constriction's is the one latentwire runs)
pushes the symbols in reverse: starting from ``state = 0`` and no words, for a symbol with
``left = cdf[s]`` and ``p = cdf[s + 1] - cdf[s]``: if ``state >> 40 >= p``, append the word
``state mod 2**32`` and set ``state >>= 32``; then
``state = (state // p) * 2**24 + left + state % p``. At the end the state is appended as its
low word then its high word, leaving out high zero words (so a state under ``2**32`` adds
one word and a state of 0 none).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence

PRECISION = 24  # bits of the coder's probabilities
WORD_BITS = 32  # bits of a compressed word
STATE_BITS = 64
FREQUENCY_BITS = 16  # latentwire's tables: each row sums to 2**16
WORD_MASK = (1 << WORD_BITS) - 1
QUANTILE_MASK = (1 << PRECISION) - 1
STATE_LOW = 1 << (STATE_BITS - WORD_BITS)  # a state below this reads the next word


def cumulative(frequencies: Sequence[int]) -> list[int]:
    """constriction's 24-bit cumulative table (n + 1 entries) of one integer frequency row.

    ``Categorical(p, perfect=False)`` takes ``p[i] = f[i] / 2**16`` and computes
    ``floor(sum(p[:i]) * (2**24 - n) / sum(p)) + i`` in float64; for these dyadic inputs
    every step of that is exact, so it is this integer formula.
    """
    n = len(frequencies)
    if n < 2:
        raise ValueError("a table needs at least 2 symbols")
    if any(f < 1 for f in frequencies) or sum(frequencies) != 1 << FREQUENCY_BITS:
        raise ValueError(f"frequencies must be >= 1 and sum to 2**{FREQUENCY_BITS}")
    free = (1 << PRECISION) - n  # each symbol first gets 1, the rest is shared out
    cdf, total = [], 0
    for i, f in enumerate(frequencies):
        cdf.append(((total * free) >> FREQUENCY_BITS) + i)
        total += int(f)
    cdf.append(1 << PRECISION)
    return cdf


def payload_words(payload: bytes) -> list[int]:
    """The 32-bit words of a payload: zero bytes appended to a multiple of 4, little-endian."""
    padded = bytes(payload) + b"\0" * (-len(payload) % 4)
    return [int.from_bytes(padded[i : i + 4], "little") for i in range(0, len(padded), 4)]


class AnsDecoder:
    """Pops symbols off a payload, in the order they were pushed last first."""

    def __init__(self, payload: bytes) -> None:
        self.words = payload_words(payload)
        self.unread = len(self.words)  # words[:unread] are still to be read, from the end
        self.state = 0
        if self.unread:
            first = self._read()
            if first == 0:
                raise ValueError("invalid payload: its last 32-bit word is zero")
            self.state = first
            if self.unread:  # the first word is nonzero: one more makes the state >= 2**32
                self.state = (first << WORD_BITS) | self._read()

    def _read(self) -> int:
        self.unread -= 1
        return self.words[self.unread]

    def decode_cdf(self, cdf: Sequence[int]) -> int:
        """One symbol (0 .. n-1) with a cumulative table from :func:`cumulative`."""
        quantile = self.state & QUANTILE_MASK
        symbol = bisect_right(cdf, quantile) - 1  # cdf[symbol] <= quantile < cdf[symbol + 1]
        left, probability = cdf[symbol], cdf[symbol + 1] - cdf[symbol]
        self.state = (self.state >> PRECISION) * probability + quantile - left
        if self.state < STATE_LOW and self.unread:
            self.state = (self.state << WORD_BITS) | self._read()
        return symbol

    def decode(self, frequencies: Sequence[int]) -> int:
        """One symbol (0 .. n-1) coded with an integer frequency row."""
        return self.decode_cdf(cumulative(frequencies))

    def is_empty(self) -> bool:
        return self.state == 0


def encode(symbols: Sequence[int], rows: Sequence[Sequence[int]]) -> bytes:
    """The payload of ``symbols``, each with its frequency row, as latentwire writes it (the
    decoder gets them back first to last)."""
    words: list[int] = []
    state = 0
    for symbol, row in zip(reversed(symbols), reversed(rows), strict=True):
        cdf = cumulative(row)
        left, probability = cdf[symbol], cdf[symbol + 1] - cdf[symbol]
        if state >> (STATE_BITS - PRECISION) >= probability:
            words.append(state & WORD_MASK)
            state >>= WORD_BITS
        state = ((state // probability) << PRECISION) | (left + state % probability)
    while state:
        words.append(state & WORD_MASK)
        state >>= WORD_BITS
    return b"".join(w.to_bytes(4, "little") for w in words).rstrip(b"\0")


class _Tables:
    """Cumulative tables of integer frequency rows, each computed once when first used."""

    def __init__(self, frequencies: Sequence[Sequence[int]]) -> None:
        self.frequencies = frequencies
        self.cdfs: dict[int, list[int]] = {}

    def __getitem__(self, table: int) -> list[int]:
        cdf = self.cdfs.get(table)
        if cdf is None:
            cdf = self.cdfs[table] = cumulative([int(f) for f in self.frequencies[table]])
        return cdf


def _check_empty(decoder: AnsDecoder) -> None:
    if not decoder.is_empty():
        raise ValueError("payload holds more data than the latent it should code")


def decode_latent(
    payload: bytes,
    frequencies: Sequence[Sequence[int]],
    radius: int,
    shape: Sequence[int],
    positions: int = 1,
    contexts: int = 1,
) -> list[list[int]]:
    """The latent values (-radius .. radius) of a payload, one list per channel in raster
    order, as ``latentwire.shared.coding.decode_latent`` decodes them.

    ``frequencies`` are the tables (``SymbolTables.frequencies``); channel ``c`` is decoded
    whole before channel ``c + 1``; the symbol at channel ``c``, position ``p`` uses table
    ``(c * positions + (p if positions > 1 else 0)) * contexts + x``, ``x`` the number of
    channels before ``c`` whose value at ``p`` is not 0, capped at ``contexts - 1`` (one
    table per channel: ``positions == contexts == 1``, table ``c``).
    """
    channels, per_channel = shape[0], 1
    for side in shape[1:]:
        per_channel *= side
    if len(frequencies) != channels * positions * contexts:
        raise ValueError("the tables do not match the latent's channels")
    if positions > 1 and per_channel != positions:
        raise ValueError("the latent's size does not match the tables' positions")
    tables = _Tables(frequencies)
    decoder = AnsDecoder(payload)
    nonzero_before = [0] * per_channel
    latent = []
    for c in range(channels):
        values = []
        for p in range(per_channel):
            position = p if positions > 1 else 0
            context = min(nonzero_before[p], contexts - 1)
            table = (c * positions + position) * contexts + context
            value = decoder.decode_cdf(tables[table]) - radius
            nonzero_before[p] += value != 0
            values.append(value)
        latent.append(values)
    _check_empty(decoder)
    return latent


def decode_hyper(
    payload: bytes,
    z_frequencies: Sequence[Sequence[int]],
    z_radius: int,
    z_shape: Sequence[int],
    scale_tables: Sequence[tuple[Sequence[int], int]],
    index: Sequence[int] | Callable[[list[list[int]]], Sequence[int]],
    excess_table: tuple[Sequence[int], int],
) -> tuple[list[list[int]], list[int]]:
    """(z, y values) of a hyperprior payload, as ``latentwire.shared.coding.decode_hyper``
    decodes them: ``z`` channel by channel with table ``c`` of ``z_frequencies`` (one per
    channel), then ``y`` grouped by scale index 0 .. L-1, raster order within a group, each
    element with ``scale_tables[level]`` = (frequency row, radius), then for every value on
    its table's edge, in raster order, its excess beyond it with ``excess_table`` =
    (frequency row, radius).

    ``index`` is the flat (raster order) scale index of every element of ``y``, or a function
    that computes it from the decoded ``z`` (the hyper-synthesis). ``y`` comes back flat, in
    the same raster order.
    """
    decoder = AnsDecoder(payload)
    z_tables = _Tables(z_frequencies)
    per_channel = 1
    for side in z_shape[1:]:
        per_channel *= side
    z = [
        [decoder.decode_cdf(z_tables[c]) - z_radius for _ in range(per_channel)]
        for c in range(z_shape[0])
    ]
    levels = index(z) if callable(index) else index
    groups: list[list[int]] = [[] for _ in scale_tables]  # raster positions of each level
    for k, level in enumerate(levels):
        if not 0 <= level < len(scale_tables):
            raise ValueError(f"scale index {level} is outside 0 .. {len(scale_tables) - 1}")
        groups[level].append(k)
    y = [0] * len(levels)
    for (row, radius), where in zip(scale_tables, groups, strict=True):
        if where:
            cdf = cumulative([int(f) for f in row])
            for k in where:
                y[k] = decoder.decode_cdf(cdf) - radius
    # Values on the edge of their table (|y| = R): an excess each, in raster order, its
    # value e = symbol - R_excess >= 0; |y| becomes R + e.
    excess_row, excess_radius = excess_table
    excess_cdf = cumulative([int(f) for f in excess_row])
    for k, level in enumerate(levels):
        if abs(y[k]) == scale_tables[level][1]:
            excess = decoder.decode_cdf(excess_cdf) - excess_radius
            if excess < 0:
                raise ValueError("a negative excess: the payload is corrupt")
            y[k] += excess if y[k] > 0 else -excess
    _check_empty(decoder)
    return z, y
