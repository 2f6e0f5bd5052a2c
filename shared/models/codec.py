"""Rate-distortion codecs: analysis transform -> quantize -> factorized prior -> synthesis.

``forward`` is for training (noisy latents and their likelihoods); :meth:`quantized_latents`
is for use: the rounded integer latents that get entropy-coded. The model knows tensors and
symbols; the wire format and the coding tables are :class:`latentwire.shared.codec.Codec`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from latentwire.shared.decoder_package import MAX_CONTEXTS
from latentwire.shared.models.autoencoders import ConvAutoencoder, ConvConfig
from latentwire.shared.models.entropy import FactorizedPrior
from latentwire.shared.models.layers import GDN, conv, deconv
from latentwire.shared.models.registry import ImageShape, register_family
from latentwire.shared.tiling import codec_tiles

TRANSFORMS = ("gdn", "conv", "bmshj2018")
ENCODE_CHUNK = 8  # images per analysis call, whatever the batch size (quantized_latents)


@dataclass(frozen=True)
class FactorizedCodecConfig:
    shape: ImageShape  # the image geometry; for "bmshj2018" the channels only (any size)
    transform: str = "gdn"  # see FactorizedCodec
    filters: int = 64  # N: width of the hidden layers
    latent_channels: int = 32  # M: channels of the coded latent
    positional_prior: bool = False  # a density per channel and latent position
    prior_contexts: int = 1  # densities per position, by earlier channels nonzero there

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, not {self.transform!r}")
        if self.positional_prior and self.transform == "bmshj2018":
            raise ValueError("a positional prior needs a model of one fixed geometry")
        if not 1 <= self.prior_contexts <= MAX_CONTEXTS:
            raise ValueError(f"prior_contexts must be 1 to {MAX_CONTEXTS}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the codec takes; H and W 0 for ``bmshj2018`` (any size)."""
        s = self.shape
        return (
            (s.channels, 0, 0) if self.transform == "bmshj2018" else (s.channels, s.height, s.width)
        )


