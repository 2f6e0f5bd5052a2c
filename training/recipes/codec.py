"""Recipe: train a rate-distortion codec (analysis, factorized prior, synthesis).

    latentwire train codec --dataset fashion-mnist --quality 3 --epochs 10
    latentwire train codec --dataset photos --transform bmshj2018 --quality 3 --patch 128

``--dataset photos`` trains an any-size photo codec on random ``--patch`` squares (flips,
rotations) of the photo folders in ``--photos`` (default: BSDS500 train, T91, the CC0
photos; never Kodak, Set5 or BSD100), ``--patches-per-epoch`` a epoch; 5% of the photos
(by name) are held out, their centre squares the test set.

Loss = rate + lambda * 255^2 * MSE, with the rate in bits per pixel from the prior's
likelihoods of the noisy latent, and MSE on the [0, 1] scale (as CompressAI's zoo). The
quality level picks lambda from :data:`LAMBDAS`; ``--lmbda`` overrides it. ``--init``
starts from another codec's checkpoint (a neighbouring quality level converges fast);
from a codec with one density per channel, ``--positional-prior`` and ``--prior-contexts``
start with copies of that channel's density at every position and context.

    latentwire train codec --dataset fashion-mnist --quality 3 --positional-prior \
        --prior-contexts 4 --init runs/fashion-mnist-q3/ckpt-...pt --epochs 6 --lr-drop 4

``--hard-quantization`` is a last stage for a trained codec: the analysis stays fixed, and
the synthesis and the prior train on the rounded latent, as it is coded and decoded.

For ``--dataset folder:PATH``, ``latentwire train codec`` runs all of that as one staged
recipe, from the nearest shipped codec to a package and a report
(:mod:`latentwire.training.custom`); ``--one-stage`` trains once with exactly the flags
given instead (as torchrun's ``-m latentwire.training.recipes.codec`` always does).
"""

from __future__ import annotations

import argparse
import io
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from latentwire.shared.codec import Codec
from latentwire.shared.decoder_package import DecoderPackage, HyperTables
from latentwire.shared.hyper import SCALES, scale_tables
from latentwire.shared.images import SIGNED, model_input, open_image
from latentwire.shared.models import ImageShape, get_model
from latentwire.shared.models.codec import TRANSFORMS, FactorizedCodec, padded_forward
from latentwire.shared.models.entropy import spread_prior
from latentwire.shared.models.layers import GDN
from latentwire.training import distributed
from latentwire.training.checkpoint import init_weights, latest_checkpoint, package_record
from latentwire.training.data import (
    ImageDataConfig,
    add_image_arguments,
    image_files,
    load_image_data,
    run_datasets,
)
from latentwire.training.loop import add_loop_arguments, fit, recipe_main
from latentwire.training.metrics import psnr, ssim_per_image
from latentwire.training.photos import TRAIN_SETS, RandomPatches, find_folders, photo_split
from latentwire.training.plots import write_report

log = logging.getLogger("latentwire.train")

FAMILIES = ("factorized", "hyperprior")
PRIORS = ("factorized", "scale", "mean-scale")  # --prior: the entropy model
TASK = "codec"
PIXELS = SIGNED
# Contexts of counted tables (FactorizedPrior.counted_tables): q6's test-set payload with 4,
# 8 and 16 contexts measured 155.0, 151.9 and 151.6 B; 8 keeps the tables small.
TABLE_CONTEXTS = 8

# quality level -> lambda; higher quality spends more bits for less distortion.
LAMBDAS = {1: 0.0003, 2: 0.0008, 3: 0.002, 4: 0.005, 5: 0.013, 6: 0.035}
# Photos and a user's folder: CompressAI's bmshj2018 lambdas for q1-q4 (the shipped photo
# transforms were trained with them), then 0.03 and 0.09 for the levels above
# (docs/models.md#the-photo-codecs). A folder's levels so span WebP's range of settings.
PHOTO_LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.013, 5: 0.03, 6: 0.09}


