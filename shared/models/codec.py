"""Rate-distortion codecs: analysis transform -> quantize -> factorized prior -> synthesis.

``forward`` is for training (noisy latents and their likelihoods); :func:`encode_images`
is for use: rounded latents, entropy-coded with the integer tables of the model's decoder
package, one IR per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from latentwire.shared.coding import encode_latent
from latentwire.shared.decoder_package import DecoderPackage
from latentwire.shared.models.autoencoders import ConvAutoencoder, ConvConfig
from latentwire.shared.models.entropy import FactorizedPrior
from latentwire.shared.models.layers import GDN, conv, deconv
from latentwire.shared.models.registry import ImageShape, register_family
from latentwire.shared.wire import IR


@dataclass(frozen=True)
class FactorizedCodecConfig:
    shape: ImageShape
    transform: str = "gdn"  # "gdn", or "conv": the MNIST prototype's transforms with a prior
    filters: int = 64  # N: width of the hidden layers
    latent_channels: int = 32  # M: channels of the coded latent

    def __post_init__(self) -> None:
        if self.transform not in ("gdn", "conv"):
            raise ValueError(f"transform must be 'gdn' or 'conv', not {self.transform!r}")


@register_family("factorized", FactorizedCodecConfig)
class FactorizedCodec(nn.Module):
    """A stride-4 codec for small images with a factorized prior (after Ballé et al. 2018).

    ``gdn``: conv5/2 GDN conv5/2 GDN conv3 -> M x H/4 x W/4, mirrored with IGDN.
    ``conv``: the ``conv`` prototype autoencoder's encoder and decoder (latent 16 x H/4 x W/4).
    Images are in [-1, 1]; height and width must be multiples of 4.
    """

    stride = 4

    def __init__(self, config: FactorizedCodecConfig) -> None:
        super().__init__()
        self.config = config
        s, n, m = config.shape, config.filters, config.latent_channels
        if s.height % self.stride or s.width % self.stride:
            raise ValueError(f"height and width must be multiples of {self.stride}")
        if config.transform == "conv":
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
        self.prior = FactorizedPrior(m)
        self.latent_shape = (m, s.height // self.stride, s.width // self.stride)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, likelihoods of the quantized latent)."""
        y_hat, likelihoods = self.prior(self.analysis(x))
        return self.synthesis(y_hat), likelihoods

    @torch.inference_mode()
    def quantized_latent(self, x: torch.Tensor) -> np.ndarray:
        """The integer latents (N, M, h, w) that get entropy-coded."""
        return torch.round(self.analysis(x)).to(torch.int32).cpu().numpy()


ENCODE_CHUNK = 8  # images per analysis call, whatever the batch size (see encode_images)


def encode_images(codec: FactorizedCodec, package: DecoderPackage, x: torch.Tensor) -> list[bytes]:
    """One IR per image of a batch ``x`` (N, C, H, W) in [-1, 1].

    The analysis always runs on chunks of exactly ``ENCODE_CHUNK`` images (the last one
    padded): convolution kernels pick their algorithm by batch size, and a latent that
    rounds differently would make an image's IR depend on the requests it was batched
    with. With one shape, the same image always gives the same bytes.
    """
    irs = []
    for start in range(0, len(x), ENCODE_CHUNK):
        chunk = x[start : start + ENCODE_CHUNK]
        real = len(chunk)
        if real < ENCODE_CHUNK:
            chunk = torch.cat([chunk, chunk.new_zeros(ENCODE_CHUNK - real, *chunk.shape[1:])])
        for latent in codec.quantized_latent(chunk)[:real]:
            payload = encode_latent(latent, package.tables)
            irs.append(IR(package.model, package.digest, payload).to_bytes())
    return irs
