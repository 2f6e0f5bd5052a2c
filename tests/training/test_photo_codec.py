"""The any-size photo codec: odd sizes round-trip with the right geometry, grayscale and
RGB, bounded memory on a large image, the same IR bytes from any process."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from latentwire.client.decoding import DecoderStore, decode_array
from latentwire.shared.codec import Codec
from latentwire.shared.images import SIGNED
from latentwire.shared.package import find_package, list_packages, read_manifest
from latentwire.shared.tiling import codec_tiles
from latentwire.shared.wire import parse
from latentwire.training.metrics import psnr
from tests.conftest import tiny_photo_config


@pytest.fixture(scope="module")
def photo(tiny_photo_codec):
    codec = Codec.load(tiny_photo_codec / "photo")
    store = DecoderStore(search_dirs=[tiny_photo_codec])
    return codec, codec.manifest, codec.package, store


def to_input(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) pixels as a codec takes them: uint8 (3, H, W)."""
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (100, 3), (64, 64), (31, 200)])
def test_odd_sizes_round_trip_with_their_geometry(photo, data_dir, size):
    codec, _, _, store = photo
    h, w = size
    with Image.open(data_dir / "kodak" / "kodim23.png") as image:
        pixels = np.asarray(image.convert("RGB"))[:h, :w]
    (ir,) = codec.compress([to_input(pixels)])
    assert parse(ir).size == (h, w)
    decoded = decode_array(ir, store)
    assert decoded.shape == (h, w, 3) and decoded.dtype == np.uint8


def test_the_manifest_records_kodak_figures_and_the_decoder_is_any_size(photo):
    _, manifest, package, _ = photo
    assert manifest.metrics["test_set"] == "kodak" and manifest.metrics["test_images"] == 24
    assert manifest.metrics["bpp"] > 0 and manifest.metrics["psnr_db"] > 10
    assert package.image_shape == (3, 0, 0) and package.stride == 16


_ENCODE = """
import sys, numpy as np
from latentwire.shared.codec import Codec
codec = Codec.load(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (3, 77, 130)).astype(np.uint8)
sys.stdout.buffer.write(codec.compress([x])[0])
"""


