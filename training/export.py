"""Turn a training checkpoint into a model package; the recipe that trained it measures it.

Every package has ``model.safetensors`` and ``manifest.json`` (family, config, pixel
range, data set, the exact training command, hardware, time, and the metrics its recipe
measures at export). A codec's package adds ``decoder.msgpack.gz`` (the ONNX synthesis and
the integer symbol tables, made here once), so a package is always ready to code. The
manifest is written last: a folder with a manifest is a complete package.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from latentwire.shared.codec import Codec
from latentwire.shared.decoder_package import MAX_DEPLOYMENT_CODE, write_decoder
from latentwire.shared.models import config_to_dict, make_config
from latentwire.shared.package import (
    MANIFEST_NAME,
    WEIGHTS_NAME,
    Manifest,
    PackageError,
    file_sha256,
    write_atomically,
)
from latentwire.training.checkpoint import load_checkpoint, model_from_checkpoint, package_record
from latentwire.training.recipes import recipe_of


def export(
    checkpoint: str | Path,
    out_dir: str | Path,
    model_id: str | None = None,
    data_dir: str | None = None,
    code: int | None = None,
    **options: Any,
) -> Manifest:
    """The package of ``checkpoint`` in ``out_dir``; a codec's IRs name it by ``code``
    (a deployment's own model code, 1 to 32) where given, else by its id; ``options`` go
    to the recipe's ``metrics`` (e.g. ``classifier=`` for a generator's score)."""
    model, cfg, state = model_from_checkpoint(checkpoint)
    family = cfg["model"]["family"]
    recipe = recipe_of(family)
    if code is not None and not (
        hasattr(recipe, "decoder_package") and 1 <= code <= MAX_DEPLOYMENT_CODE
    ):
        raise ValueError(f"--code is for codecs, 1 to {MAX_DEPLOYMENT_CODE}; not {code}")
    out_dir = Path(out_dir)
    # Through JSON, so that tuples are stored as the lists a manifest reads back.
    config = json.loads(json.dumps(config_to_dict(make_config(family, cfg["model"]["config"]))))
    manifest = Manifest(
        id=model_id or recipe.default_id(cfg),
        family=family,
        config=config,
        dataset=cfg.get("dataset") or cfg["data"],  # SR runs train on photo folders
        task=recipe.TASK,
        pixel_range=recipe.PIXELS.to_json(),
        quality=cfg.get("quality") if recipe.TASK == "codec" else None,
        training=_training(cfg, state, recipe.record(cfg) if hasattr(recipe, "record") else {}),
        parameters=sum(p.numel() for p in model.parameters()),
        created=datetime.date.today().isoformat(),
    )
    write_atomically(
        out_dir / WEIGHTS_NAME,
        safetensors_bytes({k: v.contiguous() for k, v in model.state_dict().items()}),
    )
    manifest.weights_sha256 = file_sha256(out_dir / WEIGHTS_NAME)
    measured: Any = model
    if hasattr(recipe, "decoder_package"):
        package, manifest.tables = recipe.decoder_package(model, cfg, data_dir, manifest.id)
        if code is not None:
            package = dataclasses.replace(package, code=code)
            manifest.code = code
        data = package.to_bytes()
        write_decoder(out_dir, data)
        codec = Codec(model, manifest, data, torch.device("cpu"))
        manifest.decoder_digest = codec.package.digest
        measured = codec  # measured as a user gets it: IRs through the light client
    manifest.metrics = recipe.metrics(measured, cfg, data_dir, **options)
    write_atomically(out_dir / MANIFEST_NAME, manifest.to_json().encode())
    return manifest


def _training(cfg: dict[str, Any], state: dict[str, Any], extra: dict[str, Any]) -> dict:
    training = {key: cfg.get(key) for key in ("command", "batch_size", "lr", "seed", "quality")}
    training.update(extra)
    training.update(
        epochs=state["epoch"], seconds=round(state["seconds"], 1), hardware=state["hardware"]
    )
    training["init"] = _init_provenance(cfg.get("init"), cfg.get("init_package"))
    return {k: v for k, v in training.items() if v is not None}


def _init_provenance(init: str | None, package: dict | None = None) -> dict[str, Any] | None:
    """How the checkpoint a run started from (``--init``) was trained, and so on back: a
    fine-tuned model's manifest then holds every command and second that made it. A
    package's history is the one the run recorded when it started (``package``), else
    the package's manifest as it is now."""
    if not init:
        return None
    if package:
        return package
    if not Path(init).is_file():  # a model package: its manifest holds its own history
        try:
            return package_record(init)
        except PackageError:
            return None
    state = load_checkpoint(init)
    cfg = state["config"]
    found = {
        "checkpoint": Path(init).name,
        "command": cfg.get("command"),
        "epochs": state["epoch"],
        "seconds": round(state["seconds"], 1),
        "hardware": state["hardware"],
        "init": _init_provenance(cfg.get("init"), cfg.get("init_package")),
    }
    return {k: v for k, v in found.items() if v is not None}


def summary(manifest: Manifest) -> str:
    """The one line ``latentwire export`` prints."""
    return f"{manifest.id}: {recipe_of(manifest.family).summary(manifest.metrics)}"
