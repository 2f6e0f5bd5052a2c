"""Hyperprior codecs: the integer hyper-synthesis gives the same tables every time, two
independent ways, in any process; the trained (integer-aware) network is what is exported;
IRs round-trip through the light client."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentwire.shared import hyper
from latentwire.shared.codec import Codec
from latentwire.shared.decoder_package import (
    DecoderPackage,
    HyperTables,
    decoder_path,
    read_decoder,
    write_decoder,
)
from latentwire.shared.models import ImageShape, get_model
from latentwire.shared.package import Manifest


def small_model(mean: bool, seed: int = 0, fixed: tuple[int, int, int] | None = None):
    """A small hyperprior codec: of any size, or of the one geometry ``fixed`` (C, H, W)."""
    torch.manual_seed(seed)
    model = get_model(
        "hyperprior",
        shape=ImageShape(*(fixed or (3, 64, 64))),
        filters=16,
        latent_channels=24,
        hyper_filters=16,
        mean=mean,
        fixed_size=fixed is not None,
    ).eval()
    with torch.no_grad():  # weights of a trained network's size, not of a fresh one's
        for layer in model.hyper_synthesis:
            layer.layer.weight.normal_(0, 0.3)
            layer.layer.bias.normal_(0, 1.0)
    return model


def direct(network: hyper.HyperSynthesis, z: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    """The integer network again, independently: Python integers and explicit sums over the
    taps (no float, no BLAS, no sliding windows), transposed convolutions by scattering."""
    a = [[[int(v) << hyper.ACTIVATION_BITS for v in row] for row in ch] for ch in z]
    for n, layer in enumerate(network.layers):
        w, b = layer.weight.tolist(), layer.bias.tolist()
        out_c, in_c, k, _ = layer.weight.shape
        h, wd = len(a[0]), len(a[0][0])
        p = k // 2
        if layer.kind == "conv":
            oh, ow = h, wd
            acc = [[[b[o] for _ in range(ow)] for _ in range(oh)] for o in range(out_c)]
            for o in range(out_c):
                for i in range(in_c):
                    for y in range(oh):
                        for x in range(ow):
                            total = 0
                            for dy in range(k):
                                for dx in range(k):
                                    sy, sx = y + dy - p, x + dx - p
                                    if 0 <= sy < h and 0 <= sx < wd:
                                        total += w[o][i][dy][dx] * a[i][sy][sx]
                            acc[o][y][x] += total
        else:  # ConvTranspose2d(k, stride 2, padding p, output padding 1); w is flipped
            oh, ow = 2 * h, 2 * wd
            acc = [[[b[o] for _ in range(ow)] for _ in range(oh)] for o in range(out_c)]
            for o in range(out_c):
                for i in range(in_c):
                    for y in range(h):
                        for x in range(wd):
                            v = a[i][y][x]
                            if v == 0:
                                continue
                            for dy in range(k):
                                for dx in range(k):
                                    ty, tx = 2 * y - p + dy, 2 * x - p + dx
                                    if 0 <= ty < oh and 0 <= tx < ow:
                                        # the unflipped kernel tap of a transposed conv
                                        acc[o][ty][tx] += w[o][i][k - 1 - dy][k - 1 - dx] * v
        half = 1 << (hyper.WEIGHT_BITS - 1)
        a = [[[(v + half) >> hyper.WEIGHT_BITS for v in row] for row in ch] for ch in acc]
        if n < len(network.layers) - 1:
            a = [[[min(max(v, 0), hyper.ACTIVATION_MAX) for v in row] for row in ch] for ch in a]
    h, w = size
    half = 1 << (hyper.ACTIVATION_BITS - 1)
    out = np.array(
        [[[(v + half) >> hyper.ACTIVATION_BITS for v in row[:w]] for row in ch[:h]] for ch in a]
    )
    m = network.latent_channels
    index = np.clip(out[:m], 0, hyper.SCALES - 1)
    mean = (
        np.clip(out[m:], -hyper.MEAN_MAX, hyper.MEAN_MAX) if network.mean else np.zeros_like(index)
    )
    return index, mean


@pytest.mark.parametrize("mean", [False, True])
def test_the_tables_are_computed_the_same_two_independent_ways(mean):
    model = small_model(mean)
    network = model.integer_hyper_synthesis()
    z = np.random.default_rng(1).integers(-6, 7, (16, 2, 3)).astype(np.int32)
    index, means = network(z, (7, 11))
    expected_index, expected_mean = direct(network, z, (7, 11))
    assert len(np.unique(index)) > 0 and index.shape == (24, 7, 11)
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_array_equal(means, expected_mean)
    if mean:
        assert np.abs(means).max() > 0


@pytest.mark.parametrize("mean", [False, True])
def test_training_computes_what_the_integer_network_computes(mean):
    """The integer-aware training forward gives exactly the exported network's levels."""
    model = small_model(mean, seed=2)
    z = torch.randint(-8, 9, (1, 16, 3, 4)).float()
    level, mean_value = model.parameters_of(z, (10, 13))
    index, means = model.integer_hyper_synthesis()(z[0].int().numpy(), (10, 13))
    np.testing.assert_array_equal(level[0].detach().numpy().astype(np.int32), index)
    np.testing.assert_array_equal(mean_value[0].detach().numpy().astype(np.int32), means)


