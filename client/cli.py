"""``latentwire encode | decode | inspect | models | downscale | upscale | sample``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from latentwire.client.decoding import DecoderStore, decode_batch
from latentwire.client.http import Client, LatentwireError, default_cache_dir
from latentwire.shared.images import ImageError, model_input, open_image
from latentwire.shared.wire import IRError

SUFFIX = ".lw"
MAX_IMAGE_PIXELS = 1 << 26  # a local file: a generous bound, still checked before decoding


def run(command: str, argv: list[str]) -> int:
    try:
        commands = {
            "encode": _encode,
            "decode": _decode,
            "inspect": _inspect,
            "models": _models,
            "downscale": _downscale,
            "upscale": _upscale,
            "sample": _sample,
        }
        return commands[command](argv)
    except (LatentwireError, IRError, OSError, ValueError) as e:
        print(f"latentwire {command}: error: {e}", file=sys.stderr)
        return 1


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="server URL")
    parser.add_argument("--api-key", default=None, help="or $LATENTWIRE_API_KEY")


def _model_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=os.environ.get("LATENTWIRE_MODEL_DIR"),
        help="a folder of your own model packages, beside the shipped ones "
        "(default: $LATENTWIRE_MODEL_DIR)",
    )


def _client(args: argparse.Namespace) -> Client:
    return Client(args.server, api_key=args.api_key or os.environ.get("LATENTWIRE_API_KEY"))


def _encode(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire encode", description=f"Encode images into IR files (NAME{SUFFIX})."
    )
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder")
    parser.add_argument(
        "--model", default=None, help="auto, a codec name or an id (default: the server's, auto)"
    )
    parser.add_argument("--quality", type=int, default=None)
    parser.add_argument(
        "--effort",
        type=int,
        default=0,
        help="0 (one pass) to 3: more encoder time for fewer bytes, the same decoder",
    )
    parser.add_argument(
        "--local", action="store_true", help="encode here with torch instead of on a server"
    )
    _model_dir_arg(parser)
    _server_args(parser)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.local:
        irs = _encode_locally(args.images, args.model, args.quality, args.effort, args.model_dir)
    else:
        with _client(args) as client:
            irs = client.encode_many(args.images, args.model, args.quality, args.effort)
    for path, ir in zip(args.images, irs, strict=True):
        target = args.out / (path.stem + SUFFIX)
        target.write_bytes(ir)
        print(f"{path} -> {target} ({len(ir)} bytes)")
    return 0


def _encode_locally(
    paths: list[Path],
    model: str | None,
    quality: int | None,
    effort: int = 0,
    model_dir: Path | None = None,
) -> list[bytes]:
    """Encode here, with torch (the [server] or [training] extra): the server's choice of
    codec (:class:`~latentwire.shared.codec.CodecChoice`) among the shipped ones and those
    in ``model_dir``, and the same :class:`~latentwire.shared.codec.Codec`, loaded only
    for the levels used."""
    try:
        from latentwire.shared.codec import Codec, CodecChoice, CodecLevel
    except ImportError as e:
        raise OSError(
            f"encoding here needs torch ({e.name} is missing): pip install "
            "'latentwire[server]', or encode on a server with --server URL"
        ) from None
    from latentwire.shared.package import ZOO_DIR, list_packages, read_manifest

    roots = [ZOO_DIR, *([model_dir] if model_dir else [])]
    folders: dict[str, Path] = {}
    for folder in (p for root in roots for p in list_packages(root)):
        folders.setdefault(read_manifest(folder).id, folder)  # a shipped id wins, as served
    levels = [CodecLevel.of(read_manifest(p)) for p in folders.values() if _is_codec(p)]
    choose = CodecChoice(levels).chooser(model, quality)
    codecs: dict[str, Codec] = {}
    irs = []
    for path in paths:
        image = open_image(path.read_bytes(), MAX_IMAGE_PIXELS)
        chosen = choose(image)
        if chosen not in codecs:
            codecs[chosen] = Codec.load(folders[chosen])
        irs += codecs[chosen].compress([model_input(image, codecs[chosen].shape)], effort)
    return irs


def _is_codec(folder: Path) -> bool:
    from latentwire.shared.package import read_manifest

    return read_manifest(folder).task == "codec"


def _decode(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire decode", description="Decode IR files into PNGs, locally."
    )
    parser.add_argument("irs", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder")
    parser.add_argument(
        "--server", default=None, help="fetch decoders this machine lacks from this server"
    )
    parser.add_argument("--api-key", default=None)
    _model_dir_arg(parser)
    args = parser.parse_args(argv)
    data = [p.read_bytes() for p in args.irs]
    if args.server:
        with _client(args) as client:
            images = decode_batch(data, client.decoders)
    else:
        images = decode_batch(data, _store(args.model_dir))
    from PIL import Image

    args.out.mkdir(parents=True, exist_ok=True)
    for path, image in zip(args.irs, images, strict=True):
        target = args.out / (path.stem + ".png")
        Image.fromarray(image).save(target)
        print(f"{path} -> {target}")
    return 0


def _store(model_dir: Path | None) -> DecoderStore:
    """The decoders of this machine: shipped, ``model_dir``'s, and the cache."""
    return DecoderStore([model_dir] if model_dir else [], cache_dir=default_cache_dir())