def lambda_of(dataset: str, quality: int, lmbda: float | None = None) -> float:
    """The rate-distortion trade-off of a run: ``lmbda`` if given, else its quality's."""
    if lmbda is not None:
        return lmbda
    photo_like = dataset == "photos" or dataset.startswith("folder:")
    return (PHOTO_LAMBDAS if photo_like else LAMBDAS)[quality]


@dataclass
class TrainConfig(ImageDataConfig):
    out: str = "runs/codec"
    channels: int | None = None  # None: the data set's (1 for fashion-mnist, 3 for photos)
    batch_size: int = 64
    quality: int = 3
    lmbda: float | None = None  # default: LAMBDAS[quality]
    transform: str = "gdn"
    filters: int = 32
    latent_channels: int = 32
    positional_prior: bool = False
    prior_contexts: int = 1
    prior: str = "factorized"  # or scale / mean-scale: a hyperprior (any-size codecs)
    hyper_filters: int = 64
    hard_quantization: bool = False  # round in training too; the analysis stays as it is
    freeze_transforms: bool = False  # train only the entropy model (a new hyperprior first)
    init: str | None = None  # checkpoint to start from
    init_package: dict | None = None  # set by train: how a package --init was made
    photos: str = TRAIN_SETS  # --dataset photos: the folders to cut patches from
    patch: int = 128
    patches_per_epoch: int = 4096
    # A folder: the staged recipe of latentwire.training.custom, unless one_stage.
    qualities: str | None = None  # levels to train, e.g. "1-6" (default: --quality)
    name: str | None = None  # the packages' ids are NAME-qN (default: the folder's name)
    code: int = 1  # the first level's model code in the deployment (docs/ir-format.md)
    one_stage: bool = False  # train once, with exactly the flags given


def center_squares(files: list, side: int, mode: str = "RGB") -> list[torch.Tensor]:
    """The centre ``side`` square of each photo at least that big, in the codec's range."""
    squares = []
    for path in files:
        photo = open_image(path.read_bytes(), 1 << 28).convert(mode)
        w, h = photo.size
        if min(w, h) >= side:
            left, top = (w - side) // 2, (h - side) // 2
            square = np.atleast_3d(np.asarray(photo.crop((left, top, left + side, top + side))))
            square = torch.from_numpy(square.copy()).permute(2, 0, 1).float()
            squares.append(PIXELS.to_model(square))
    return squares


def load_photos(cfg: TrainConfig) -> tuple[Dataset, Dataset, ImageShape]:
    """(random training patches, held-out centre squares, patch geometry)."""
    train_files, test_files = photo_split(cfg.photos, cfg.data_dir, 0.05)
    channels = cfg.channels or 3
    mode = "L" if channels == 1 else "RGB"
    train = RandomPatches(
        train_files, cfg.patch, cfg.patches_per_epoch, cfg.seed, pixel_range=PIXELS, mode=mode
    )
    test = center_squares(test_files, cfg.patch, mode)
    log.info("%d training photos, %d held out", len(train.photos), len(test))
    return train, test, ImageShape(channels, cfg.patch, cfg.patch)


class RateDistortion(NamedTuple):
    loss: torch.Tensor  # bpp + lambda * 255**2 * mse
    bpp: torch.Tensor  # bits per pixel, from the entropy model's likelihoods
    mse: torch.Tensor  # on the [0, 1] scale
    x_hat: torch.Tensor  # the reconstruction


def rate_distortion(
    model: nn.Module, x: torch.Tensor, lmbda: float, hard: bool = False
) -> RateDistortion:
    """The rate-distortion figures of a batch. Images are coded padded to the codec's
    stride (as :class:`~latentwire.shared.codec.Codec` does): the rate is the padded
    latent's, the distortion the image's."""
    x_hat, likelihoods = padded_forward(model, x, hard)
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = -torch.log2(likelihoods).sum() / pixels
    mse = nn.functional.mse_loss(x_hat, x) / 4  # [-1, 1] -> [0, 1] scale
    return RateDistortion(bpp + lmbda * 255**2 * mse, bpp, mse, x_hat)


