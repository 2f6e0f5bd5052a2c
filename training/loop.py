"""The training loop every recipe shares: data order, optimizer, checkpoints, resume, DDP.

A recipe builds its data sets and model, then calls :func:`fit` with two functions: the
loss of one batch, and the test-set evaluation run after every epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import platform
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from latentwire.shared.models import config_to_dict
from latentwire.training import distributed
from latentwire.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)

log = logging.getLogger("latentwire.train")

Batch = torch.Tensor | tuple[torch.Tensor, ...]  # images, or (input, target) pairs
BatchLoss = Callable[[nn.Module, Batch], torch.Tensor]
Evaluate = Callable[[nn.Module, Dataset], dict[str, float]]


@dataclass
class LoopConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_drop: int | None = None  # after this many epochs, train with lr / 10
    clip_grad: float | None = None  # clip the gradient's global norm to this
    seed: int = 0
    limit: int | None = None  # train on the first N images only (quick runs, tests)
    workers: int = 0
    out: str = "runs/train"
    keep_last: int = 3  # checkpoints kept in the run folder (0: all)
    resume: bool = False
    device: str = "auto"
    progress: bool = True
    command: str = ""  # the command line that started the run, for the manifest


def add_loop_arguments(parser: argparse.ArgumentParser, defaults: LoopConfig) -> None:
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument(
        "--lr-drop", type=int, default=defaults.lr_drop, help="after this many epochs, lr / 10"
    )
    parser.add_argument(
        "--clip-grad", type=float, default=defaults.clip_grad, help="max gradient norm"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="loader processes")
    parser.add_argument("--out", default=defaults.out, help="run folder for checkpoints, plots")
    parser.add_argument(
        "--keep-last",
        type=int,
        default=defaults.keep_last,
        help="checkpoints kept in the run folder, the newest (0: every epoch's)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def config_from_args(config_class: type, args: argparse.Namespace, command: list[str]) -> Any:
    fields = {f.name for f in dataclasses.fields(config_class)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    # A resumed run ends with the weights of an uninterrupted one, so the command that
    # reproduces them is the same without --resume.
    return config_class(**values, command=shlex.join(a for a in command if a != "--resume"))


def to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, (tuple, list)):
        return tuple(t.to(device, non_blocking=True) for t in batch)
    return batch.to(device, non_blocking=True)


def weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def fit(
    cfg: LoopConfig,
    runtime: distributed.Runtime,
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    batch_loss: BatchLoss,
    evaluate: Evaluate,
) -> nn.Module:
    """Train ``model`` for ``cfg.epochs`` (resuming if asked); returns it unwrapped, in eval mode.

    After every epoch the main process evaluates, appends to the history and writes a
    checkpoint; ``evaluate`` must return a ``loss`` entry comparable to the training loss.
    """
    out = Path(cfg.out)
    if runtime.device.type == "cpu":
        # Subnormal floats (GDN squares small activations) make CPU arithmetic several
        # times slower: 1.09 -> 0.47 s a step for a photo codec. Flushing them to zero
        # changes nothing above 1e-38.
        torch.set_flush_denormal(True)
    model.to(runtime.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: dict[str, list[float]] = {"train": [], "test": []}
    start_epoch, seconds = 0, 0.0

    checkpoint_path = latest_checkpoint(out) if cfg.resume else None
    if checkpoint_path is not None:
        state = load_checkpoint(checkpoint_path, map_location=runtime.device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, start_epoch, seconds = state["history"], state["epoch"], state["seconds"]
        set_rng_state(state["rng"])
        if runtime.is_main:
            log.info("resumed from %s (epoch %d)", checkpoint_path, start_epoch)

    trained = DistributedDataParallel(model) if runtime.distributed else model
    # The sampler's order depends only on (seed, epoch), so a resumed run sees the same data.
    sampler = DistributedSampler(
        train_set, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True, seed=cfg.seed
    )
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=runtime.device.type == "cuda",
    )
    saved_config = {
        **dataclasses.asdict(cfg),
        "model": {"family": model.family, "config": config_to_dict(model.config)},
    }

    resumed_at = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        began = time.perf_counter()
        sampler.set_epoch(epoch)
        # A function of the epoch alone, so a resumed run continues the same schedule.
        dropped = cfg.lr_drop is not None and epoch >= cfg.lr_drop
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr / 10 if dropped else cfg.lr
        if hasattr(train_set, "set_epoch"):  # data sets that draw fresh samples every epoch
            train_set.set_epoch(epoch)
        trained.train()
        # Summed on the device: reading a loss every step would make the CPU wait for the GPU.
        total, count = torch.zeros((), device=runtime.device), 0
        show = cfg.progress and runtime.is_main
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show, leave=False)
        for batch in bar:
            batch = to_device(batch, runtime.device)
            loss = batch_loss(trained, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad is not None:
                nn.utils.clip_grad_norm_(trained.parameters(), cfg.clip_grad)
            optimizer.step()
            size = len(batch[0] if isinstance(batch, (tuple, list)) else batch)
            total += loss.detach() * size
            count += size
            if show:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        seconds += time.perf_counter() - began

        if runtime.is_main:
            model.eval()
            test = evaluate(model, test_set)
            history["train"].append(total.item() / count)
            history["test"].append(test["loss"])
            path = save_checkpoint(
                out,
                epoch + 1,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                    "seconds": seconds,
                    "hardware": hardware(),
                    "config": saved_config,
                },
            )
            prune_checkpoints(out, cfg.keep_last)
            shown = "  ".join(f"test {k} {v:.4g}" for k, v in test.items() if k != "test_images")
            done = epoch + 1 - start_epoch
            left = (cfg.epochs - epoch - 1) * (time.perf_counter() - resumed_at) / done
            log.info(
                "epoch %d/%d  train loss %.5g  %s  -> %s  (ETA %s)",
                epoch + 1,
                cfg.epochs,
                history["train"][-1],
                shown,
                path.name,
                f"{left / 60:.1f} min" if left >= 60 else f"{left:.0f} s",
            )
        distributed.barrier(runtime)

    model.eval()
    log.info("rank %d final weights sha256 %s", runtime.rank, weights_digest(model))
    return model


def configure_logging(log_file: Path | None = None) -> None:
    """latentwire's own messages on the console, other libraries' only from warnings up
    (the ONNX exporter's notes on its passes are not for a user); with ``log_file``,
    every message of INFO and up in that file as well."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(getattr(h, "latentwire_console", False) for h in root.handlers):
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console.addFilter(lambda r: r.name.startswith("latentwire") or r.levelno >= logging.WARNING)
        console.latentwire_console = True  # type: ignore[attr-defined]
        root.addHandler(console)
    for old in [h for h in root.handlers if getattr(h, "latentwire_details", False)]:
        root.removeHandler(old)  # one run's details file at a time
        old.close()
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        details = logging.FileHandler(log_file)
        details.latentwire_details = True  # type: ignore[attr-defined]
        details.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(details)


def stop_on_sigterm() -> None:
    """End the process on SIGTERM (``kill``, a scheduler's time limit) as on Ctrl-C, by an
    exception: a checkpoint being written is then removed, not left half-written beside
    the others, and ``--resume`` continues from the last whole epoch."""

    def stop(signum: int, frame: Any) -> None:
        log.warning("stopped by SIGTERM; --resume continues from the last whole epoch")
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def recipe_main(
    name: str,
    doc: str,
    config_class: type,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    train: Callable[[Any], nn.Module],
    argv: list[str] | None = None,
) -> None:
    """``python -m latentwire.training.<recipe>``: what torchrun starts on every rank."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=f"latentwire train {name}", description=doc)
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    stop_on_sigterm()
    train(config_from_args(config_class, args, ["latentwire", "train", name, *argv]))
