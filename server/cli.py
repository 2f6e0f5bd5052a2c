"""``latentwire serve``: the app under uvicorn, settings from flags or LATENTWIRE_* variables."""

from __future__ import annotations

import argparse
import logging


def run(command: str, argv: list[str]) -> int:
    import uvicorn

    from latentwire.server.app import create_app
    from latentwire.server.settings import Settings

    parser = argparse.ArgumentParser(
        prog="latentwire serve",
        description="Serve the encoders over HTTP. Every setting is also an environment "
        "variable LATENTWIRE_<NAME> (the table in docs/server.md).",
    )
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--model-dir", default=None, help="extra model packages")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-batching", action="store_true", help="one request at a time")
    args = parser.parse_args(argv)
    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "model_dir": args.model_dir,
            "device": args.device,
        }.items()
        if v is not None
    }
    if args.no_batching:
        overrides["batching"] = False
    settings = Settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    return 0
