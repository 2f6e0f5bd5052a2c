"""Build a torch model from a model package (safetensors + manifest), on a device."""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file
from torch import nn

from latentwire.shared.models.registry import get_family, make_config
from latentwire.shared.package import Manifest, read_manifest, verified_weights_path


def load_model(
    package_dir: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Manifest]:
    """The package's model in eval mode, with its weights checked against the manifest."""
    manifest = read_manifest(package_dir)
    model = get_family(manifest.family).build(make_config(manifest.family, manifest.config))
    model.load_state_dict(load_file(verified_weights_path(package_dir), device=str(device)))
    return model.to(device).eval(), manifest


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; otherwise the device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