@torch.inference_mode()
def evaluate_codec(
    model: nn.Module, data: Dataset, lmbda: float, device: torch.device
) -> dict[str, float]:
    """Loss, estimated bits per image (from the prior) and PSNR with rounded latents."""
    loss = bits = psnr_sum = 0.0
    count = 0
    for x in DataLoader(data, batch_size=500):
        x = x.to(device)
        batch_loss, bpp, _, x_hat = rate_distortion(model, x, lmbda)
        loss += batch_loss.item() * len(x)
        bits += bpp.item() * x.shape[2] * x.shape[3] * len(x)
        pixels = PIXELS.to_pixels(x), PIXELS.to_pixels(x_hat)
        psnr_sum += psnr(*pixels, per_image=True).sum().item()
        count += len(x)
    return {"loss": loss / count, "bytes": bits / 8 / count, "psnr_db": psnr_sum / count}


def build(cfg: TrainConfig, shape: ImageShape) -> nn.Module:
    """The codec a run trains: ``--prior factorized`` (the default), or a hyperprior,
    ``scale`` or ``mean-scale``, with the paper's transforms."""
    if cfg.prior not in PRIORS:
        raise ValueError(f"--prior must be one of {', '.join(PRIORS)}, not {cfg.prior!r}")
    if cfg.prior == "factorized":
        return get_model(
            "factorized",
            shape=shape,
            transform=cfg.transform,
            filters=cfg.filters,
            latent_channels=cfg.latent_channels,
            positional_prior=cfg.positional_prior,
            prior_contexts=cfg.prior_contexts,
        )
    if cfg.transform != "bmshj2018":
        raise ValueError("a hyperprior codes images of any size: use --transform bmshj2018")
    return get_model(
        "hyperprior",
        shape=shape,
        filters=cfg.filters,
        latent_channels=cfg.latent_channels,
        hyper_filters=cfg.hyper_filters,
        mean=cfg.prior == "mean-scale",
        fixed_size=cfg.dataset.startswith("folder:"),  # a folder's images have one size
    )


