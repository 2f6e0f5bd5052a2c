"""The side information of a hyperprior codec, in integer arithmetic: what every decoder
computes the same way on every machine.

A hyperprior codec (Ballé et al. 2018; with means, Minnen et al. 2018) codes, before the
latent ``y``, a small hyper-latent ``z`` with fixed per-channel tables. From the decoded
integers ``z`` the *hyper-synthesis* computes, for every element of ``y``, the index of
the table it is coded with (a scale, 0 .. L-1) and, for mean-scale codecs, an integer
mean. Here the hyper-synthesis is an integer network (after Ballé, Johnston and Minnen
2019): integer weights and biases, integer activations, and every rescaling a rounding
division by a power of two. Every intermediate value is an integer well under 2**53, so
float64 arithmetic computes it exactly, whatever the order of the sums: numpy here, a
JavaScript decoder, any CPU or GPU give the same indices bit for bit. The encoder runs
this same code on the z it codes, so both ends agree by construction.

The layer rule (``docs/ir-format.md`` has it in full): activations are integers ``a`` that
stand for ``a / 2**A``; a layer computes ``acc = sum(W * a) + b`` with integer ``W`` (for
``W / 2**B``) and ``b`` (for ``b / 2**(A + B)``), then ``a' = floor((acc + 2**(B-1)) /
2**B)``, clipped to [0, ACTIVATION_MAX] between layers. The last layer's outputs, rounded
the same way once more to whole numbers, clipped, are the indices (and means).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentwire.shared.coding import FREQUENCY_BITS, SymbolTables

WEIGHT_BITS = 8  # B: weights in steps of 1/256
ACTIVATION_BITS = 4  # A: activations in steps of 1/16
ACTIVATION_MAX = 1 << 14  # activations are clipped to [0, 1024] (in units of 1/16)
WEIGHT_MAX = (1 << 15) - 1  # int16 in the decoder package
MAX_FAN_IN = 1 << 12  # products summed per output
BIAS_MAX = 1 << 40
SCALES = 64  # L scale levels: tables 0 .. 63
SCALE_MIN, SCALE_MAX = 0.11, 64.0  # their standard deviations, log-spaced
MEAN_MAX = 255  # |integer mean| at most this
KINDS = ("conv", "deconv")


def scale_of(index: np.ndarray | float) -> np.ndarray | float:
    """The standard deviation of scale level ``index`` (0 .. SCALES - 1), log-spaced."""
    step = (np.log(SCALE_MAX) - np.log(SCALE_MIN)) / (SCALES - 1)
    return np.exp(np.log(SCALE_MIN) + np.asarray(index) * step)


@dataclass(frozen=True)
class IntegerLayer:
    """One layer of the integer hyper-synthesis: a 2-d convolution (``conv``: stride 1,
    padding kernel // 2) or transposed convolution (``deconv``: stride 2, padding
    kernel // 2, output padding 1, as torch's ConvTranspose2d), ``weight`` (out, in, k, k)
    and ``bias`` (out,) as integers."""

    kind: str
    weight: np.ndarray  # int64 (out, in, k, k); deconv too, already (out, in) ordered
    bias: np.ndarray  # int64 (out,)

    def __post_init__(self) -> None:
        w, b = self.weight, self.bias
        if self.kind not in KINDS or w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0:
            raise ValueError(f"a {self.kind} layer with weights of shape {w.shape}")
        if b.shape != (w.shape[0],) or np.abs(w).max(initial=0) > WEIGHT_MAX:
            raise ValueError("bias shape or weight range out of bounds")
        # What keeps every sum exact in float64: |input| < 2**16, |weight| < 2**15, at
        # most 2**12 products and |bias| <= 2**40 stay under 2**44.
        if w.shape[1] * w.shape[2] * w.shape[3] > MAX_FAN_IN or np.abs(b).max() > BIAS_MAX:
            raise ValueError("a layer's fan-in or bias is beyond what sums exactly")


def _conv(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Stride-1 'same' convolution of (C, H, W) float64 by (O, C, k, k): exact for integer
    values, as every product and partial sum is an integer below 2**53. One kernel tap at a
    time: memory stays that of the input and output, whatever the image size."""
    k = weight.shape[2]
    p = k // 2
    _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (p, p), (p, p)))
    out = np.zeros((weight.shape[0], h, w))
    for u in range(k):
        for v in range(k):
            # (O, C) x (C, H, W) -> (O, H, W)
            out += np.tensordot(weight[:, :, u, v], padded[:, u : u + h, v : v + w], axes=1)
    return out


