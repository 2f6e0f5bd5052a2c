"""The loop the adversarial recipes share (SRGAN, GAN, DCGAN): a generator and a
discriminator, each with its own optimizer, trained by a recipe's step function.

What it owns is what :func:`latentwire.training.loop.fit` owns for one network: data
order by (seed, epoch), DDP wrapping, per-epoch checkpoints holding both networks and
both optimizers, exact ``--resume``, progress bars, the loss history and curve.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
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
    save_checkpoint,
    set_rng_state,
)
from latentwire.training.loop import LoopConfig, hardware, weights_digest
from latentwire.training.plots import save_loss_curve

log = logging.getLogger("latentwire.train")

# (generator, discriminator, batch) -> (discriminator loss, generator loss); the step
# updates both networks itself (through the optimizers it closes over).
AdversarialStep = Callable[[nn.Module, nn.Module, Any], tuple[float, float]]
# (generator in eval mode, finished epoch) -> figures for the log; a "test" loss among them
# also joins the history and the loss curve.
EndOfEpoch = Callable[[nn.Module, int], dict[str, float]]


def fit_adversarial(
    cfg: LoopConfig,
    runtime: distributed.Runtime,
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    train_set: Dataset,
    step: AdversarialStep,
    end_of_epoch: EndOfEpoch,
    drop_last: bool = False,
) -> nn.Module:
    """Train for ``cfg.epochs`` (resuming if asked); returns the generator in eval mode."""
    device, out = runtime.device, Path(cfg.out)
    history: dict[str, list[float]] = {"train": [], "d": []}
    start_epoch, seconds = 0, 0.0
    checkpoint = latest_checkpoint(out) if cfg.resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, map_location=device)
        generator.load_state_dict(state["model"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["optimizer"])
        opt_d.load_state_dict(state["optimizer_d"])
        history, start_epoch, seconds = state["history"], state["epoch"], state["seconds"]
        set_rng_state(state["rng"])
        log.info("resumed from %s (epoch %d)", checkpoint, start_epoch)

    g, d = generator, discriminator
    if runtime.distributed:
        g, d = DistributedDataParallel(generator), DistributedDataParallel(discriminator)
    sampler = DistributedSampler(
        train_set, num_replicas=runtime.world_size, rank=runtime.rank, seed=cfg.seed
    )
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
    )
    saved_config = {
        **dataclasses.asdict(cfg),
        "model": {"family": generator.family, "config": config_to_dict(generator.config)},
        "discriminator": {
            "family": discriminator.family,
            "config": config_to_dict(discriminator.config),
        },
    }

    for epoch in range(start_epoch, cfg.epochs):
        began = time.perf_counter()
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):  # data sets that draw fresh samples every epoch
            train_set.set_epoch(epoch)
        g.train()
        d.train()
        g_total = d_total = 0.0
        steps = 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not (cfg.progress and runtime.is_main),
        )
        for batch in bar:
            d_loss, g_loss = step(g, d, batch)
            d_total += d_loss
            g_total += g_loss
            steps += 1
            bar.set_postfix(d=f"{d_loss:.3f}", g=f"{g_loss:.4f}")
        seconds += time.perf_counter() - began

        if runtime.is_main:
            generator.eval()
            history["train"].append(g_total / max(steps, 1))
            history["d"].append(d_total / max(steps, 1))
            figures = end_of_epoch(generator, epoch + 1)
            if "test" in figures:
                history.setdefault("test", []).append(figures["test"])
            path = save_checkpoint(
                out,
                epoch + 1,
                {
                    "model": generator.state_dict(),
                    "discriminator": discriminator.state_dict(),
                    "optimizer": opt_g.state_dict(),
                    "optimizer_d": opt_d.state_dict(),
                    "history": history,
                    "seconds": seconds,
                    "hardware": hardware(),
                    "config": saved_config,
                },
            )
            shown = "  ".join(f"{k} {v:.4g}" for k, v in figures.items())
            log.info(
                "epoch %d/%d  d %.4g  g %.5g  %s  %.0f s -> %s",
                epoch + 1,
                cfg.epochs,
                history["d"][-1],
                history["train"][-1],
                shown,
                seconds,
                path.name,
            )
        distributed.barrier(runtime)

    generator.eval()
    if runtime.is_main:
        save_loss_curve(history, out / "loss_curve.png")
    log.info("rank %d final weights sha256 %s", runtime.rank, weights_digest(generator))
    return generator