def _inspect(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire inspect",
        description="One image through a codec, as a figure: the original, what the light "
        "client decodes, the error, the bits per latent position and the latent's costliest "
        "channels. Give an image (encoded here with torch, or with --server on a server) or "
        "an IR file (decoded here; --original adds the error map).",
    )
    parser.add_argument("input", type=Path, help="an image, or an IR file")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the figure (PNG)")
    parser.add_argument("--model", default=None, help="auto, a codec name or an id")
    parser.add_argument("--quality", type=int, default=None)
    parser.add_argument("--effort", type=int, default=0)
    parser.add_argument("--original", type=Path, default=None, help="for an IR: its image")
    _model_dir_arg(parser)
    parser.add_argument("--server", default=None, help="encode (and fetch decoders) there")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    from latentwire.client.inspect import figure
    from latentwire.shared.wire import parse

    data = args.input.read_bytes()
    try:
        parse(data)
        is_ir, original_path = True, args.original
    except IRError:  # not an IR: an image to encode
        is_ir, original_path = False, args.input
    if args.server:
        with _client(args) as client:
            if not is_ir:
                data = client.encode(args.input, args.model, args.quality, args.effort)
            store = client.decoders
            decoded = decode_batch([data], store)[0]  # fetches its decoder if need be
    else:
        if not is_ir:
            (data,) = _encode_locally(
                [args.input], args.model, args.quality, args.effort, args.model_dir
            )
        store = _store(args.model_dir)
        decoded = decode_batch([data], store)[0]
    ir = parse(data)
    decoder = store.get(ir.model, ir.digest)  # loaded by the decoding above
    original = None
    if original_path is not None:
        image = open_image(original_path.read_bytes(), MAX_IMAGE_PIXELS)
        pixels = model_input(image, decoder.package.image_shape)
        original = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    sheet, numbers = figure(
        decoded, decoder.latent_view(ir), decoder.package.stride, len(data), original
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    quality = "" if numbers.psnr_db is None else f", {numbers.psnr_db:.2f} dB"
    named = decoder.package.model + ("" if isinstance(ir.model, str) else f", code {ir.model}")
    print(
        f"{args.input} ({named}): {numbers.ir_bytes} B, {numbers.bits_per_pixel:.3f} bpp"
        f"{quality}; latent {numbers.latent_bits / 8:.1f} B, side information "
        f"{numbers.side_bits / 8:.1f} B -> {args.out}"
    )
    return 0


def _models(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire models", description="List a server's models."
    )
    _server_args(parser)
    args = parser.parse_args(argv)
    with _client(args) as client:
        print(json.dumps(client.models(), indent=2))
    return 0


def _downscale(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire downscale",
        description="Make the low-resolution half of LR/HR training pairs: every image in "
        "SRC_DIR, cropped to a multiple of the scale, bicubic-downscaled (antialiased) into "
        "DST_DIR under the same name.",
    )
    parser.add_argument("src", type=Path, metavar="SRC_DIR")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="DST_DIR")
    parser.add_argument("--scale", type=int, default=2)
    args = parser.parse_args(argv)
    from latentwire.shared.resample import downscale

    if not args.src.is_dir():
        raise OSError(f"{args.src} is not a folder")
    files = sorted(p for p in args.src.iterdir() if p.is_file())
    args.out.mkdir(parents=True, exist_ok=True)
    done = 0
    for path in files:
        try:
            image = open_image(path.read_bytes(), MAX_IMAGE_PIXELS)
        except ImageError as e:
            print(f"{path}: {e}; skipped", file=sys.stderr)
            continue
        small = downscale(image.convert("RGB" if image.mode != "L" else "L"), args.scale)
        small.save(args.out / path.name)
        done += 1
    print(f"{done} images downscaled {args.scale}x into {args.out}")
    return 0