def test_the_transposed_convolution_is_torchs():
    rng = np.random.default_rng(3)
    x = rng.integers(-5, 6, (4, 3, 5)).astype(np.float64)
    layer = torch.nn.ConvTranspose2d(4, 2, 5, 2, 2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(rng.integers(-3, 4, (4, 2, 5, 5)).astype(np.float32)))
        expected = layer(torch.from_numpy(x).float()[None])[0].double().numpy()
    weight = layer.weight.detach().double().transpose(0, 1).flip(2, 3).numpy()
    np.testing.assert_array_equal(hyper._deconv(x, weight), expected)


def packaged(model, model_id: str, parent: Path, code: int | None = None) -> Codec:
    """``model`` packaged as export packages a hyperprior codec, in ``parent / model_id``;
    with ``code``, a deployment's model code its IRs carry."""
    from latentwire.training.recipes.codec import synthesis_to_onnx

    package = DecoderPackage(
        model=model_id,
        image_shape=model.config.image_shape,
        latent_shape=model.latent_shape,
        stride=16,
        tables=model.z_prior.tables(),
        onnx=synthesis_to_onnx(model.synthesis, (24, 4, 4)),
        hyper=HyperTables(hyper.scale_tables(), model.integer_hyper_synthesis()),
        code=code,
    )
    data = package.to_bytes()
    manifest = Manifest(
        id=model_id, family="hyperprior", config={}, dataset="-", task="codec", code=code
    )
    folder = parent / model_id
    folder.mkdir(parents=True)
    write_decoder(folder, data)
    (folder / "manifest.json").write_text(manifest.to_json())
    return Codec(model, manifest, data, torch.device("cpu"))


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    """A small mean-scale codec packaged as export packages one (untrained transforms)."""
    parent = tmp_path_factory.mktemp("hyper")
    return packaged(small_model(True, seed=4), "hyper-test", parent), parent / "hyper-test"


def test_a_hyperprior_ir_round_trips_through_the_light_client(codec, data_dir):
    from PIL import Image

    from latentwire.client import DecoderStore, decode_array

    c, folder = codec
    with Image.open(data_dir / "kodak" / "kodim05.png") as image:
        pixels = np.asarray(image.convert("RGB"))[:90, :140]
    (ir,) = c.compress([np.ascontiguousarray(pixels.transpose(2, 0, 1))])
    package = DecoderPackage.from_bytes(read_decoder(decoder_path(folder)))
    assert package.hyper is not None and package.hyper.synthesis.mean
    decoded = decode_array(ir, DecoderStore(search_dirs=[folder.parent]))
    assert decoded.shape == (90, 140, 3)
    np.testing.assert_array_equal(decoded, c.decompress([ir])[0])


def test_the_same_ir_decodes_to_the_same_latent_in_another_process(codec):
    c, folder = codec
    image = np.random.default_rng(6).integers(0, 256, (3, 70, 50)).astype(np.uint8)
    (ir,) = c.compress([image])
    script = (
        "import sys, hashlib\n"
        "from latentwire.shared.decoder_package import DecoderPackage, read_decoder\n"
        "from latentwire.shared.decoding import Decoder\n"
        "from latentwire.shared.wire import parse\n"
        f"data = read_decoder({str(decoder_path(folder))!r})\n"
        "package = DecoderPackage.from_bytes(data)\n"
        "ir = parse(sys.stdin.buffer.read())\n"
        "decoder = Decoder(package)\n"
        "latent = decoder._latent(ir.payload, decoder.latent_shape(ir))\n"
        "print(hashlib.sha256(latent.tobytes()).hexdigest())\n"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", script], input=ir, capture_output=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1


def test_a_clipped_level_gets_gradients_only_back_into_range():
    """Below 0 or above the last level, descent may only bring a level back: a channel
    that is always 0 wants ever smaller scales and must not drift without end."""
    from latentwire.shared.models.hyperprior import _ste_clamp

    x = torch.tensor([-3.0, -3.0, 5.0, 70.0, 70.0], requires_grad=True)
    upstream = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])  # d loss / d clamped
    (_ste_clamp(x, 0, 63) * upstream).sum().backward()
    # below: a positive gradient would push further down (blocked), a negative one up;
    # inside: straight through; above: only a positive gradient (pushing down) passes.
    assert x.grad.tolist() == [0.0, -1.0, 1.0, 1.0, 0.0]


def test_a_fixed_size_codec_with_a_code_has_8_bytes_of_overhead_and_refuses_others(tmp_path):
    """A deployment's codec of one geometry: its IR names the model by a one-byte code and
    carries no size (8 bytes around the payload, as a shipped small codec's); it decodes
    through the light client found by that code, and a decoder of another digest is
    refused."""
    import msgpack

    from latentwire.client.decoding import DecoderStore, decode_batch
    from latentwire.shared.wire import IRError, parse

    codec = packaged(small_model(False, seed=5, fixed=(1, 40, 24)), "mine-q3", tmp_path, code=7)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, 40, 24), dtype=np.uint8) for _ in range(3)]
    irs = codec.compress(images)
    for ir in irs:
        fields = msgpack.unpackb(ir)
        assert len(fields) == 4 and fields[1] == -7  # no size; the code, one byte
        assert len(ir) - len(fields[3]) <= 8
        assert parse(ir).model == 7
    store = DecoderStore([tmp_path])
    decoded = decode_batch(irs, store)
    assert all(d.shape == (40, 24) for d in decoded)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, codec.decompress(irs), strict=True))
    other = packaged(small_model(False, seed=6, fixed=(1, 40, 24)), "mine-q3", tmp_path / "o", 7)
    with pytest.raises(IRError, match="different version"):
        decode_batch(irs, DecoderStore([tmp_path / "o"]))
    assert other.package.digest != codec.package.digest
