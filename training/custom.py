"""One command, the whole recipe: a codec for a user's own images of one geometry.

    latentwire train codec --dataset folder:PATH --channels 1 --height 32 --width 32
    latentwire train codec --dataset folder:PATH --channels 3 --height 64 --width 64 \\
        --qualities 1-6 --out runs/mine

For every quality level, in stages that each resume after a kill (run the same command
with ``--resume``):

1. **start**: the shipped codec that codes a sample of the folder's training images at
   the level's lambda for the lowest rate + lambda * distortion, made to the folder's
   channels (luma of an RGB codec, or a gray codec spread to RGB) and geometry (a
   positional prior resampled to the new latent grid). A photo codec brings a scale
   hyperprior; a small-image codec its per-position, per-context prior.
2. **main**: trained on the folder for a schedule sized by its number of images (steps,
   :func:`schedule`), the learning rate / 10 for the last quarter.
3. **hard**: the analysis fixed, the synthesis and the entropy model trained on the
   rounded latent, as it is coded.
4. **export**: a ready package in ``OUT/NAME-qN`` (counted tables for a factorized prior;
   no image size in its IRs), measured on the held-out images the training never saw.

Then the report in ``OUT/report`` (:mod:`latentwire.training.report`): the levels
against WebP, JPEG and AVIF on those held-out images. The plan (levels, starts, steps)
is written first to ``OUT/plan.json``; a resumed run follows it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentwire.shared.images import SIGNED
from latentwire.shared.models import ImageShape
from latentwire.shared.package import (
    MANIFEST_NAME,
    Manifest,
    find_package,
    list_packages,
    read_manifest,
    write_atomically,
)
from latentwire.training.checkpoint import init_weights, latest_checkpoint, load_checkpoint
from latentwire.training.data import load_datasets
from latentwire.training.loop import configure_logging

log = logging.getLogger("latentwire.train")

PLAN_NAME = "plan.json"
# A batch holds about this many pixels (64 images of 32x32), whatever the image size.
BATCH_PIXELS = 64 * 32 * 32
# The main stage sees about this many pixels (100,000 images of 32x32), between PASSES
# passes over the folder: many passes for a small folder, few for a big one. Three times
# as many changed nothing on 2,500 RGB crops of 64x64 (11 passes: 197.1 B at 30.50 dB;
# 33 passes: 196.1 B at 30.48 dB) but the time (180 s -> 463 s).
PIXELS_SEEN = 100_000 * 32 * 32
PASSES = (3, 40)
MAX_STEPS = 20_000
LR, CLIP_GRAD = 5e-4, 1.0  # a start that is trained already: a moderate rate, clipped
HARD_FRACTION = 0.1  # the hard-quantization stage's steps, of the main stage's
HARD_LR = 1e-4
SAMPLE = 256  # training images that pick the start


@dataclass
class Level:
    quality: int
    lmbda: float
    start: str  # the shipped codec it starts from
    start_cost: float  # its rate + lambda * distortion on the sample, bits per pixel
    code: int  # the deployment's model code (docs/ir-format.md)

    @property
    def name(self) -> str:
        return f"q{self.quality}"


@dataclass
class Plan:
    """What a staged run does, fixed when it starts (``plan.json``)."""

    name: str  # the packages' ids are NAME-qN
    dataset: str
    channels: int
    height: int
    width: int
    fit: str
    seed: int
    train_images: int
    test_images: int
    batch_size: int
    main_steps: int
    hard_steps: int
    levels: list[Level] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = json.loads(text)
        return cls(**{**d, "levels": [Level(**v) for v in d["levels"]]})


def parse_qualities(text: str) -> list[int]:
    """``3``, ``1-6`` or ``2,4,6`` -> sorted levels, each one of the recipe's."""
    from latentwire.training.recipes.codec import PHOTO_LAMBDAS

    levels: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"--qualities: {text!r} is not like 3, 1-6 or 2,4,6")
        low, high = int(match[1]), int(match[2] or match[1])
        levels.update(range(low, high + 1))
    if not levels or not levels <= set(PHOTO_LAMBDAS):
        raise ValueError(f"--qualities: levels are {min(PHOTO_LAMBDAS)} to {max(PHOTO_LAMBDAS)}")
    return sorted(levels)


