"""Turn a training checkpoint into a model package: safetensors weights + JSON manifest."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

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
