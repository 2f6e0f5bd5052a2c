"""Super-resolution: models, data, both training stages, resume, tools and the shipped model."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from latentwire.shared.models import get_model
from latentwire.shared.models.loading import load_model
from latentwire.shared.package import find_package
from latentwire.shared.resample import downscale
from latentwire.shared.upscaling import upscale_image
from latentwire.training.checkpoint import latest_checkpoint, load_checkpoint
from latentwire.training.data import image_files
from latentwire.training.loop import weights_digest
from latentwire.training.photos import PatchPairs
from latentwire.training.recipes.sr import VGG19_FILE, TrainConfig, build_generator, train

CLI = [sys.executable, "-m", "latentwire.shared.cli"]


def tiny(tmp_path, **overrides) -> TrainConfig:
    """A few seconds of real training on the 11 CC0 photos."""
    values = dict(
        data="skimage_cc0",
        patch=32,
        patches_per_epoch=32,
        batch_size=8,
        features=8,
        blocks=1,
        d_widths=(8, 16),
        epochs=1,
        val_fraction=0.0,
        out=str(tmp_path / "run"),
        progress=False,
        command="latentwire train sr (test)",
    )
    return TrainConfig(**{**values, **overrides})


@pytest.mark.parametrize("size", [(1, 3, 17, 23), (2, 3, 8, 5), (1, 1, 9, 9)])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_generator_doubles_any_size(size, batch_norm):
    model = get_model("srresnet", channels=size[1], features=8, blocks=2, batch_norm=batch_norm)
    out = model.eval()(torch.rand(size))
    assert out.shape == (size[0], size[1], 2 * size[2], 2 * size[3])


def test_generator_starts_as_bicubic():
    model = get_model("srresnet", features=8, blocks=2)
    x = torch.rand(1, 3, 12, 10)
    expected = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("size", [(2, 3, 96, 96), (3, 3, 33, 47)])
def test_discriminator_gives_one_logit_per_image(size):
    d = get_model("srgan-discriminator", widths=(8, 16, 32))
    assert d(torch.rand(size)).shape == (size[0],)


def test_patches_are_aligned_pairs_and_small_photos_are_skipped(data_dir, caplog):
    files = image_files(data_dir / "skimage_cc0")
    with caplog.at_level(logging.INFO, logger="latentwire.train"):
        pairs = PatchPairs(files, patch=400, scale=2, length=4)
    assert 0 < pairs.skipped < len(files)
    assert f"skipped {pairs.skipped} images smaller" in caplog.text
    pairs = PatchPairs(files, patch=48, scale=2, length=4, augment=False)
    lr, hr = pairs[0]
    assert lr.shape == (3, 24, 24) and hr.shape == (3, 48, 48)
    # LR is the bicubic downscale of HR, so upscaling back is close to it.
    back = F.interpolate(lr[None], scale_factor=2, mode="bicubic")[0]
    assert F.mse_loss(back, hr) < 0.01
    again = PatchPairs(files, patch=48, scale=2, length=4, augment=False)
    torch.testing.assert_close(again[0][1], hr)  # the same (seed, epoch, index): same patch
    again.set_epoch(1)
    assert not torch.equal(again[0][1], hr)


def test_lr_dir_made_by_downscale_is_used(tmp_path, data_dir):
    lr_dir = tmp_path / "lr"
    subprocess.run(
        [*CLI, "downscale", str(data_dir / "skimage_cc0"), "-o", str(lr_dir)], check=True
    )
    files = image_files(data_dir / "skimage_cc0")
    assert sorted(p.name for p in lr_dir.iterdir()) == sorted(p.name for p in files)
    with Image.open(files[0]) as hr, Image.open(lr_dir / files[0].name) as lr:
        assert lr.size == (hr.width // 2, hr.height // 2)
    on_the_fly = PatchPairs(files, patch=48, scale=2, length=2, augment=False)
    from_folder = PatchPairs(files, patch=48, scale=2, length=2, lr_dir=lr_dir, augment=False)
    a, b = on_the_fly[1][0], from_folder[1][0]
    assert a.shape == b.shape and F.mse_loss(a, b) < 1e-3  # whole-image vs patch downscale


def test_a_pretrain_step_lowers_the_loss(data_dir):
    files = image_files(data_dir / "skimage_cc0")
    lr, hr = next(iter(torch.utils.data.DataLoader(PatchPairs(files, 32, 2, 8), batch_size=8)))
    torch.manual_seed(0)
    model = build_generator(TrainConfig(features=8, blocks=1, bicubic_skip=False))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = F.l1_loss(model(lr), hr)
    before.backward()
    optimizer.step()
    assert F.l1_loss(model(lr), hr) < before


def test_pretrain_run_writes_checkpoints_and_samples(tmp_path):
    train(tiny(tmp_path, epochs=2, sample_every=1, val_fraction=0.2))
    run = tmp_path / "run"
    state = load_checkpoint(latest_checkpoint(run))
    assert state["epoch"] == 2 and len(state["history"]["test"]) == 2
    assert (run / "samples-epoch0002.png").is_file() and (run / "loss_curve.png").is_file()


def test_samples_are_named_by_the_real_epoch_after_a_resume(tmp_path):
    train(tiny(tmp_path, epochs=1, sample_every=2))
    train(tiny(tmp_path, epochs=2, sample_every=2, resume=True))
    samples = sorted(p.name for p in (tmp_path / "run").glob("samples-*.png"))
    assert samples == ["samples-epoch0002.png"]


def test_gan_stage_refuses_to_start_without_vgg_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    train(tiny(tmp_path))
    with pytest.raises(RuntimeError, match="--vgg-weights"):
        train(
            tiny(
                tmp_path,
                stage="gan",
                init=str(latest_checkpoint(tmp_path / "run")),
                out=str(tmp_path / "gan"),
            )
        )
    assert not (tmp_path / "gan").exists()  # nothing started


def test_gan_stage_trains_both_players_and_resumes_exactly(tmp_path, monkeypatch):
    # Random VGG19 weights exercise the perceptual path; ImageNet ones cannot be fetched here.
    from torchvision.models import vgg19

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    vgg = tmp_path / VGG19_FILE
    features = vgg19(weights=None).features.state_dict()
    torch.save({f"features.{k}": v for k, v in features.items()}, vgg)
    train(tiny(tmp_path))
    pretrained = str(latest_checkpoint(tmp_path / "run"))
    gan = dict(stage="gan", init=pretrained, vgg_weights=str(vgg), lambda_adv=0.1)

    whole = train(tiny(tmp_path, epochs=2, out=str(tmp_path / "whole"), **gan))
    state = load_checkpoint(latest_checkpoint(tmp_path / "whole"))
    assert len(state["history"]["d"]) == 2 and "discriminator" in state
    before = load_checkpoint(pretrained)["model"]
    assert any(not torch.equal(before[k], v) for k, v in state["model"].items())

    train(tiny(tmp_path, epochs=1, out=str(tmp_path / "split"), **gan))
    resumed = train(tiny(tmp_path, epochs=2, out=str(tmp_path / "split"), resume=True, **gan))
    assert weights_digest(resumed) == weights_digest(whole)


def test_a_gan_step_lowers_each_players_loss(data_dir, tmp_path):
    from torchvision.models import vgg19

    from latentwire.training.recipes.sr import VGGFeatures, discriminator_loss, generator_loss

    files = image_files(data_dir / "skimage_cc0")
    lr, hr = next(iter(torch.utils.data.DataLoader(PatchPairs(files, 32, 2, 8), batch_size=8)))
    torch.manual_seed(0)
    cfg = TrainConfig(features=8, blocks=1, lambda_adv=1.0)
    g = build_generator(cfg)
    d = get_model("srgan-discriminator", widths=(8, 16))
    weights = tmp_path / VGG19_FILE
    features = vgg19(weights=None).features.state_dict()
    torch.save({f"features.{k}": v for k, v in features.items()}, weights)
    vgg = VGGFeatures(weights)

    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    sr = g(lr).detach()
    before = discriminator_loss(d, hr, sr)  # train mode: batch statistics, same batch
    before.backward()
    opt_d.step()
    assert discriminator_loss(d, hr, sr) < before

    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    before = generator_loss(d, vgg, g(lr), hr, cfg, 1.0)
    before.backward()
    opt_g.step()
    assert generator_loss(d, vgg, g(lr), hr, cfg, 1.0) < before


@pytest.fixture(scope="module")
def sr2x():
    return load_model(find_package("sr2x"))


def test_tiled_and_whole_upscale_agree(sr2x, data_dir):
    model, _ = sr2x
    with Image.open(data_dir / "bsd100" / "101085.jpg") as image:
        photo = image.convert("RGB").crop((0, 0, 200, 150))
    whole = np.asarray(upscale_image(model, photo, tile=None), dtype=np.float64)
    tiled = np.asarray(upscale_image(model, photo, tile=48), dtype=np.float64)
    assert whole.shape == (300, 400, 3)
    mse = np.mean((whole - tiled) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= 45


def test_a_window_upscales_the_same_whatever_it_is_batched_with(sr2x, data_dir):
    from latentwire.shared.upscaling import chunk_size, run_windows

    model, _ = sr2x
    with Image.open(data_dir / "bsd100" / "101085.jpg") as image:
        photo = np.asarray(image.convert("RGB"))
    corners = [(0, 0), (300, 140), (150, 70), (200, 0), (40, 120)]
    windows = [np.ascontiguousarray(photo[y : y + 176, x : x + 176]) for y, x in corners]
    # Every model call sees the same batch size and memory layout, padded or not (a
    # channels-last full chunk next to a contiguous padded one rounded differently).
    calls = []
    hook = model.register_forward_pre_hook(
        lambda _, args: calls.append(
            (len(args[0]), args[0].is_contiguous(memory_format=torch.channels_last))
        )
    )
    try:
        alone = run_windows(model, windows[:1])[0]
        # first of a full chunk, last of a padded one, inside a chunk of others
        for crowd, at in ((windows, 0), (windows[::-1], 4), (windows[3:] + windows[:1], 2)):
            np.testing.assert_array_equal(run_windows(model, crowd)[at], alone)
    finally:
        hook.remove()
    assert set(calls) == {(chunk_size(torch.device("cpu")), True)}


def test_upscalers_run_in_fp32_on_a_cpu_and_refuse_half_precision_there():
    from latentwire.shared.upscaling import serving_dtype

    cpu = torch.device("cpu")
    assert serving_dtype(cpu) == serving_dtype(cpu, "fp32") == torch.float32
    assert serving_dtype(torch.device("cuda"), "auto") == torch.float16
    assert serving_dtype(torch.device("cuda"), "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="needs a CUDA device"):
        serving_dtype(cpu, "fp16")
    with pytest.raises(ValueError, match="expected auto or one of"):
        serving_dtype(cpu, "fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda_upscales_set5_as_well_as_fp32(sr2x, data_dir):
    """The precision ``auto`` picks on CUDA keeps the shipped model's quality on Set5."""
    import copy

    from latentwire.shared.upscaling import serving_dtype
    from latentwire.training.recipes.sr import evaluate_sr

    model, _ = sr2x
    cuda = torch.device("cuda")
    full = copy.deepcopy(model).to(cuda)
    half = copy.deepcopy(model).to(cuda, serving_dtype(cuda))
    assert next(half.parameters()).dtype == torch.float16
    scores = evaluate_sr(
        image_files(data_dir / "set5"),
        2,
        {"fp32": lambda im: upscale_image(full, im), "fp16": lambda im: upscale_image(half, im)},
    )
    assert abs(scores["fp16"]["psnr_y_db"] - scores["fp32"]["psnr_y_db"]) < 0.02


