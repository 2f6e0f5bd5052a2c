"""Checkpoints that resume exactly: model, optimizer, epoch, RNG, history, config.

Written atomically (temp file + rename), so a run killed mid-save leaves the previous
checkpoint intact. Loaded with ``weights_only=True``: plain tensors and containers only.
"""

from __future__ import annotations

import datetime
import io
import random
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentwire.shared.models import get_model
from latentwire.shared.package import write_atomically

_NAME = re.compile(r"^ckpt-\d{4}-\d{2}-\d{2}-epoch(\d{4})\.pt$")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    # Generators take their state as CPU byte tensors; a checkpoint loaded with
    # map_location="cuda" holds them on the GPU.
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_to_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _to_tuple(value: Any) -> Any:
    return tuple(_to_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def checkpoint_name(epoch: int) -> str:
    return f"ckpt-{datetime.date.today().isoformat()}-epoch{epoch:04d}.pt"


def save_checkpoint(run_dir: str | Path, epoch: int, state: dict[str, Any]) -> Path:
    """Save ``state`` (plus RNG) as the checkpoint for a finished ``epoch``."""
    buffer = io.BytesIO()
    torch.save({**state, "epoch": epoch, "rng": rng_state()}, buffer)
    path = Path(run_dir) / checkpoint_name(epoch)
    write_atomically(path, buffer.getvalue())
    return path


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = [(int(m[1]), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints of a run folder (0 keeps them all)."""
    if keep <= 0:
        return
    run_dir = Path(run_dir)
    found = sorted((int(m[1]), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name)))
    for _, path in found[:-keep]:
        path.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise RuntimeError(f"{path}: not a readable latentwire checkpoint ({e})") from None


def model_from_checkpoint(checkpoint: str | Path) -> tuple[nn.Module, dict[str, Any], dict]:
    """(model in eval mode, the run's saved config, the checkpoint) of a training checkpoint."""
    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    model = get_model(cfg["model"]["family"], **cfg["model"]["config"])
    model.load_state_dict(state["model"])
    return model.eval(), cfg, state


def init_weights(init: str | Path) -> dict[str, torch.Tensor]:
    """The weights ``--init`` names: a training checkpoint, or a model package (its folder
    or a shipped model's id), its weights checked against its manifest."""
    if Path(init).is_file():
        return load_checkpoint(init)["model"]
    from safetensors.torch import load_file

    from latentwire.shared.package import package_folder, verified_weights_path

    return load_file(verified_weights_path(package_folder(init)))


def package_record(init: str | Path) -> dict[str, Any] | None:
    """How a model package named by ``--init`` was made (its id, weights and training), as
    the run starts: recorded in the run's config, it survives the package being replaced
    (a new level exported under the same id). None for a checkpoint file."""
    if Path(init).is_file():
        return None
    from latentwire.shared.package import package_folder, read_manifest

    manifest = read_manifest(package_folder(init))
    return {"package": manifest.id, "weights_sha256": manifest.weights_sha256, **manifest.training}