def _load_here(model: str, task: str, kind: str):
    """A model of ``task`` (id or package folder) loaded here with torch, or a clear error
    when torch is missing (the base install) or the model does something else."""
    gerund = {"upscale": "upscaling", "generate": "generating"}[task]
    try:
        from latentwire.shared.models.loading import load_model
    except ImportError as e:
        raise OSError(
            f"{gerund} here needs torch ({e.name} is missing): pip install "
            f"'latentwire[server]', or {task} on a server with --server URL"
        ) from None
    from latentwire.shared.package import package_folder

    loaded, manifest = load_model(package_folder(model))
    if manifest.task != task:
        raise ValueError(f"{manifest.id} is a {manifest.task} model, not {kind}")
    return loaded


def _upscale(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire upscale",
        description="Upscale images 2x with a super-resolution model, here (torch; tiled, "
        "so any size fits in memory) or on a server (--server). Grayscale stays grayscale; "
        "alpha is kept.",
    )
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder")
    parser.add_argument("--model", default="sr2x", help="model id or package folder")
    parser.add_argument("--tile", type=int, default=None, help="input tile side (default 128)")
    parser.add_argument("--overlap", type=int, default=None, help="context around each tile")
    parser.add_argument(
        "--server", default=None, help="upscale on this server instead of here (no torch needed)"
    )
    parser.add_argument("--api-key", default=None, help="or $LATENTWIRE_API_KEY")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.server:
        with _client(args) as client:
            for path in args.images:
                result = client.upscale(path, args.model)
                target = args.out / f"{path.stem}_x2.png"
                result.save(target)
                print(f"{path} -> {target} ({result.width}x{result.height})")
        return 0
    model = _load_here(args.model, "upscale", "an upscaler")
    from latentwire.shared.upscaling import DEFAULT_OVERLAP, DEFAULT_TILE, upscale_image

    for path in args.images:
        image = open_image(path.read_bytes(), MAX_IMAGE_PIXELS)
        result = upscale_image(
            model,
            image,
            args.tile or DEFAULT_TILE,
            DEFAULT_OVERLAP if args.overlap is None else args.overlap,
        )
        target = args.out / (path.stem + f"_x{model.config.scale}.png")
        result.save(target)
        print(f"{path} ({image.width}x{image.height}) -> {target} ({result.width}x{result.height})")
    return 0


def _sample(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire sample",
        description="A grid of images from a GAN/DCGAN generator, here (torch) or on a "
        "server (--server). The same seed gives the same images.",
    )
    parser.add_argument("--model", default="fashion-mnist-dcgan", help="model id or package")
    parser.add_argument("-n", type=int, default=64, help="how many images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--columns", type=int, default=None, help="grid width (default square)")
    parser.add_argument("-o", "--out", type=Path, default=Path("samples.png"), help="grid PNG")
    parser.add_argument(
        "--server", default=None, help="generate on this server instead of here (no torch needed)"
    )
    parser.add_argument("--api-key", default=None, help="or $LATENTWIRE_API_KEY")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise ValueError("-n must be at least 1")
    import numpy as np

    from latentwire.shared.images import grid

    if args.server:
        with _client(args) as client:
            images = np.stack(
                [np.atleast_3d(im) for im in client.generate(args.n, args.seed, args.model)]
            )
    else:
        model = _load_here(args.model, "generate", "a generator")
        from latentwire.shared.generation import generate, to_uint8

        images = to_uint8(generate(model, args.n, args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid(images, args.columns).save(args.out)
    print(f"{args.n} images (seed {args.seed}) -> {args.out}")
    return 0
