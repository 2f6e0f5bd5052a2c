"""``latentwire encode | decode | models``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from latentwire.client.decoding import DecoderStore, decode_batch
from latentwire.client.http import Client, LatentwireError, default_cache_dir
from latentwire.shared.wire import IRError

SUFFIX = ".lw"


def run(command: str, argv: list[str]) -> int:
    try:
        return {"encode": _encode, "decode": _decode, "models": _models}[command](argv)
    except (LatentwireError, IRError, OSError) as e:
        print(f"latentwire {command}: error: {e}", file=sys.stderr)
        return 1


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="server URL")
    parser.add_argument("--api-key", default=None, help="or $LATENTWIRE_API_KEY")


def _client(args: argparse.Namespace) -> Client:
    return Client(args.server, api_key=args.api_key or os.environ.get("LATENTWIRE_API_KEY"))


def _encode(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="latentwire encode", description=f"Encode images into IR files (NAME{SUFFIX})."
    )
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder")
    parser.add_argument("--model", default=None, help="codec name or id (default: the server's)")
    parser.add_argument("--quality", type=int, default=None)
    parser.add_argument(
        "--local", action="store_true", help="encode here with torch instead of on a server"
    )
    _server_args(parser)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.local:
        irs = _encode_locally(args.images, args.model or "fashion-mnist", args.quality or 3)
    else:
        with _client(args) as client:
            irs = client.encode_many(args.images, args.model, args.quality)
    for path, ir in zip(args.images, irs, strict=True):
        target = args.out / (path.stem + SUFFIX)
        target.write_bytes(ir)
        print(f"{path} -> {target} ({len(ir)} bytes)")
    return 0


def _encode_locally(paths: list[Path], model: str, quality: int) -> list[bytes]:
    """The server's code path without the server: needs the [server] extra (torch)."""
    from latentwire.server.errors import ApiError
    from latentwire.server.images import open_image, to_model_input
    from latentwire.server.registry import ModelRegistry
    from latentwire.server.settings import Settings

    registry = ModelRegistry(Settings(device="cpu"))
    registry.load()
    try:
        codec = registry.resolve(model, quality)
        images = [to_model_input(open_image(p.read_bytes(), 1 << 26), *codec.shape) for p in paths]
    except ApiError as e:
        raise OSError(e.message) from None
    return codec.encode_batch(images)


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
    args = parser.parse_args(argv)
    data = [p.read_bytes() for p in args.irs]
    if args.server:
        with _client(args) as client:
            images = decode_batch(data, client.decoders)
    else:
        images = decode_batch(data, DecoderStore(cache_dir=default_cache_dir()))
    from PIL import Image

    args.out.mkdir(parents=True, exist_ok=True)
    for path, image in zip(args.irs, images, strict=True):
        target = args.out / (path.stem + ".png")
        Image.fromarray(image).save(target)
        print(f"{path} -> {target}")
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