def test_the_same_image_gives_the_same_ir_bytes_in_another_process(tiny_photo_codec):
    """No GPU here: the check that stands for 'GPU-encoded IRs decode on a CPU' is that an
    IR depends on nothing but the image and the model (bit-exact across processes)."""
    folder = str(tiny_photo_codec / "photo")
    runs = [
        subprocess.run([sys.executable, "-c", _ENCODE, folder], capture_output=True, check=True)
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout) > 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_an_ir_encoded_on_a_gpu_decodes_on_the_cpu(data_dir):
    """The light client decodes a GPU-made IR with the CPU's tables and ONNX synthesis: a
    latent that rounds differently on the GPU is still a valid message, of the same quality."""
    folder = find_package("photo-q3")
    store = DecoderStore()
    with Image.open(data_dir / "kodak" / "kodim23.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    decoded = {}
    for device in ("cpu", "cuda"):
        (ir,) = Codec.load(folder, device).compress([to_input(pixels)])
        decoded[device] = decode_array(ir, store)
    assert decoded["cuda"].shape == pixels.shape
    assert abs(psnr(decoded["cuda"], pixels) - psnr(decoded["cpu"], pixels)) < 0.05


_BIG = r"""
import json, re, sys, numpy as np
from latentwire.client.decoding import DecoderStore, decode_array
from latentwire.shared.codec import Codec
folder, side = sys.argv[1], int(sys.argv[2])
codec = Codec.load(folder)
x = np.full((3, side, side), 128, np.uint8)
x[:, ::7] = 191  # some structure to code
(ir,) = codec.compress([x])
image = decode_array(ir, DecoderStore(search_dirs=[folder + "/.."]))
# VmHWM: this program's peak. (ru_maxrss would also count the RSS of the pytest process
# it was forked from: Linux keeps that high-water mark across exec.)
status = open("/proc/self/status").read()
peak_mib = int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024
print(json.dumps({"shape": list(image.shape), "ir_bytes": len(ir), "peak_mib": peak_mib}))
"""


def test_big_images_code_in_windows_that_match_the_whole_image(photo):
    """1,400 pixels wide is two windows of latents (a core of 64 + 4 of context): the
    tiled analysis and synthesis give what one pass over the whole image gives."""
    codec, _, package, store = photo
    model = codec.model
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 48, 1408)).astype(np.uint8)
    x = SIGNED.to_model(torch.from_numpy(pixels[None]).float())
    assert len(codec_tiles(48 // 16, 1408 // 16)) == 2
    with torch.inference_mode():
        whole = torch.round(model.analysis(x)).to(torch.int32).numpy()
    np.testing.assert_array_equal(model.quantized_latent(x), whole)

    decoder = store.get(package.model, package.digest)
    one_pass = decoder.session.run(None, {decoder.input_name: whole.astype(np.float32)})[0]
    expected = SIGNED.to_pixels(one_pass[0]).astype(np.uint8)
    (ir,) = codec.compress([pixels])
    np.testing.assert_array_equal(decode_array(ir, store), expected.transpose(1, 2, 0))


def test_a_4096_square_image_codes_in_bounded_memory(tiny_photo_codec):
    folder = str(tiny_photo_codec / "photo")
    result = subprocess.run(
        [sys.executable, "-c", _BIG, folder, "4096"], capture_output=True, text=True, check=True
    )
    figures = json.loads(result.stdout)
    assert figures["shape"] == [4096, 4096, 3]
    # Windows bound it (the shipped photo codecs peak near 2 GiB: docs/models.md); one pass over
    # the whole image took 9 GiB to encode and 19 GiB to decode.
    assert figures["peak_mib"] < 3 * 1024, figures


SHIPPED_PHOTO_CODECS = [
    p
    for p in list_packages()
    if read_manifest(p).task == "codec" and read_manifest(p).dataset == "photos"
]


@pytest.mark.parametrize("folder", SHIPPED_PHOTO_CODECS, ids=lambda p: p.name)
def test_shipped_photo_codecs_reach_their_published_kodak_figures(folder, data_dir):
    """All 24 Kodak photos through real IRs and the light decoder, against the manifest."""
    from latentwire.training.recipes.codec import photo_codec_metrics

    codec = Codec.load(folder)
    manifest = codec.manifest
    assert codec.package.digest == manifest.decoder_digest
    measured = photo_codec_metrics(codec, data_dir / "kodak")
    assert measured["test_images"] == manifest.metrics["test_images"] == 24
    assert measured["bpp"] == pytest.approx(manifest.metrics["bpp"], abs=0.001)
    assert measured["psnr_db"] == pytest.approx(manifest.metrics["psnr_db"], abs=0.01)


def test_a_fine_tuned_codecs_manifest_holds_the_run_it_started_from(
    tiny_photo_codec, data_dir, tmp_path
):
    from latentwire.training.checkpoint import latest_checkpoint
    from latentwire.training.export import export
    from latentwire.training.recipes.codec import train

    base = latest_checkpoint(tiny_photo_codec.parent / "run")
    fine_tune = "latentwire train codec (fine-tune)"
    train(
        tiny_photo_config(
            data_dir,
            tmp_path / "run",
            patches_per_epoch=32,
            quality=1,
            init=str(base),
            command=fine_tune,
        )
    )
    manifest = export(latest_checkpoint(tmp_path / "run"), tmp_path / "pkg", "photo-tiny-q1")
    assert manifest.training["command"] == fine_tune
    started_from = manifest.training["init"]
    assert started_from["checkpoint"] == base.name and started_from["epochs"] == 1
    assert started_from["command"] == "latentwire train codec (test)"
    assert started_from["seconds"] > 0 and "init" not in started_from


def test_a_hyperprior_stage_keeps_the_transforms_and_a_gray_codec_starts_from_it(
    tiny_photo_codec, data_dir, tmp_path
):
    """The photo ladder's recipe, small: a hyperprior learned on a factorized codec's fixed
    transforms (the rate alone), then a one-channel codec from it that decodes as gray."""
    from latentwire.shared.models import ImageShape
    from latentwire.training.checkpoint import latest_checkpoint, load_checkpoint
    from latentwire.training.export import export
    from latentwire.training.recipes.codec import build, train

    base = latest_checkpoint(tiny_photo_codec.parent / "run")
    hyper = {"prior": "scale", "hyper_filters": 16, "patches_per_epoch": 32, "init": str(base)}
    cfg = tiny_photo_config(data_dir, tmp_path / "s1", freeze_transforms=True, **hyper)
    train(cfg)
    torch.manual_seed(cfg.seed)  # the side information as it started
    fresh = build(cfg, ImageShape(3, 64, 64)).state_dict()
    before = load_checkpoint(base)["model"]
    after = load_checkpoint(latest_checkpoint(tmp_path / "s1"))["model"]
    assert any(not torch.equal(fresh[k], after[k]) for k in after if k.startswith("hyper_"))
    for k in before:
        if k.startswith(("analysis.", "synthesis.")):
            assert torch.equal(before[k], after[k]), k

    gray = {**hyper, "init": str(latest_checkpoint(tmp_path / "s1"))}
    train(tiny_photo_config(data_dir, tmp_path / "gray", channels=1, **gray))
    export(latest_checkpoint(tmp_path / "gray"), tmp_path / "g", "g-q3")
    codec = Codec.load(tmp_path / "g")
    with Image.open(data_dir / "kodak" / "kodim05.png") as image:
        pixels = np.asarray(image.convert("L"))[:70, :90]
    (ir,) = codec.compress([pixels[None]])
    (decoded,) = codec.decompress([ir])
    assert decoded.shape == (70, 90) and psnr(pixels, decoded) > 15


def test_a_package_init_is_recorded_as_it_was_when_the_run_started(
    tiny_photo_codec, data_dir, tmp_path
):
    """A level re-exported under the id it started from must not rewrite its own history."""
    import shutil

    from latentwire.training.checkpoint import latest_checkpoint
    from latentwire.training.export import export
    from latentwire.training.recipes.codec import train

    package = tmp_path / "photo"
    shutil.copytree(tiny_photo_codec / "photo", package)
    before = read_manifest(package).training
    train(tiny_photo_config(data_dir, tmp_path / "run", patches_per_epoch=32, init=str(package)))
    manifest = export(latest_checkpoint(tmp_path / "run"), package, "photo-tiny-q3")
    assert read_manifest(package).training["command"] == manifest.training["command"]
    assert manifest.training["init"]["command"] == before["command"]
    assert manifest.training["init"]["package"] == "photo-tiny-q3"


@pytest.mark.parametrize("prior", ["scale", "mean-scale"])
def test_a_wider_codec_starts_computing_what_the_narrower_one_did(prior):
    """--init from a narrower hyperprior codec (the way to widen the high levels): the
    same image, and the same scales and means for the old latent channels; nothing
    narrower or of another shape is taken."""
    from latentwire.shared.models import ImageShape, get_model
    from latentwire.training.recipes.codec import initialize

    def codec(n: int, m: int, h: int, mean: bool = prior == "mean-scale") -> torch.nn.Module:
        shape = ImageShape(3, 64, 64)
        kinds = dict(filters=n, latent_channels=m, hyper_filters=h, mean=mean)
        return get_model("hyperprior", shape=shape, **kinds).eval()

    torch.manual_seed(0)
    narrow, wide = codec(8, 12, 6), codec(12, 20, 10)
    with torch.no_grad():  # trained-looking weights: every GDN mixes its channels
        for p in narrow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    initialize(wide, {k: v.clone() for k, v in narrow.state_dict().items()})
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    with torch.no_grad():
        y_n, y_w = (model.analysis(x) for model in (narrow, wide))
        torch.testing.assert_close(y_w[:, :12], y_n, atol=1e-6, rtol=0)
        assert y_w[:, 12:].abs().min() > 0  # the new channels are live
        y_n = torch.round(y_n)  # the old channels rounded alike (whatever float rounding did)
        y_w = torch.cat([y_n, torch.round(y_w[:, 12:])], dim=1)
        torch.testing.assert_close(wide.synthesis(y_w), narrow.synthesis(y_n), atol=1e-5, rtol=0)
        z_n, z_w = narrow.hyper_latent(y_n), wide.hyper_latent(y_w)
        torch.testing.assert_close(z_w[:, :6], z_n, atol=1e-5, rtol=0)
        z_w[:, :6] = z_n = torch.round(z_n)
        z_w = torch.round(z_w)
        level_n, mean_n = narrow.parameters_of(z_n, y_n.shape[-2:])
        level_w, mean_w = wide.parameters_of(z_w, y_w.shape[-2:])
        torch.testing.assert_close(level_w[:, :12], level_n, atol=0, rtol=0)
        torch.testing.assert_close(mean_w[:, :12], mean_n, atol=0, rtol=0)

    # A scale codec starts a mean-scale one with its scales; the other way is refused.
    other = codec(12, 20, 10, mean=prior == "scale")
    if prior == "scale":
        initialize(other, {k: v.clone() for k, v in narrow.state_dict().items()})
        with torch.no_grad():
            level_o, _ = other.parameters_of(z_w, y_w.shape[-2:])
        torch.testing.assert_close(level_o[:, :12], level_n, atol=0, rtol=0)
    else:
        with pytest.raises(ValueError, match="mean-scale"):
            initialize(other, narrow.state_dict())
    with pytest.raises(ValueError, match="not within"):
        initialize(narrow, wide.state_dict())
    with pytest.raises(ValueError, match="has not"):
        initialize(wide, {**narrow.state_dict(), "extra.weight": torch.zeros(1)})