def schedule(train_images: int, height: int, width: int) -> tuple[int, int, int]:
    """(batch size, main-stage steps, hard-stage steps) for a folder of this many
    training images of this size: about ``PIXELS_SEEN`` pixels seen, between ``PASSES``
    passes over the folder, in batches of about ``BATCH_PIXELS`` pixels."""
    pixels = height * width
    batch = min(max(4, min(64, round(BATCH_PIXELS / pixels))), train_images)
    passes = min(max(PIXELS_SEEN / (train_images * pixels), PASSES[0]), PASSES[1])
    steps = min(MAX_STEPS, math.ceil(passes * train_images / batch))
    return batch, steps, max(1, math.ceil(HARD_FRACTION * steps))


def candidates(height: int, width: int) -> list[Manifest]:
    """The shipped codecs a folder of this size can start from (of 1 or 3 channels, either
    made to the folder's): the photo codecs (any size), and small-image codecs where the
    size is a multiple of their stride."""
    found = []
    for folder in list_packages():
        manifest = read_manifest(folder)
        if manifest.task != "codec" or manifest.config["shape"]["channels"] not in (1, 3):
            continue
        fixed_geometry = manifest.family == "factorized" and manifest.config["transform"] == "gdn"
        if fixed_geometry and (height % 4 or width % 4):
            continue
        if manifest.family == "factorized" and not fixed_geometry:
            continue  # the any-size factorized codecs are superseded by the hyperprior ones
        found.append(manifest)
    return found


def stage_config(plan: Plan, level: Level, start_manifest: Any, base: Any) -> Any:
    """The codec recipe's TrainConfig of a level's main stage, from its start codec."""
    from latentwire.training.recipes.codec import TrainConfig

    c = start_manifest.config
    common = dict(
        dataset=plan.dataset,
        data_dir=base.data_dir,
        channels=plan.channels,
        height=plan.height,
        width=plan.width,
        fit=plan.fit,
        quality=level.quality,
        lmbda=level.lmbda,
        batch_size=plan.batch_size,
        lr=LR,
        clip_grad=CLIP_GRAD,
        seed=plan.seed,
        device=base.device,
        workers=base.workers,
        progress=base.progress,
        keep_last=base.keep_last,
        filters=c["filters"],
        latent_channels=c["latent_channels"],
        init=str(find_package(level.start)),  # the shipped one, whatever is in the cwd
        command=base.command,
        one_stage=True,
    )
    if start_manifest.family == "hyperprior":
        prior = "mean-scale" if c.get("mean") else "scale"
        return TrainConfig(
            **common, transform="bmshj2018", prior=prior, hyper_filters=c["hyper_filters"]
        )
    return TrainConfig(
        **common,
        transform=c["transform"],
        positional_prior=True,
        prior_contexts=max(4, c.get("prior_contexts", 1)),
    )