def test_upscale_keeps_mode_and_alpha(sr2x):
    model, _ = sr2x
    gray = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (30, 1)), "L")
    assert upscale_image(model, gray).mode == "L"
    rgba = Image.new("RGBA", (20, 16), (200, 30, 30, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 10, 16))
    out = upscale_image(model, rgba)
    assert out.mode == "RGBA" and out.size == (40, 32)
    alpha = np.asarray(out)[..., 3]
    assert alpha[:, :16].max() < 40 and alpha[:, 24:].min() > 215


def test_upscale_cli_on_real_files(tmp_path, data_dir):
    sources = [data_dir / "set5" / "bird.png", data_dir / "bsd100" / "101085.jpg"]
    subprocess.run([*CLI, "upscale", *map(str, sources), "-o", str(tmp_path)], check=True)
    for src in sources:
        with Image.open(src) as a, Image.open(tmp_path / f"{src.stem}_x2.png") as b:
            assert b.size == (2 * a.width, 2 * a.height)


def test_eval_reproduces_the_shipped_figure(sr2x, tmp_path):
    _, manifest = sr2x
    out = subprocess.run(
        [*CLI, "eval", "sr", "--model", "sr2x", "--dataset", "set5", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    measured = json.loads(out)
    recorded = manifest.metrics["set5"]
    assert measured["model"]["psnr_y_db"] == pytest.approx(recorded["psnr_y_db_model"], abs=1e-3)
    assert measured["bicubic"]["psnr_y_db"] == pytest.approx(
        recorded["psnr_y_db_bicubic"], abs=1e-3
    )
    assert (tmp_path / "comparison.png").is_file()


def test_downscale_matches_the_library_function(tmp_path, data_dir):
    src = tmp_path / "src"
    src.mkdir()
    with Image.open(data_dir / "set5" / "woman.png") as image:
        image.save(src / "woman.png")
        expected = np.asarray(downscale(image.convert("RGB"), 2))
    subprocess.run([*CLI, "downscale", str(src), "-o", str(tmp_path / "lr")], check=True)
    with Image.open(tmp_path / "lr" / "woman.png") as made:
        np.testing.assert_array_equal(np.asarray(made), expected)
