"""``latentwire train | eval | export``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from latentwire.training.data import DatasetError, add_data_arguments
from latentwire.training.loop import config_from_args, configure_logging, stop_on_sigterm
from latentwire.training.recipes import RECIPES


def run(command: str, argv: list[str]) -> int:
    configure_logging()
    try:
        return {"train": _train, "eval": _eval, "export": _export}[command](argv)
    except (DatasetError, RuntimeError, ValueError, KeyError) as e:
        print(f"latentwire {command}: error: {e}", file=sys.stderr)
        return 1


def _train(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="latentwire train", description="Train a model.")
    sub = parser.add_subparsers(dest="recipe", required=True, metavar="RECIPE")
    for name, module in RECIPES.items():
        recipe = sub.add_parser(
            name, help=module.__doc__.splitlines()[0], description=module.__doc__
        )
        module.add_arguments(recipe)
        recipe.set_defaults(**getattr(module, "SUBCOMMAND_DEFAULTS", {}).get(name, {}))
    args = parser.parse_args(argv)
    module = RECIPES[args.recipe]
    command = ["latentwire", "train", *argv]
    stop_on_sigterm()
    cfg = config_from_args(module.TrainConfig, args, command)
    if args.recipe == "codec" and cfg.dataset.startswith("folder:") and not cfg.one_stage:
        from latentwire.training import custom

        custom.run(cfg)  # the whole recipe for a user's folder: a package per level
    else:
        module.train(cfg)
    return 0


def _load(target: str):
    """(reconstruct function, data set, image shape, fit) of a package folder or checkpoint."""
    from latentwire.shared.models import ImageShape
    from latentwire.shared.models.codec import padded_forward
    from latentwire.shared.models.loading import load_model
    from latentwire.shared.package import MANIFEST_NAME
    from latentwire.training.checkpoint import model_from_checkpoint

    path = Path(target)
    if (path / MANIFEST_NAME).is_file():
        model, manifest = load_model(path)
        family, config, dataset, fit = manifest.family, manifest.config, manifest.dataset, None
    elif path.is_file():
        model, cfg, _ = model_from_checkpoint(path)
        family, config = cfg["model"]["family"], cfg["model"]["config"]
        dataset, fit = cfg["dataset"], cfg["fit"]
    else:
        raise ValueError(f"{target}: neither a model package folder nor a checkpoint file")
    # A codec's forward gives (reconstruction, likelihoods); eval mode rounds its latent.
    codec = family in ("factorized", "hyperprior")
    reconstruct = (lambda x: padded_forward(model, x)[0]) if codec else model
    return reconstruct, dataset, ImageShape(**config["shape"]), fit or "center-crop"


def _eval(argv: list[str]) -> int:
    if argv[:1] == ["sr"]:
        return _eval_sr(argv[1:])
    if argv[:1] == ["gan"]:
        return _eval_gan(argv[1:])
    parser = argparse.ArgumentParser(
        prog="latentwire eval",
        description="Test-set MSE/PSNR/SSIM of a checkpoint or model package, "
        "with a reconstruction grid.",
    )
    parser.add_argument("target", help="model package folder or checkpoint file")
    parser.add_argument("--dataset", default=None, help="default: the one the model was trained on")
    add_data_arguments(parser)
    parser.add_argument(
        "--out", default=None, help="folder for metrics.json and reconstructions.png"
    )
    args = parser.parse_args(argv)

    import torch

    from latentwire.training.data import load_datasets
    from latentwire.training.metrics import evaluate_reconstruction
    from latentwire.training.plots import save_reconstruction_grid

    reconstruct, dataset, shape, fit = _load(args.target)
    _, test_set, _ = load_datasets(
        args.dataset or dataset,
        data_dir=args.data_dir,
        download=args.download,
        shape=shape,
        fit=fit,
    )
    device = torch.device("cpu")
    metrics = evaluate_reconstruction(reconstruct, test_set, device)
    print(json.dumps(metrics, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        save_reconstruction_grid(reconstruct, test_set, device, out / "reconstructions.png")
    return 0


def _export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire export",
        description="Turn a checkpoint into a model package (safetensors + manifest.json), "
        "measuring its test-set metrics on the way.",
    )
    parser.add_argument("checkpoint")
    parser.add_argument("-o", "--out", required=True, help="package folder to write")
    parser.add_argument("--id", default=None, help="model id (default: DATASET-FAMILY)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--code",
        type=int,
        default=None,
        help="codecs: the deployment's model code (1-32) its IRs carry, one byte "
        "(docs/ir-format.md); default: the model id",
    )
    parser.add_argument(
        "--classifier",
        default=None,
        help="gan/dcgan: the classifier that scores it (default: the shipped DATASET-classifier)",
    )
    args = parser.parse_args(argv)

    from latentwire.training.export import export, summary

    log_file = Path(args.checkpoint).parent / "export.log"
    configure_logging(log_file)
    options = {"classifier": args.classifier} if args.classifier else {}
    manifest = export(args.checkpoint, args.out, args.id, args.data_dir, args.code, **options)
    print(f"wrote {args.out}: {summary(manifest)} (details: {log_file})")
    return 0


def _eval_sr(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire eval sr",
        description="Y-channel PSNR/SSIM of a super-resolution model and of bicubic, on a "
        "test set (border cropped by the scale, as the papers measure), with a comparison "
        "picture.",
    )
    parser.add_argument("--model", default="sr2x", help="model id, package folder or checkpoint")
    parser.add_argument("--dataset", default="set5", help="set5, bsd100, kodak or folder:PATH")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tile", type=int, default=None, help="upscale in tiles of this side")
    parser.add_argument("--out", default=None, help="folder for sr_metrics.json, comparison.png")
    args = parser.parse_args(argv)

    from PIL import Image

    from latentwire.shared.images import open_image
    from latentwire.shared.models.loading import load_model
    from latentwire.shared.package import package_folder
    from latentwire.shared.resample import downscale, modcrop
    from latentwire.shared.upscaling import upscale_image
    from latentwire.training.checkpoint import model_from_checkpoint
    from latentwire.training.data import image_files
    from latentwire.training.photos import find_folders
    from latentwire.training.recipes.sr import bicubic, evaluate_sr

    path = Path(args.model)
    if path.is_file():
        model = model_from_checkpoint(path)[0]
    else:
        model = load_model(package_folder(path))[0]
    if model.family != "srresnet":
        raise ValueError(f"{args.model} is a {model.family} model, not a super-resolution one")
    scale = model.config.scale
    folder = args.dataset.removeprefix("folder:")
    (root,) = find_folders(folder, args.data_dir)
    files = image_files(root)

    def ours(image):
        return upscale_image(model, image, args.tile)

    result = evaluate_sr(files, scale, {"model": ours, "bicubic": bicubic(scale)})
    report = {"dataset": args.dataset, "images": len(files), "scale": scale, **result}
    print(json.dumps(report, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sr_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        truth = modcrop(open_image(files[0].read_bytes(), 1 << 28).convert("RGB"), scale)
        low = downscale(truth, scale)
        row = [bicubic(scale)(low), ours(low), truth]
        sheet = Image.new("RGB", (truth.width * 3 + 8, truth.height), "white")
        for i, picture in enumerate(row):
            sheet.paste(picture, (i * (truth.width + 4), 0))
        sheet.save(out / "comparison.png")
    return 0


def _eval_gan(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire eval gan",
        description="Score a generator: the Fréchet distance on a classifier's features "
        "between N generated and N real test images, the real-vs-real floor, and the class "
        "coverage (see training/recipes/gan.py for what this is and is not).",
    )
    parser.add_argument("--model", required=True, help="model id, package folder or checkpoint")
    parser.add_argument("--classifier", default=None, help="default: the DATASET-classifier")
    parser.add_argument("-n", type=int, default=10_000, help="images on each side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="folder for gan_metrics.json, samples.png")
    args = parser.parse_args(argv)

    from latentwire.shared.generation import generate, to_uint8
    from latentwire.shared.images import grid
    from latentwire.training.checkpoint import model_from_checkpoint
    from latentwire.training.recipes.gan import labelled_sets, load_scorer, score_generator

    path = Path(args.model)
    if path.is_file():
        generator, cfg, _ = model_from_checkpoint(path)
    else:
        from latentwire.shared.models.loading import load_model
        from latentwire.shared.package import package_folder

        generator, manifest = load_model(package_folder(path))
        cfg = {"dataset": manifest.dataset, "data_dir": None, "fit": "center-crop"}
        cfg["model"] = {"family": manifest.family, "config": manifest.config}
    if generator.family not in ("gan", "dcgan"):
        raise ValueError(f"{args.model} is a {generator.family} model, not a generator")
    scorer, scorer_id = load_scorer(args.classifier or f"{cfg['dataset']}-classifier")
    train_set, test_set = labelled_sets(cfg, args.data_dir)
    metrics = score_generator(generator, scorer, train_set, test_set, args.n, args.seed)
    metrics["classifier"] = scorer_id
    print(json.dumps(metrics, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gan_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        grid(to_uint8(generate(generator, 64, args.seed)), columns=8).save(out / "samples.png")
    return 0