def initialize(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Start from another codec's weights: a factorized codec's prior spread to a finer
    one; a hyperprior codec from a factorized one takes its transforms (its side
    information starts fresh). A one-channel codec from an RGB one takes its luma. A
    hyperprior codec wider than the one it starts from (``--filters``,
    ``--latent-channels``, ``--hyper-filters``) starts computing what that one did
    (:func:`_widen`)."""
    _to_channels(state, model.state_dict())
    if model.family == "factorized":
        _to_positions(state, model)
        spread_prior(state, model.prior)
        model.load_state_dict(state)
        return
    own = model.state_dict()
    if any(k.startswith("prior.") for k in state):  # from a factorized codec
        state = {k: v for k, v in state.items() if k.startswith(("analysis.", "synthesis."))}
    widened = _widen(state, model, own)
    model.load_state_dict({**own, **state})
    if len(state) < len(own) or widened:
        log.info(
            "took %d tensors (%d widened); %d start fresh",
            len(state),
            widened,
            len(own) - len(state),
        )


def _widen(state: dict[str, torch.Tensor], model: nn.Module, own: dict[str, torch.Tensor]) -> int:
    """A narrower hyperprior codec's tensors made to ``model``'s widths, in place, so that
    the wider codec computes the same image, z and scales at first (after Net2Net, Chen et
    al. 2016): the old weights in the leading block, zero where a new channel feeds an old
    one, the model's own initialization everywhere else (new channels start as noise the
    old ones ignore). ``own`` is the model's state. Returns how many tensors grew; any
    other mismatch is refused."""
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ValueError(f"--init has tensors this codec has not: {', '.join(unknown[:4])}")
    m, last = model.config.latent_channels, f"hyper_synthesis.{len(model.hyper_synthesis) - 1}"
    feeds = {}  # weight -> (its output axis, its input axis)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            feeds[f"{name}.weight"] = (0, 1)
        elif isinstance(module, nn.ConvTranspose2d):
            feeds[f"{name}.weight"] = (1, 0)
        elif isinstance(module, GDN):
            feeds[f"{name}.gamma_sqrt"] = (0, 1)
    # The start's own M, and whether its hyper-synthesis gives means too (2M outputs).
    m_old = state["hyper_analysis.0.weight"].shape[1] if "hyper_analysis.0.weight" in state else 0
    bias = state.get(f"{last}.layer.bias")
    old_mean = bias is not None and bias.shape[0] == 2 * m_old
    if old_mean and not model.config.mean:
        raise ValueError("--init is a mean-scale codec: start a mean-scale one from it")
    grown = 0
    for key, old in state.items():
        new = own[key]
        if old.shape == new.shape:
            continue
        if old.ndim != new.ndim or any(a > b for a, b in zip(old.shape, new.shape, strict=True)):
            raise ValueError(f"--init's {key} is {tuple(old.shape)}, not within {tuple(new.shape)}")
        index = [torch.arange(n) for n in old.shape]
        if old_mean and key.startswith(f"{last}."):  # outputs: M scales, then M means
            index[0] = torch.cat([torch.arange(m_old), m + torch.arange(m_old)])
        widened = new.clone()
        widened[torch.meshgrid(*index, indexing="ij")] = old
        if key in feeds:  # the old outputs' weights on the new inputs
            out_axis, in_axis = feeds[key]
            block: list[Any] = [slice(None)] * new.ndim
            block[out_axis], block[in_axis] = index[out_axis], slice(old.shape[in_axis], None)
            widened[tuple(block)] = 0
        state[key] = widened
        grown += 1
    return grown


LUMA = (0.299, 0.587, 0.114)  # BT.601: what a grayscale codec's output stands for


def _to_channels(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """A codec's first and last layers made to ``own``'s image channels, in place.

    RGB to grayscale: on a gray image (R = G = B) the analysis sums its three input
    filters, and the synthesis gives the luma of what it gave. Grayscale to RGB: the
    analysis sees the mean of the channels, and the synthesis gives gray. Nothing else
    changes; training then learns colour.
    """
    first = "analysis.0.weight"
    last = next(k for k in reversed(own) if k.startswith("synthesis.")).rsplit(".", 1)[0]
    if first not in own or first not in state:
        return
    have, want = state[first].shape[1], own[first].shape[1]
    if have == 3 and want == 1:
        luma = torch.tensor(LUMA)
        state[first] = state[first].sum(1, keepdim=True)
        # The last layer is a transposed convolution: weights (in, out, k, k).
        weight = state[f"{last}.weight"]
        state[f"{last}.weight"] = (weight * luma.view(1, 3, 1, 1)).sum(1, keepdim=True)
        state[f"{last}.bias"] = (state[f"{last}.bias"] * luma).sum().view(1)
    elif have == 1 and want == 3:
        state[first] = state[first].repeat(1, 3, 1, 1) / 3
        state[f"{last}.weight"] = state[f"{last}.weight"].repeat(1, 3, 1, 1)
        state[f"{last}.bias"] = state[f"{last}.bias"].repeat(3)


def _to_positions(state: dict[str, torch.Tensor], model: FactorizedCodec) -> None:
    """A positional prior of another latent geometry resampled to ``model``'s, in place:
    each position takes the density of the nearest position of the old grid (a codec of
    28x28 images starts one of 32x32 with the densities it had, stretched)."""
    prior = model.prior
    key = "prior.matrices.0"
    if prior.positions == 1 or key not in state:
        return
    have = state[key].shape[0] // (prior.channels * prior.contexts)
    if have in (1, prior.positions):
        return
    _, h, w = model.latent_shape
    side = round(have**0.5)  # the shipped codecs' latents are square
    if side * side != have:
        raise ValueError(f"cannot resample a prior of {have} positions to {h}x{w}")
    rows = torch.arange(h) * side // h
    cols = torch.arange(w) * side // w
    index = (rows[:, None] * side + cols[None, :]).flatten()
    for name in [k for k in state if k.startswith("prior.")]:
        v = state[name]
        grid = v.reshape(prior.channels, have, prior.contexts, *v.shape[1:])
        state[name] = grid[:, index].reshape(-1, *v.shape[1:])


def train(cfg: TrainConfig) -> nn.Module:
    """One training run with exactly ``cfg``'s settings (``latentwire train codec`` runs
    the staged recipe of :mod:`latentwire.training.custom` for a folder instead)."""
    runtime = distributed.setup(cfg.device)
    try:
        lmbda = lambda_of(cfg.dataset, cfg.quality, cfg.lmbda)
        if cfg.dataset == "photos":
            train_set, test_set, shape = load_photos(cfg)
        else:
            train_set, test_set, shape = load_image_data(
                replace(cfg, channels=cfg.channels or 1), PIXELS
            )
        torch.manual_seed(cfg.seed)
        model = build(cfg, shape)
        # Recorded in the checkpoints (a resumed run's too): the exact lambda, and how a
        # package --init was made.
        cfg = replace(cfg, lmbda=lmbda)
        if cfg.init:
            cfg = replace(cfg, init_package=package_record(cfg.init))
        if cfg.init and not (cfg.resume and latest_checkpoint(cfg.out)):
            initialize(model, init_weights(cfg.init))
            if runtime.is_main:
                log.info("initialized from %s", cfg.init)

        # Fixed, not just without gradients: DistributedDataParallel would wait for them.
        if cfg.hard_quantization or cfg.freeze_transforms:
            model.analysis.requires_grad_(False)
        if cfg.freeze_transforms:
            model.synthesis.requires_grad_(False)

        # With the transforms fixed the distortion cannot move: the rate alone, no synthesis.
        rate_only = cfg.freeze_transforms and model.family == "hyperprior"

        def batch_loss(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
            if rate_only:
                _, likelihoods = m(x, reconstruct=False)
                return -torch.log2(likelihoods).sum() / (x.shape[0] * x.shape[2] * x.shape[3])
            return rate_distortion(m, x, lmbda, cfg.hard_quantization).loss

        def evaluate(m: nn.Module, data: Dataset) -> dict[str, float]:
            return evaluate_codec(m, data, lmbda, runtime.device)

        model = fit(cfg, runtime, model, train_set, test_set, batch_loss, evaluate)
        if runtime.is_main:
            write_report(
                cfg.out,
                lambda x: padded_forward(model, x)[0],
                test_set,
                runtime.device,
                cfg.progress,
            )
        return model
    finally:
        distributed.teardown(runtime)


# Export: the decoder package and the figures a codec's manifest holds.


def default_id(cfg: dict[str, Any]) -> str:
    name = "photo" if cfg["dataset"] == "photos" else cfg["dataset"]
    return f"{name}-q{cfg['quality']}"


def record(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the manifest's ``training`` adds for a codec: the lambda it trained with, and
    how a folder's images were brought to its geometry (the report reads them so)."""
    extra = {"fit": cfg.get("fit")} if cfg["dataset"].startswith("folder:") else {}
    return {"lmbda": lambda_of(cfg["dataset"], cfg["quality"], cfg.get("lmbda")), **extra}


