"""Turn a training checkpoint into a model package.

Every package has ``model.safetensors`` and ``manifest.json`` (family, config, data set,
the exact training command, hardware, time, and test-set metrics measured at export).
A codec package adds ``decoder.msgpack``: the ONNX synthesis and the integer symbol
tables, computed here once, so a package is always ready to code.
"""

from __future__ import annotations

import datetime
import io
import json
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save as safetensors_bytes
from torch import nn

from latentwire.client.decoding import Decoder
from latentwire.shared.decoder_package import DECODER_NAME, DecoderPackage
from latentwire.shared.models import ImageShape, config_to_dict, get_model, make_config
from latentwire.shared.models.codec import encode_any_size, encode_images
from latentwire.shared.package import (
    MANIFEST_NAME,
    WEIGHTS_NAME,
    Manifest,
    file_sha256,
    write_atomically,
)
from latentwire.shared.wire import parse
from latentwire.training.checkpoint import load_checkpoint
from latentwire.training.codec import lambda_of
from latentwire.training.data import load_datasets
from latentwire.training.evaluate import evaluate_reconstruction, psnr, ssim_per_image
from latentwire.training.sr_data import find_folders

# Contexts of counted tables (FactorizedPrior.counted_tables): q6's test-set payload with 4,
# 8 and 16 contexts measured 155.0, 151.9 and 151.6 B; 8 keeps the tables small.
TABLE_CONTEXTS = 8


def model_from_checkpoint(checkpoint: str | Path) -> tuple[nn.Module, dict[str, Any], dict]:
    """(model in eval mode, the run's saved config, the checkpoint) of a training checkpoint."""
    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    model = get_model(cfg["model"]["family"], **cfg["model"]["config"])
    model.load_state_dict(state["model"])
    return model.eval(), cfg, state


def _datasets(cfg: dict[str, Any], data_dir: str | None):
    """(train, test) of the data set a run trained on, as the run saw it."""
    shape = ImageShape(**cfg["model"]["config"]["shape"])
    train_set, test_set, _ = load_datasets(
        cfg["dataset"], data_dir=data_dir or cfg["data_dir"], shape=shape, fit=cfg["fit"]
    )
    return train_set, test_set


def _test_set(cfg: dict[str, Any], data_dir: str | None):
    return _datasets(cfg, data_dir)[1]


def _write_package(
    out_dir: Path, model: nn.Module, cfg: dict, state: dict, **fields: Any
) -> Manifest:
    """Weights, then the manifest last: a folder with a manifest is a complete package."""
    weights = safetensors_bytes({k: v.contiguous() for k, v in model.state_dict().items()})
    write_atomically(out_dir / WEIGHTS_NAME, weights)
    family = cfg["model"]["family"]
    training = {
        key: cfg.get(key) for key in ("command", "batch_size", "lr", "seed", "quality", "lmbda")
    }
    if family == "factorized" and training["lmbda"] is None:  # the quality's default lambda
        training["lmbda"] = lambda_of(cfg["dataset"], cfg["quality"])
    training.update(
        epochs=state["epoch"], seconds=round(state["seconds"], 1), hardware=state["hardware"]
    )
    training["init"] = _init_provenance(cfg.get("init"))
    manifest = Manifest(
        family=family,
        # through JSON so tuples are stored as the lists a manifest reads back
        config=json.loads(json.dumps(config_to_dict(make_config(family, cfg["model"]["config"])))),
        dataset=cfg.get("dataset") or cfg["data"],  # SR runs train on photo folders
        training={k: v for k, v in training.items() if v is not None},
        weights_sha256=file_sha256(out_dir / WEIGHTS_NAME),
        parameters=sum(p.numel() for p in model.parameters()),
        created=datetime.date.today().isoformat(),
        **fields,
    )
    write_atomically(out_dir / MANIFEST_NAME, manifest.to_json().encode())
    return manifest


def _init_provenance(init: str | None) -> dict[str, Any] | None:
    """How the checkpoint a run started from (``--init``) was trained, and so on back: a
    fine-tuned model's manifest then holds every command and second that made it."""
    if not init or not Path(init).is_file():
        return None
    state = load_checkpoint(init)
    cfg = state["config"]
    found = {
        "checkpoint": Path(init).name,
        "command": cfg.get("command"),
        "epochs": state["epoch"],
        "seconds": round(state["seconds"], 1),
        "hardware": state["hardware"],
        "init": _init_provenance(cfg.get("init")),
    }
    return {k: v for k, v in found.items() if v is not None}


