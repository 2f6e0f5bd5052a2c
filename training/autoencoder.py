"""Recipe: train a prototype autoencoder (mlp, conv, convlinear) with MSE and Adam.

    latentwire train ae --arch conv --dataset mnist --epochs 10
    torchrun --nproc_per_node 2 -m latentwire.training.autoencoder --arch conv ...

A checkpoint is saved after every epoch; ``--resume`` continues from the newest one in
``--out`` exactly where the run stopped (model, optimizer, epoch, RNG, history).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from latentwire.shared.models import ImageShape, config_to_dict, get_model
from latentwire.training import distributed
from latentwire.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from latentwire.training.data import ImageFiles, load_datasets
from latentwire.training.evaluate import (
    evaluate_reconstruction,
    save_loss_curve,
    save_reconstruction_grid,
)

log = logging.getLogger("latentwire.train")


@dataclass
class TrainConfig:
    arch: str = "convlinear"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    channels: int = 1  # folder data sets only
    height: int = 28
    width: int = 28
    fit: str = "center-crop"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    limit: int | None = None  # train on the first N images only (quick runs, tests)
    workers: int = 0
    out: str = "runs/ae"
    resume: bool = False
    device: str = "auto"
    progress: bool = True
    # architecture options
    hidden: int = 64  # mlp
    latent_dim: int = 32  # convlinear
    conv_channels: tuple[int, ...] = (32, 64)  # convlinear
    command: str = ""  # the command line that started the run, for the manifest


def model_config(cfg: TrainConfig, shape: ImageShape) -> dict:
    options = {"shape": shape}
    if cfg.arch == "mlp":
        options["hidden"] = cfg.hidden
    elif cfg.arch == "convlinear":
        options.update(latent_dim=cfg.latent_dim, channels=tuple(cfg.conv_channels))
    return options


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


def train(cfg: TrainConfig) -> nn.Module:
    """Run (or resume) a training run; returns the trained model (unwrapped, on its device)."""
    runtime = distributed.setup(cfg.device)
    try:
        return _train(cfg, runtime)
    finally:
        distributed.teardown(runtime)


def _train(cfg: TrainConfig, runtime: distributed.Runtime) -> nn.Module:
    out = Path(cfg.out)
    shape = ImageShape(cfg.channels, cfg.height, cfg.width)
    train_set, test_set, shape = load_datasets(
        cfg.dataset, data_dir=cfg.data_dir, download=cfg.download, shape=shape, fit=cfg.fit
    )
    if cfg.limit:
        train_set = Subset(train_set, range(min(cfg.limit, len(train_set))))
        test_set = Subset(test_set, range(min(cfg.limit, len(test_set))))

    torch.manual_seed(cfg.seed)
    model_options = model_config(cfg, shape)
    model = get_model(cfg.arch, **model_options).to(runtime.device)
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
        drop_last=False,
    )
    saved_config = {
        **dataclasses.asdict(cfg),
        "model": {"family": cfg.arch, "config": config_to_dict(model.config)},
    }

    for epoch in range(start_epoch, cfg.epochs):
        began = time.perf_counter()
        sampler.set_epoch(epoch)
        trained.train()
        total, count = 0.0, 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (cfg.progress and runtime.is_main),
            leave=False,
        )
        for x in bar:
            x = x.to(runtime.device, non_blocking=True)
            loss = nn.functional.mse_loss(trained(x), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            count += len(x)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        seconds += time.perf_counter() - began

        if runtime.is_main:
            model.eval()
            test = evaluate_reconstruction(model, test_set, runtime.device, progress=False)
            history["train"].append(total / count)
            history["test"].append(test["mse"])
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
            log.info(
                "epoch %d/%d  train mse %.5f  test mse %.5f  test psnr %.2f dB  -> %s",
                epoch + 1,
                cfg.epochs,
                total / count,
                test["mse"],
                test["psnr_db"],
                path.name,
            )
        distributed.barrier(runtime)

    model.eval()
    log.info("rank %d final weights sha256 %s", runtime.rank, weights_digest(model))
    if runtime.is_main:
        metrics = evaluate_reconstruction(model, test_set, runtime.device, progress=cfg.progress)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        save_loss_curve(history, out / "loss_curve.png")
        save_reconstruction_grid(model, test_set, runtime.device, out / "reconstructions.png")
        log.info("test set: %s", json.dumps(metrics))
    return model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--arch", choices=["mlp", "conv", "convlinear"], default=d.arch)
    parser.add_argument("--dataset", default=d.dataset, help="fashion-mnist, mnist or folder:PATH")
    add_data_arguments(parser)
    parser.add_argument("--channels", type=int, choices=[1, 3], default=d.channels)
    parser.add_argument("--height", type=int, default=d.height)
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--fit", choices=ImageFiles.FITS, default=d.fit)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--workers", type=int, default=d.workers, help="data loader processes")
    parser.add_argument("--out", default=d.out, help="run folder for checkpoints and plots")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--hidden", type=int, default=d.hidden, help="mlp: hidden units")
    parser.add_argument("--latent-dim", type=int, default=d.latent_dim, help="convlinear: IR size")
    parser.add_argument(
        "--conv-channels",
        type=lambda s: tuple(int(c) for c in s.split(",")),
        default=d.conv_channels,
        help="convlinear: widths of the strided convs, e.g. 32,64",
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default=None, help="folder with the data sets (default: $LATENTWIRE_DATA)"
    )
    parser.add_argument(
        "--download", action="store_true", help="download with torchvision if not found locally"
    )


def config_from_args(args: argparse.Namespace, argv: list[str]) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    return TrainConfig(**values, command=shlex.join(["latentwire", "train", "ae", *argv]))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="latentwire train ae", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train(config_from_args(args, argv))


if __name__ == "__main__":
    main()