@register_family("factorized", FactorizedCodecConfig)
class FactorizedCodec(nn.Module):
    """Codecs with a factorized prior (after Ballé et al. 2018, "bmshj2018-factorized").

    ``gdn``: conv5/2 GDN conv5/2 GDN conv3 -> M x H/4 x W/4, mirrored with IGDN; for small
    images of one fixed size (height and width multiples of 4).
    ``conv``: the ``conv`` prototype autoencoder's encoder and decoder (latent 16 x H/4 x W/4).
    ``bmshj2018``: the paper's transforms, four conv5/2 with GDN between (stride 16),
    mirrored with IGDN; fully convolutional, so one model codes images of any size
    (:func:`encode_any_size` pads to a multiple of 16; the IR carries the true size).
    Images are in [-1, 1].
    """

    def __init__(self, config: FactorizedCodecConfig) -> None:
        super().__init__()
        self.config = config
        s, n, m = config.shape, config.filters, config.latent_channels
        self.any_size = config.transform == "bmshj2018"
        self.stride = 16 if self.any_size else 4
        if not self.any_size and (s.height % self.stride or s.width % self.stride):
            raise ValueError(f"height and width must be multiples of {self.stride}")
        if self.any_size:
            self.analysis, self.synthesis = bmshj2018_transforms(s.channels, n, m)
        elif config.transform == "conv":
            prototype = ConvAutoencoder(ConvConfig(s))
            self.analysis, self.synthesis = prototype.encoder, prototype.decoder
            m = 16
        else:
            self.analysis = nn.Sequential(
                conv(s.channels, n), GDN(n), conv(n, n), GDN(n), conv(n, m, 3, 1)
            )
            self.synthesis = nn.Sequential(
                conv(m, n, 3, 1),
                GDN(n, inverse=True),
                deconv(n, n),
                GDN(n, inverse=True),
                deconv(n, s.channels),
            )
        # (M, 0, 0) for any-size models: the latent's size follows the image's.
        self.latent_shape = (m, 0, 0) if self.any_size else (m, s.height // 4, s.width // 4)
        positions = self.latent_shape[1] * self.latent_shape[2] if config.positional_prior else 1
        self.prior = FactorizedPrior(m, positions, config.prior_contexts)

    def forward(self, x: torch.Tensor, hard: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, likelihoods of the quantized latent); ``hard``: rounded, not
        noisy, in training too (the rounded latent is detached: no gradient reaches the
        analysis; the training recipe also fixes its parameters)."""
        y_hat, likelihoods = self.prior(self.analysis(x), hard)
        return self.synthesis(y_hat), likelihoods

    @torch.inference_mode()
    def quantized_latent(self, x: torch.Tensor) -> np.ndarray:
        """The integer latents (N, M, h, w) that get entropy-coded.

        A big image is analysed in overlapping windows (:func:`codec_tiles`), so memory
        stays bounded; the window's context covers the transform's reach, so a latent
        matches the whole-image one up to float rounding.
        """
        return windowed_latent(self.analysis, x, self.stride, self.prior.channels)

    def quantized_latents(self, x: torch.Tensor) -> np.ndarray:
        """The integer latents of a batch of images of the model's fixed geometry.

        The analysis always runs on chunks of exactly ``ENCODE_CHUNK`` images (the last one
        padded): convolution kernels pick their algorithm by batch size, and a latent that
        rounds differently would make an image's IR depend on the requests it was batched
        with. With one shape, the same image always gives the same latent.
        """
        out = []
        for start in range(0, len(x), ENCODE_CHUNK):
            chunk = x[start : start + ENCODE_CHUNK]
            real = len(chunk)
            if real < ENCODE_CHUNK:
                chunk = torch.cat([chunk, chunk.new_zeros(ENCODE_CHUNK - real, *chunk.shape[1:])])
            out.append(self.quantized_latent(chunk)[:real])
        return np.concatenate(out)


def bmshj2018_transforms(channels: int, n: int, m: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The paper's analysis and synthesis: four conv 5x5/2 with GDN between (stride 16),
    mirrored with IGDN; ``n`` hidden channels, ``m`` latent channels."""
    analysis = nn.Sequential(
        conv(channels, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m)
    )
    synthesis = nn.Sequential(
        deconv(m, n),
        GDN(n, inverse=True),
        deconv(n, n),
        GDN(n, inverse=True),
        deconv(n, n),
        GDN(n, inverse=True),
        deconv(n, channels),
    )
    return analysis, synthesis


def windowed_latent(analysis: nn.Module, x: torch.Tensor, stride: int, channels: int) -> np.ndarray:
    """The rounded latent (N, channels, H / stride, W / stride) of ``analysis`` on ``x``, run
    in overlapping windows (:func:`codec_tiles`): memory stays bounded, and as the window's
    context covers the transform's reach, it matches one pass up to float rounding."""
    s = stride
    n, _, height, width = x.shape
    latent = torch.empty(n, channels, height // s, width // s, dtype=torch.int32)
    for tile in codec_tiles(height // s, width // s):
        top, left, bottom, right = tile.window
        window = analysis(x[..., top * s : bottom * s, left * s : right * s])
        (out_y, out_x), (in_y, in_x) = tile.core()
        latent[..., out_y, out_x] = torch.round(window[..., in_y, in_x]).to(torch.int32).cpu()
    return latent.numpy()


def padded_forward(
    model: nn.Module, x: torch.Tensor, hard: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, likelihoods) of a codec (factorized or hyperprior) for images of
    any size: padded to its stride as :class:`~latentwire.shared.codec.Codec` codes them,
    the reconstruction cropped back; the likelihoods are the padded latent's."""
    height, width = x.shape[-2:]
    stride = getattr(model, "module", model).stride  # through a DistributedDataParallel
    x_hat, likelihoods = model(pad_to_stride(x, stride), hard)
    return x_hat[..., :height, :width], likelihoods


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, C, H, W) padded at the bottom and right, by repeating the edge, to multiples of
    ``stride`` (an edge costs fewer bits than a black border; the decoder crops it off)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % stride, -w % stride
    if not pad_h and not pad_w:
        return x
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