def export_autoencoder(
    checkpoint: str | Path,
    out_dir: str | Path,
    model_id: str | None = None,
    data_dir: str | None = None,
) -> Manifest:
    """A prototype autoencoder's package, with test-set MSE/PSNR/SSIM measured now."""
    model, cfg, state = model_from_checkpoint(checkpoint)
    metrics = evaluate_reconstruction(model, _test_set(cfg, data_dir), torch.device("cpu"))
    return _write_package(
        Path(out_dir),
        model,
        cfg,
        state,
        id=model_id or f"{cfg['dataset']}-{cfg['model']['family']}",
        metrics={k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()},
    )


def export_codec(
    checkpoint: str | Path, out_dir: str | Path, model_id: str, data_dir: str | None = None
) -> Manifest:
    """A codec's package. Its metrics come from real IRs decoded by the light client (the
    sizes and quality a user gets): the whole test set for small-image codecs, Kodak for
    any-size photo codecs."""
    model, cfg, state = model_from_checkpoint(checkpoint)
    out_dir = Path(out_dir)
    shape = ImageShape(**cfg["model"]["config"]["shape"])
    # A latent to trace the ONNX export with (its spatial size stays dynamic).
    example = (model.latent_shape[0], 4, 4) if model.any_size else model.latent_shape
    if model.any_size:  # trained on random crops: no fixed set of latents to count
        tables = model.prior.tables()
        made = {"from": "the learned density"}
    else:
        latents = _training_latents(model, cfg, data_dir)
        tables = model.prior.counted_tables(latents, TABLE_CONTEXTS)
        made = {"from": "counted", "training_images": len(latents), "contexts": TABLE_CONTEXTS}
    decoder = DecoderPackage(
        model=model_id,
        image_shape=(shape.channels, 0, 0) if model.any_size else astuple(shape),
        latent_shape=model.latent_shape,
        stride=model.stride,
        tables=tables,
        onnx=synthesis_to_onnx(model.synthesis, example),
    )
    write_atomically(out_dir / DECODER_NAME, decoder.to_bytes())
    decoder = DecoderPackage.from_bytes((out_dir / DECODER_NAME).read_bytes())  # sets digest
    if model.any_size:
        metrics = photo_codec_metrics(model, decoder, find_folders("kodak", data_dir)[0])
    else:
        metrics = _small_codec_metrics(model, decoder, _test_set(cfg, data_dir), shape)
    return _write_package(
        out_dir,
        model,
        cfg,
        state,
        id=model_id,
        task="codec",
        quality=cfg.get("quality"),
        decoder_digest=decoder.digest,
        tables=made,
        metrics=metrics,
    )


def _training_latents(model, cfg: dict, data_dir: str | None) -> np.ndarray:
    """The rounded latents of the run's training set (cut to ``--limit`` as the run was)."""
    train_set = _datasets(cfg, data_dir)[0]
    if cfg.get("limit"):
        train_set = torch.utils.data.Subset(train_set, range(min(cfg["limit"], len(train_set))))
    loader = torch.utils.data.DataLoader(train_set, batch_size=1000)
    return np.concatenate([model.quantized_latent(x) for x in loader])


def _small_codec_metrics(model, decoder: DecoderPackage, test_set, shape: ImageShape) -> dict:
    light = Decoder(decoder)
    total_bytes = psnr_sum = ssim_sum = 0.0
    count = 0
    for x in torch.utils.data.DataLoader(test_set, batch_size=500):
        irs = encode_images(model, decoder, x)
        images = light.decode([parse(ir) for ir in irs])
        decoded = torch.from_numpy(np.stack(images)).float().div(255).reshape(x.shape)
        original = (x + 1) / 2
        total_bytes += sum(len(ir) for ir in irs)
        psnr_sum += psnr(original, decoded).sum().item()
        ssim_sum += ssim_per_image(original, decoded).sum().item()
        count += len(x)
    return {
        "test_images": count,
        "ir_bytes": round(total_bytes / count, 2),
        "bpp": round(total_bytes * 8 / count / (shape.height * shape.width), 4),
        "psnr_db": round(psnr_sum / count, 3),
        "ssim": round(ssim_sum / count, 4),
    }


def photo_codec_metrics(model, decoder: DecoderPackage, folder: Path) -> dict:
    """Mean bits per pixel (whole IRs) and RGB PSNR over the photos of ``folder``."""
    from latentwire.training.data import image_files

    light = Decoder(decoder)
    bpp = psnr_sum = 0.0
    files = image_files(folder)
    for path in files:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 127.5 - 1
        ir = encode_any_size(model, decoder, x)
        decoded = light.decode([parse(ir)])[0]
        bpp += len(ir) * 8 / (pixels.shape[0] * pixels.shape[1])
        mse = np.mean((decoded.astype(np.float64) - pixels) ** 2)
        psnr_sum += 10 * np.log10(255**2 / mse)
    return {
        "test_set": folder.name,
        "test_images": len(files),
        "bpp": round(bpp / len(files), 4),
        "psnr_db": round(psnr_sum / len(files), 3),
    }