def decoder_package(
    model: nn.Module, cfg: dict[str, Any], data_dir: str | None, model_id: str
) -> tuple[DecoderPackage, dict[str, Any]]:
    """The decoder package (ONNX synthesis, integer tables), and how its tables were made:
    counted on the training set's latents for a codec of fixed geometry, the learned
    density for an any-size one (trained on random crops: no fixed set of latents); for a
    hyperprior codec also the fixed scale tables and the integer hyper-synthesis."""
    hyper_tables = None
    if model.family == "hyperprior":
        tables = model.z_prior.tables()
        hyper_tables = HyperTables(scale_tables(), model.integer_hyper_synthesis())
        made: dict[str, Any] = {
            "from": "the learned density (z); fixed Gaussian scale tables (y)",
            "scales": SCALES,
            "means": model.config.mean,
        }
    elif model.any_size:
        tables = model.prior.tables()
        made: dict[str, Any] = {"from": "the learned density"}
    else:
        latents = _training_latents(model, cfg, data_dir)
        tables = model.prior.counted_tables(latents, TABLE_CONTEXTS)
        made = {"from": "counted", "training_images": len(latents), "contexts": TABLE_CONTEXTS}
    # A latent to trace the ONNX export with (its spatial size stays dynamic).
    fixed = model.family == "factorized" and not model.any_size
    example = model.latent_shape if fixed else (model.latent_shape[0], 4, 4)
    package = DecoderPackage(
        model=model_id,
        image_shape=model.config.image_shape,
        latent_shape=model.latent_shape,
        stride=model.stride,
        tables=tables,
        onnx=synthesis_to_onnx(model.synthesis, example),
        hyper=hyper_tables,
    )
    return package, made


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
    return half_kernels(buffer.getvalue())