def _deconv(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Transposed convolution, stride 2, padding k // 2, output padding 1, as
    ``nn.ConvTranspose2d``: zeros between the inputs, then a 'same' convolution with the
    kernel flipped (``weight`` is stored (out, in, k, k), already flipped; see
    IntegerLayer). For an odd kernel, ConvTranspose2d(k, 2, k // 2, 1) is exactly that
    convolution of the spread input."""
    c, h, w = x.shape
    spread = np.zeros((c, 2 * h, 2 * w))
    spread[:, ::2, ::2] = x
    return _conv(spread, weight)


def _round_shift(acc: np.ndarray, bits: int) -> np.ndarray:
    """floor((acc + 2**(bits-1)) / 2**bits): division by a power of two, rounding half up."""
    return np.floor((acc + (1 << (bits - 1))) / (1 << bits))


@dataclass(frozen=True)
class HyperSynthesis:
    """The integer network from the decoded hyper-latent to the coding parameters of y."""

    layers: tuple[IntegerLayer, ...]
    latent_channels: int  # M: channels of y
    mean: bool  # mean-scale: the last layer also gives M integer means

    def __post_init__(self) -> None:
        outputs = self.layers[-1].weight.shape[0]
        if outputs != self.latent_channels * (2 if self.mean else 1):
            raise ValueError(f"the last layer gives {outputs} outputs for {self.latent_channels}")

    def __call__(self, z: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(scale indices, means), each int32 (M, h, w), of the integer hyper-latent ``z``
        (channels, h', w') for a latent of ``size`` (h, w): the output is cropped to it."""
        a = np.asarray(z, dtype=np.float64) * (1 << ACTIVATION_BITS)
        for i, layer in enumerate(self.layers):
            acc = (_conv if layer.kind == "conv" else _deconv)(a, layer.weight.astype(np.float64))
            a = _round_shift(acc + layer.bias.astype(np.float64)[:, None, None], WEIGHT_BITS)
            if i < len(self.layers) - 1:
                a = np.clip(a, 0, ACTIVATION_MAX)
        h, w = size
        if a.shape[1] < h or a.shape[2] < w:
            raise ValueError(f"a hyper-latent of {z.shape[1:]} does not cover a {h}x{w} latent")
        out = _round_shift(a[:, :h, :w], ACTIVATION_BITS)  # whole numbers
        m = self.latent_channels
        index = np.clip(out[:m], 0, SCALES - 1).astype(np.int32)
        mean = np.clip(out[m:], -MEAN_MAX, MEAN_MAX).astype(np.int32) if self.mean else None
        return index, (mean if mean is not None else np.zeros_like(index))


def scale_tables(max_radius: int = 511, tail: float = 1e-9) -> list[SymbolTables]:
    """One integer table per scale level: the zero-mean Gaussian of that standard
    deviation, integrated over each integer's unit interval, over [-R, R] with R the
    smallest radius outside which less than ``tail`` of it lies (at most ``max_radius``);
    the edges -R and R hold the whole tails (a value beyond is coded as the edge, then
    its excess with :func:`excess_table`). Computed once, at export; the decoder package
    stores the integers."""
    from math import erf, sqrt

    tables = []
    for level in range(SCALES):
        sigma = float(scale_of(level))
        radius = 1
        while radius < max_radius and 1 - erf((radius + 0.5) / (sigma * sqrt(2))) > tail:
            radius += 1
        edges = (np.arange(-radius, radius + 2) - 0.5) / (sigma * sqrt(2))
        cdf = 0.5 * (1 + np.array([erf(e) for e in edges]))
        cdf[0], cdf[-1] = 0.0, 1.0  # the tails on the edges
        pmf = np.maximum(np.diff(cdf), 0.0)[None]
        tables.append(SymbolTables.from_pmf(pmf, radius, FREQUENCY_BITS))
    return tables


EXCESS_MAX = 255  # the largest excess coded; beyond, a value is clamped


def excess_table() -> SymbolTables:
    """The table of how far beyond its scale table's edge a value lies, e = 0 ..
    EXCESS_MAX (symbol e + EXCESS_MAX; the negative half only holds the coder's floor):
    halving with each step, so the usual excess of 0 costs about a bit, a far one at most
    the coder's 16."""
    e = np.arange(-EXCESS_MAX, EXCESS_MAX + 1, dtype=np.float64)
    pmf = np.where(e >= 0, 0.5 ** (np.maximum(e, 0) + 1), 0.0)[None]
    return SymbolTables.from_pmf(pmf, EXCESS_MAX, FREQUENCY_BITS)
