"""The exported synthesis: kernels larger than 1x1 stored in float16, run in float32, and
the same network to within float16's rounding."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto
from torch import nn

from latentwire.shared.models.codec import bmshj2018_transforms
from latentwire.training.recipes.codec import half_kernels, synthesis_to_onnx


def run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_the_synthesis_keeps_its_output_from_half_the_kernel_bytes():
    torch.manual_seed(0)
    _, synthesis = bmshj2018_transforms(3, 16, 24)
    half = synthesis_to_onnx(synthesis, (24, 4, 4))
    stored = {i.name: i for i in onnx.load_from_string(half).graph.initializer}
    halves = [i for i in stored.values() if i.data_type == TensorProto.FLOAT16]
    assert len(halves) == 4 and all(list(i.dims[2:]) == [5, 5] for i in halves)
    # GDN's 1x1 gamma and every bias stay float32.
    assert all(i.data_type == TensorProto.FLOAT for i in stored.values() if i not in halves)
    assert {i.dims[-1] for i in stored.values() if len(i.dims) == 4} == {1, 5}
    latent = np.random.default_rng(0).normal(0, 3, (2, 24, 5, 7)).astype(np.float32)
    with torch.inference_mode():
        expected = synthesis(torch.from_numpy(latent)).numpy()
    out = run(half, latent)
    assert out.dtype == np.float32 and out.shape == expected.shape == (2, 3, 80, 112)
    assert np.abs(out - expected).max() < 2e-3 * np.abs(expected).max()
    assert half_kernels(half) == half  # nothing left to halve


class Twice(nn.Module):
    """One 3x3 kernel used by two convolutions, and a 1x3 one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.wide = nn.Conv2d(4, 4, (1, 3), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wide(self.conv(self.conv(x)))


def test_a_shared_kernel_is_cast_once_and_a_kernel_too_big_for_float16_is_refused():
    torch.manual_seed(1)
    module = Twice()
    half = synthesis_to_onnx(module, (4, 6, 6))
    graph = onnx.load_from_string(half).graph
    casts = [n for n in graph.node if n.op_type == "Cast"]
    assert len(casts) == 2  # the shared 3x3 kernel once, the 1x3 one
    x = np.random.default_rng(1).normal(size=(1, 4, 6, 6)).astype(np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(x)).numpy()
    assert np.abs(run(half, x) - expected).max() < 1e-2

    with torch.no_grad():
        module.conv.weight[0, 0, 0, 0] = 1e6  # beyond float16's 65504
    with pytest.raises(ValueError, match="does not fit float16"):
        synthesis_to_onnx(module, (4, 6, 6))