@torch.inference_mode()
def rate_and_distortion(model: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(bits per pixel, MSE on [0, 1]) of the rounded latent on ``x``, in chunks."""
    from latentwire.training.recipes.codec import rate_distortion

    model.eval()
    bits = squared = 0.0
    for chunk in x.split(32):
        rd = rate_distortion(model, chunk, 0.0)
        bits += float(rd.bpp) * len(chunk)
        squared += float(rd.mse) * len(chunk)
    return bits / len(x), squared / len(x)


def measure_starts(plan: Plan, x: torch.Tensor, base: Any) -> dict[str, tuple[float, float]]:
    """(bpp, MSE) on ``x`` of every shipped codec that can start this folder, made to its
    channels and latent grid; a level's cost is then bpp + lambda * 255**2 * MSE."""
    from latentwire.training.recipes.codec import build, initialize

    measured = {}
    shape = ImageShape(plan.channels, plan.height, plan.width)
    for manifest in candidates(plan.height, plan.width):
        cfg = stage_config(plan, Level(3, 0.0, manifest.id, 0.0, 1), manifest, base)
        model = build(cfg, shape)
        initialize(model, init_weights(cfg.init))
        measured[manifest.id] = rate_and_distortion(model, x)
    return measured


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")
# Flags the staged recipe sets itself; given with other values, the run says so.
RECIPE_SETS = ("lmbda", "epochs", "lr", "lr_drop", "batch_size", "init", "prior", "transform",
               "filters", "latent_channels", "positional_prior", "prior_contexts",
               "hard_quantization", "freeze_transforms", "limit", "clip_grad")  # fmt: skip


def check(base: Any, qualities: list[int]) -> None:
    """Clear errors, before any work, for what the staged recipe cannot do."""
    from latentwire.shared.decoder_package import MAX_DEPLOYMENT_CODE
    from latentwire.training.recipes.codec import TrainConfig

    defaults = TrainConfig()
    changed = [f for f in RECIPE_SETS if getattr(base, f) != getattr(defaults, f)]
    if changed:
        flags = ", ".join("--" + f.replace("_", "-") for f in changed)
        raise ValueError(f"the staged recipe sets {flags} itself: add --one-stage to set them")
    if base.channels not in (1, 3):
        raise ValueError("a folder needs --channels 1 or 3 (and --height, --width)")
    last_code = base.code + len(qualities) - 1
    if base.code < 1 or last_code > MAX_DEPLOYMENT_CODE:
        raise ValueError(
            f"--code {base.code} for {len(qualities)} levels needs codes {base.code}-{last_code}; "
            f"a deployment's codes are 1 to {MAX_DEPLOYMENT_CODE}"
        )
    if base.name is not None and not SAFE_NAME.fullmatch(base.name):
        raise ValueError(f"--name {base.name!r}: letters, digits, '.', '_' and '-' only")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("the staged recipe runs in one process: not under torchrun")


def make_plan(base: Any, qualities: list[int]) -> Plan:
    from latentwire.shared.package import PackageError
    from latentwire.training.recipes.codec import lambda_of

    folder = Path(base.dataset.removeprefix("folder:")).resolve()
    dataset = f"folder:{folder}"  # resolved: the run may be resumed from elsewhere
    shape = ImageShape(base.channels, base.height, base.width)
    train_set, test_set, _ = load_datasets(
        dataset, data_dir=base.data_dir, shape=shape, fit=base.fit, pixel_range=SIGNED
    )
    if not len(train_set):
        raise ValueError(f"{folder}: too few images to train on (at least 2)")
    batch, main_steps, hard_steps = schedule(len(train_set), base.height, base.width)
    name = base.name or re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip("-._") or "custom"
    for quality in qualities:
        try:
            find_package(f"{name}-q{quality}")
        except PackageError:
            continue
        raise ValueError(f"{name}-q{quality} is a shipped model's id: choose another --name")
    plan = Plan(
        name=name[:100],
        dataset=dataset,
        channels=base.channels,
        height=base.height,
        width=base.width,
        fit=base.fit,
        seed=base.seed,
        train_images=len(train_set),
        test_images=len(test_set),
        batch_size=batch,
        main_steps=main_steps,
        hard_steps=hard_steps,
    )
    step = max(1, len(train_set) // SAMPLE)
    x = torch.stack([train_set[i] for i in range(0, len(train_set), step)][:SAMPLE])
    measured = measure_starts(plan, x, base)
    for i, quality in enumerate(qualities):
        lmbda = lambda_of(dataset, quality)
        costs = {k: bpp + lmbda * 255**2 * mse for k, (bpp, mse) in measured.items()}
        start = min(costs, key=costs.get)
        ranked = sorted(costs.items(), key=lambda kv: kv[1])[:3]
        log.info(
            "q%d (lambda %g): starts from %s (cost, bits per pixel: %s)",
            quality,
            lmbda,
            start,
            ", ".join(f"{k} {v:.3f}" for k, v in ranked),
        )
        plan.levels.append(Level(quality, lmbda, start, round(costs[start], 5), base.code + i))
    return plan


def _epochs(steps: int, plan: Plan) -> int:
    """Passes of the data loader that make ``steps``, rounded up (it drops no last batch)."""
    return max(1, math.ceil(steps / math.ceil(plan.train_images / plan.batch_size)))


def _lr_drop(epochs: int) -> int | None:
    """The epoch from which the main stage trains at a tenth of the rate: its last quarter
    (at least its last epoch when it has two or more)."""
    return min(epochs - 1, max(1, math.floor(0.75 * epochs))) if epochs > 1 else None


class Progress:
    """The whole run's ETA: seconds per step measured as stages finish."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.total = len(plan.levels) * (plan.main_steps + plan.hard_steps)
        self.done = 0
        self.seconds = 0.0

    def finished(self, steps: int, seconds: float) -> None:
        self.done += steps
        self.seconds += seconds

    def eta(self) -> str:
        if not self.done:
            return "measuring"
        left = (self.total - self.done) * self.seconds / self.done
        return f"about {_duration(left)} of training left"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def run(base: Any) -> list[Path]:
    """The staged run of :mod:`this module <latentwire.training.custom>`; returns the
    package folders, one per level."""
    from latentwire.training.export import export, summary
    from latentwire.training.recipes.codec import train

    out = Path(base.out)
    plan_path = out / PLAN_NAME
    qualities = parse_qualities(base.qualities or str(base.quality))
    check(base, qualities)
    if plan_path.is_file():
        if not base.resume:
            raise ValueError(f"{out} holds a run already: add --resume to continue it")
        try:
            plan = Plan.from_json(plan_path.read_text())
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{plan_path} is not a plan this version reads ({e})") from None
        folder = Path(base.dataset.removeprefix("folder:")).resolve()
        asked = ([lv.quality for lv in plan.levels], f"folder:{folder}", base.fit, base.seed)
        if asked != (qualities, plan.dataset, plan.fit, plan.seed):
            raise ValueError(f"{out} holds a run of other levels or data: use another --out")
        configure_logging(out / "train.log")
        log.info("resuming the run in %s", out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        configure_logging(out / "train.log")  # the libraries' details too, for the record
        plan = make_plan(base, qualities)
        write_atomically(plan_path, plan.to_json().encode())
    log.info(
        "%d training and %d held-out images of %dx%dx%d; per level %d + %d steps of %d images",
        plan.train_images,
        plan.test_images,
        plan.channels,
        plan.height,
        plan.width,
        plan.main_steps,
        plan.hard_steps,
        plan.batch_size,
    )
    progress = Progress(plan)
    packages = []
    for number, level in enumerate(plan.levels, 1):
        model_id = f"{plan.name}-{level.name}"
        package = out / model_id
        stages = out / "train" / level.name
        if (package / MANIFEST_NAME).is_file():
            log.info("%s: done before", model_id)
            seconds = _seconds(stages / "main") + _seconds(stages / "hard")
            progress.finished(plan.main_steps + plan.hard_steps, seconds)
            packages.append(package)
            continue
        start = read_manifest(find_package(level.start))
        main = stage_config(plan, level, start, base)
        epochs = _epochs(plan.main_steps, plan)
        main = replace(
            main, out=str(stages / "main"), epochs=epochs, lr_drop=_lr_drop(epochs), resume=True
        )
        for stage, cfg in (("main", main), ("hard", None)):
            if stage == "hard":
                cfg = replace(
                    main,
                    out=str(stages / "hard"),
                    init=str(latest_checkpoint(stages / "main")),
                    hard_quantization=True,
                    lr=HARD_LR,
                    epochs=_epochs(plan.hard_steps, plan),
                    lr_drop=None,
                )
            log.info(
                "%s (level %d of %d), stage %s: %d epochs from %s; %s",
                model_id,
                number,
                len(plan.levels),
                stage,
                cfg.epochs,
                Path(cfg.init).name if stage == "hard" else level.start,
                progress.eta(),
            )
            train(cfg)
            steps = plan.main_steps if stage == "main" else plan.hard_steps
            progress.finished(steps, _seconds(Path(cfg.out)))
        manifest = export(
            latest_checkpoint(stages / "hard"), package, model_id, base.data_dir, code=level.code
        )
        log.info("wrote %s: %s", package, summary(manifest))
        packages.append(package)
    from latentwire.training.report import write_report

    report = write_report(packages, out / "report", base.data_dir)
    log.info("report: %s", report)
    return packages


def _seconds(stage: Path) -> float:
    """The training seconds a stage's newest checkpoint records (0 without one)."""
    found = latest_checkpoint(stage)
    return load_checkpoint(found)["seconds"] if found else 0.0