def half_kernels(model_bytes: bytes) -> bytes:
    """An ONNX model whose float32 convolution kernels larger than 1x1 are rounded to
    float16 and cast back to float32 where the graph starts: the network still runs in
    float32 on any runtime (onnxruntime folds the casts once, at load), from half the
    bytes. These kernels are almost all of a photo synthesis' weights; what the rounding
    costs is measured in docs/training.md (under 0.001 dB). GDN's 1x1 gamma and the biases
    stay float32: they are few, and gamma's small values are where float16 is coarse."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    inputs = {i.name for i in graph.input}  # a value the caller may feed stays as it is
    kernels = {
        node.input[1]
        for node in graph.node
        if node.op_type in ("Conv", "ConvTranspose")
        and node.input[1] in initializers
        and node.input[1] not in inputs
        and initializers[node.input[1]].data_type == TensorProto.FLOAT
        and any(d > 1 for d in initializers[node.input[1]].dims[2:])
    }
    casts = []
    for name in sorted(kernels):
        kernel = initializers[name]
        weights = numpy_helper.to_array(kernel)
        if not np.abs(weights).max() <= np.finfo(np.float16).max:  # NaN too
            raise ValueError(f"kernel {name} does not fit float16")
        weights = weights.astype(np.float16)
        graph.initializer.remove(kernel)
        graph.initializer.append(numpy_helper.from_array(weights, f"{name}.float16"))
        casts.append(helper.make_node("Cast", [f"{name}.float16"], [name], to=TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _training_latents(model: FactorizedCodec, cfg: dict, data_dir: str | None) -> np.ndarray:
    """The rounded latents of the run's training set (cut to ``--limit`` as the run was)."""
    train_set = run_datasets(cfg, data_dir)[0]
    if cfg.get("limit"):
        train_set = Subset(train_set, range(min(cfg["limit"], len(train_set))))
    loader = DataLoader(train_set, batch_size=1000)
    return np.concatenate([model.quantized_latent(x) for x in loader])


