"""Turn a training checkpoint into a model package: safetensors weights + JSON manifest."""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from latentwire.shared.models import ImageShape, config_to_dict, get_model, make_config
from latentwire.shared.package import (
    MANIFEST_NAME,
    WEIGHTS_NAME,
    Manifest,
    file_sha256,
    write_atomically,
)
from latentwire.training.checkpoint import load_checkpoint
from latentwire.training.data import load_datasets
from latentwire.training.evaluate import evaluate_reconstruction


def export_autoencoder(
    checkpoint: str | Path,
    out_dir: str | Path,
    model_id: str | None = None,
    data_dir: str | None = None,
) -> Manifest:
    """Write ``out_dir/{manifest.json,model.safetensors}`` with test-set metrics measured now."""
    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    family, config = cfg["model"]["family"], cfg["model"]["config"]
    model = get_model(family, **config)
    model.load_state_dict(state["model"])
    model.eval()

    shape = ImageShape(**config["shape"])
    _, test_set, _ = load_datasets(
        cfg["dataset"], data_dir=data_dir or cfg["data_dir"], shape=shape, fit=cfg["fit"]
    )
    metrics = evaluate_reconstruction(model, test_set, torch.device("cpu"))

    out_dir = Path(out_dir)
    weights = safetensors_bytes({k: v.contiguous() for k, v in model.state_dict().items()})
    write_atomically(out_dir / WEIGHTS_NAME, weights)
    manifest = Manifest(
        id=model_id or f"{cfg['dataset']}-{family}",
        family=family,
        # through JSON so tuples are stored as the lists a manifest reads back
        config=json.loads(json.dumps(config_to_dict(make_config(family, config)))),
        dataset=cfg["dataset"],
        training={
            "command": cfg["command"],
            "epochs": state["epoch"],
            "batch_size": cfg["batch_size"],
            "lr": cfg["lr"],
            "seed": cfg["seed"],
            "seconds": round(state["seconds"], 1),
            "hardware": state["hardware"],
        },
        metrics={k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()},
        weights_sha256=file_sha256(out_dir / WEIGHTS_NAME),
        parameters=sum(p.numel() for p in model.parameters()),
        created=datetime.date.today().isoformat(),
    )
    write_atomically(out_dir / MANIFEST_NAME, manifest.to_json().encode())
    return manifest


def export_codec(
    checkpoint: str | Path,
    out_dir: str | Path,
    model_id: str,
    data_dir: str | None = None,
    quality: int | None = None,
) -> Manifest:
    """Write a codec package: weights, the decoder package (ONNX synthesis + integer tables)
    and a manifest whose metrics are measured with real IRs decoded by the light client."""
    from latentwire.client.decoding import Decoder
    from latentwire.shared.decoder_package import DECODER_NAME, DecoderPackage
    from latentwire.shared.models.codec import encode_images
    from latentwire.shared.wire import parse
    from latentwire.training.evaluate import psnr, ssim_per_image

    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    family, config = cfg["model"]["family"], cfg["model"]["config"]
    model = get_model(family, **config)
    model.load_state_dict(state["model"])
    model.eval()
    shape = ImageShape(**config["shape"])

    m, h, w = model.latent_shape
    onnx_bytes = synthesis_to_onnx(model.synthesis, (m, h, w))
    decoder = DecoderPackage(
        model=model_id,
        image_shape=(shape.channels, shape.height, shape.width),
        latent_shape=(m, h, w),
        stride=model.stride,
        tables=model.prior.tables(),
        onnx=onnx_bytes,
    )
    out_dir = Path(out_dir)
    write_atomically(out_dir / DECODER_NAME, decoder.to_bytes())
    decoder = DecoderPackage.from_bytes((out_dir / DECODER_NAME).read_bytes())

    # Real bytes and real decodes: the figures a user gets.
    _, test_set, _ = load_datasets(cfg["dataset"], data_dir=data_dir or cfg["data_dir"])
    light = Decoder(decoder)
    total_bytes = psnr_sum = ssim_sum = 0.0
    count = 0
    for x in torch.utils.data.DataLoader(test_set, batch_size=500):
        irs = encode_images(model, decoder, x)
        images = light.decode([parse(ir) for ir in irs])
        y = torch.from_numpy(np.stack(images)).float().div(255).reshape(x.shape)
        original = (x + 1) / 2
        total_bytes += sum(len(ir) for ir in irs)
        psnr_sum += psnr(original, y).sum().item()
        ssim_sum += ssim_per_image(original, y).sum().item()
        count += len(x)

    weights = safetensors_bytes({k: v.contiguous() for k, v in model.state_dict().items()})
    write_atomically(out_dir / WEIGHTS_NAME, weights)
    pixels = shape.height * shape.width
    manifest = Manifest(
        id=model_id,
        family=family,
        config=json.loads(json.dumps(config_to_dict(make_config(family, config)))),
        dataset=cfg["dataset"],
        task="codec",
        quality=quality if quality is not None else cfg.get("quality"),
        decoder_digest=decoder.digest,
        training={
            "command": cfg["command"],
            "epochs": state["epoch"],
            "batch_size": cfg["batch_size"],
            "lr": cfg["lr"],
            "lmbda": cfg.get("lmbda"),
            "seed": cfg["seed"],
            "seconds": round(state["seconds"], 1),
            "hardware": state["hardware"],
        },
        metrics={
            "test_images": count,
            "ir_bytes": round(total_bytes / count, 2),
            "bpp": round(total_bytes * 8 / count / pixels, 4),
            "psnr_db": round(psnr_sum / count, 3),
            "ssim": round(ssim_sum / count, 4),
        },
        weights_sha256=file_sha256(out_dir / WEIGHTS_NAME),
        parameters=sum(p.numel() for p in model.parameters()),
        created=datetime.date.today().isoformat(),
    )
    write_atomically(out_dir / MANIFEST_NAME, manifest.to_json().encode())
    return manifest


def synthesis_to_onnx(synthesis: torch.nn.Module, latent_shape: tuple[int, int, int]) -> bytes:
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