def synthesis_to_onnx(synthesis: nn.Module, latent_shape: tuple[int, int, int]) -> bytes:
    """The synthesis transform as ONNX, with dynamic batch and spatial sizes.

    Parameters that are only used through a function of themselves (GDN's squared
    reparametrization) are folded into constants by the exporter's optimizer.
    """
    from torch.export import Dim

    program = torch.onnx.export(
        synthesis.eval(),
        (torch.zeros(2, *latent_shape),),
        input_names=["latent"],
        output_names=["image"],
        dynamic_shapes=({0: Dim("n"), 2: Dim("h"), 3: Dim("w")},),
        opset_version=18,
        dynamo=True,
        verbose=False,
    )
    program.optimize()
    buffer = io.BytesIO()
    program.save(buffer)
    return buffer.getvalue()


def export_upscaler(
    checkpoint: str | Path,
    out_dir: str | Path,
    model_id: str = "sr2x",
    data_dir: str | None = None,
    test_sets: tuple[str, ...] = ("set5", "bsd100"),
) -> Manifest:
    """A super-resolution generator's package, with Y-channel PSNR/SSIM on the test sets
    (model and bicubic, the papers' protocol) measured now."""
    from latentwire.shared.upscaling import upscale_image
    from latentwire.training.data import image_files
    from latentwire.training.sr_data import find_folders
    from latentwire.training.sr_eval import bicubic, evaluate_sr

    model, cfg, state = model_from_checkpoint(checkpoint)
    scale = model.config.scale
    metrics: dict[str, Any] = {}
    for name in test_sets:
        (folder,) = find_folders(name, data_dir or cfg.get("data_dir"))
        files = image_files(folder)
        # Whole images in one call: tiles give the same pixels (tested), only slower.
        methods = {"model": lambda im: upscale_image(model, im, None), "bicubic": bicubic(scale)}
        result = evaluate_sr(files, scale, methods)
        metrics[name] = {
            "images": len(files),
            **{f"{k}_{m}": round(v, 4) for m, r in result.items() for k, v in r.items()},
        }
    return _write_package(
        Path(out_dir), model, cfg, state, id=model_id, task="upscale", metrics=metrics
    )


def export_classifier(
    checkpoint: str | Path,
    out_dir: str | Path,
    model_id: str | None = None,
    data_dir: str | None = None,
) -> Manifest:
    """The scoring classifier's package, with its test-set accuracy measured now."""
    from latentwire.training.classifier import accuracy

    model, cfg, state = model_from_checkpoint(checkpoint)
    _, test_set = labelled_sets(cfg, data_dir)
    metrics = accuracy(model, test_set, torch.device("cpu"))
    return _write_package(
        Path(out_dir),
        model,
        cfg,
        state,
        id=model_id or f"{cfg['dataset']}-classifier",
        task="classify",
        metrics={"test_accuracy": round(metrics["accuracy"], 4), "test_images": len(test_set)},
    )


def export_generator(
    checkpoint: str | Path,
    out_dir: str | Path,
    model_id: str | None = None,
    data_dir: str | None = None,
    classifier: str | None = None,
    n: int = 10_000,
) -> Manifest:
    """A GAN/DCGAN generator's package, scored now (``training/gan_score.py``) with the
    data set's classifier (default: the shipped ``<dataset>-classifier``)."""
    from latentwire.training.gan_score import load_scorer, score_generator

    model, cfg, state = model_from_checkpoint(checkpoint)
    scorer, scorer_id = load_scorer(classifier or f"{cfg['dataset']}-classifier")
    train_set, test_set = labelled_sets(cfg, data_dir)
    metrics = score_generator(model, scorer, train_set, test_set, n)
    return _write_package(
        Path(out_dir),
        model,
        cfg,
        state,
        id=model_id or f"{cfg['dataset']}-{cfg['model']['family']}",
        task="generate",
        metrics={**metrics, "classifier": scorer_id},
    )


def labelled_sets(cfg: dict[str, Any], data_dir: str | None):
    """(train, test) of a run's data set as (image in [0, 1], label) pairs."""
    from latentwire.training.gan import LabelledImages

    train_set, test_set = _datasets(cfg, data_dir)
    return LabelledImages(train_set), LabelledImages(test_set)