def metrics(codec: Codec, cfg: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """Real IRs decoded by the light client (the sizes and quality a user gets): Kodak for
    a photo codec, else the run's whole test set (a folder's held-out images)."""
    if cfg["dataset"] == "photos" or codec.shape[1] == 0:  # any size: measured on photos
        return photo_codec_metrics(codec, find_folders("kodak", data_dir)[0])
    test_set = run_datasets(cfg, data_dir)[1]
    _, h, w = codec.shape
    total_bytes = psnr_sum = ssim_sum = 0.0
    count = 0
    for x in DataLoader(test_set, batch_size=500):
        original = PIXELS.to_pixels(x).to(torch.uint8).numpy()
        irs = codec.compress(list(original))
        decoded = np.stack([np.atleast_3d(d) for d in codec.decompress(irs)])
        decoded = decoded.transpose(0, 3, 1, 2)
        total_bytes += sum(len(ir) for ir in irs)
        psnr_sum += psnr(original, decoded, per_image=True).sum()
        a, b = (torch.from_numpy(v).float() / 255 for v in (original, decoded))
        ssim_sum += ssim_per_image(a, b).sum().item()
        count += len(x)
    return {
        "test_images": count,
        "ir_bytes": round(total_bytes / count, 2),
        "bpp": round(total_bytes * 8 / count / (h * w), 4),
        "psnr_db": round(float(psnr_sum) / count, 3),
        "ssim": round(ssim_sum / count, 4),
    }


def photo_codec_metrics(codec: Codec, folder: Path) -> dict[str, Any]:
    """Mean bits per pixel (whole IRs) and RGB PSNR over the photos of ``folder``."""
    bpp = psnr_sum = 0.0
    files = image_files(folder)
    mode = "L" if codec.shape[0] == 1 else "RGB"  # a grayscale codec: the photos in gray
    for path in files:
        image = open_image(path.read_bytes(), 1 << 28).convert(mode)
        (ir,) = codec.compress([model_input(image, codec.shape)])
        (decoded,) = codec.decompress([ir])
        bpp += len(ir) * 8 / (image.width * image.height)
        psnr_sum += float(psnr(decoded, np.asarray(image)))
    return {
        "test_set": folder.name + (" (grayscale)" if mode == "L" else ""),
        "test_images": len(files),
        "bpp": round(bpp / len(files), 4),
        "psnr_db": round(psnr_sum / len(files), 3),
    }


def summary(metrics: dict[str, Any]) -> str:
    per_image = f"{metrics['ir_bytes']:.1f} B per image, " if "ir_bytes" in metrics else ""
    where = metrics.get("test_set", "test set")
    return f"{per_image}{metrics['bpp']:.3f} bpp at {metrics['psnr_db']:.2f} dB ({where})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    add_image_arguments(parser, d)
    add_loop_arguments(parser, d)
    parser.add_argument("--quality", type=int, choices=sorted(LAMBDAS), default=d.quality)
    parser.add_argument(
        "--qualities",
        default=None,
        help="a folder: the levels to train, e.g. 1-6 or 2,4 (default: --quality)",
    )
    parser.add_argument("--name", default=None, help="a folder: ids NAME-qN (default: its name)")
    parser.add_argument(
        "--code",
        type=int,
        default=d.code,
        help="a folder: the first level's model code, 1-32 (docs/ir-format.md)",
    )
    parser.add_argument(
        "--one-stage",
        action="store_true",
        help="a folder: train once with exactly these flags, not the staged recipe",
    )
    parser.add_argument("--lmbda", type=float, default=None, help="override the quality's lambda")
    parser.add_argument("--transform", choices=TRANSFORMS, default=d.transform)
    parser.add_argument("--filters", type=int, default=d.filters, help="hidden width N")
    parser.add_argument("--latent-channels", type=int, default=d.latent_channels, help="M")
    parser.add_argument(
        "--positional-prior",
        action="store_true",
        help="one density per latent channel and position (fixed-geometry models)",
    )
    parser.add_argument(
        "--prior-contexts",
        type=int,
        default=d.prior_contexts,
        help="densities per position, chosen by how many earlier channels are nonzero there",
    )
    parser.add_argument(
        "--hard-quantization",
        action="store_true",
        help="a last stage: the analysis stays fixed, the synthesis and the prior train on "
        "the rounded latent, as it is coded and decoded",
    )
    parser.add_argument(
        "--prior",
        choices=PRIORS,
        default=d.prior,
        help="the entropy model: factorized, or a hyperprior (scale, mean-scale; any size)",
    )
    parser.add_argument("--hyper-filters", type=int, default=d.hyper_filters)
    parser.add_argument(
        "--freeze-transforms",
        action="store_true",
        help="train the entropy model only: a first stage for a hyperprior on trained transforms",
    )
    parser.add_argument(
        "--init", default=None, help="start from this codec: a checkpoint, package or shipped id"
    )
    parser.add_argument("--photos", default=d.photos, help="--dataset photos: folders")
    parser.add_argument("--patch", type=int, default=d.patch, help="photo patch side")
    parser.add_argument("--patches-per-epoch", type=int, default=d.patches_per_epoch)


def main(argv: list[str] | None = None) -> None:
    recipe_main("codec", __doc__, TrainConfig, add_arguments, train, argv)


if __name__ == "__main__":
    main()
