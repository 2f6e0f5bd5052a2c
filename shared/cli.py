"""The ``latentwire`` command: one entry point, one module per subcommand.

Each subcommand lives in the package that owns it and is imported only when run, so
``latentwire decode`` works in a client-only install without torch.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv), extra it needs, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("latentwire.training.cli", "training", "train a model (ae, codec, sr, gan, ...)"),
    "eval": ("latentwire.training.cli", "training", "measure a checkpoint or model package"),
    "export": ("latentwire.training.cli", "training", "turn a checkpoint into a model package"),
    "serve": ("latentwire.server.cli", "server", "run the HTTP server"),
    "encode": ("latentwire.client.cli", "client", "encode images into IR files via a server"),
    "decode": ("latentwire.client.cli", "client", "decode IR files into PNGs, locally"),
    "models": ("latentwire.client.cli", "client", "list a server's models"),
    "inspect": (
        "latentwire.client.cli",
        "client",
        "one image through a codec: reconstruction, error, where the bits went",
    ),
    "downscale": ("latentwire.client.cli", "client", "make LR images for SR training"),
    "upscale": ("latentwire.client.cli", "client", "upscale images 2x, here or on a server"),
    "sample": (
        "latentwire.client.cli",
        "client",
        "a grid of generated images, here or on a server",
    ),
}

USAGE = "usage: latentwire COMMAND [options]   (latentwire COMMAND --help for each)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\ncommands:")
        for name, (_, _, help_text) in COMMANDS.items():
            print(f"  {name:<10} {help_text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"latentwire: unknown command {name!r}\n{USAGE}", file=sys.stderr)
        return 2
    module_name, extra, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        print(
            f"latentwire {name} needs the [{extra}] extra ({e.name} is not installed): "
            f"pip install 'latentwire[{extra}]'",
            file=sys.stderr,
        )
        return 1
    return module.run(name, rest) or 0


if __name__ == "__main__":
    sys.exit(main())
