"""Mixed load on one server: /encode while /upscale is busy, against each alone.

One real server (uvicorn on loopback) and, from this process, two closed loops: /encode of
Fashion-MNIST PNGs as raw bodies (what ``Client.encode`` sends) at ``--encode-concurrency``,
and /upscale of a 481x321 BSD100 photo by ``--upscale-clients`` clients without pause. In
each round it measures /encode alone, /upscale alone, then both at once, so the three
conditions are taken minutes apart at most (this machine's speed drifts); latencies are
pooled over the rounds.

The targets (issue 23): mixed, /encode's p99 at most 3x its p99 alone and under 50 ms,
/encode at least 300 req/s, /upscale at least 70% of its images/s alone.

    python benchmarks/mixed_load.py --seconds 8 --rounds 3 --out benchmarks/results
    # a server setting changed, e.g. the upscaler's threads:
    python benchmarks/mixed_load.py --server-env LATENTWIRE_UPSCALE_THREADS=1
    # one setting at several values, a server each, measured in turn in every round:
    python benchmarks/mixed_load.py --vary LATENTWIRE_UPSCALE_PRIORITY=0,1,2
"""

from __future__ import annotations

import argparse
import gc
import io
import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from encode_load import fashion_pngs, request_maker
from loadgen import Load, describe_machine, drive_together, print_table, server
from PIL import Image

from latentwire.training.data import default_data_dirs, image_files

CONDITIONS = ("encode alone", "upscale alone", "mixed")


def photo_body(data_dir: Path) -> tuple[bytes, int]:
    """The first BSD100 photo as a PNG (481x321 or 321x481) and its pixel count."""
    with Image.open(image_files(data_dir / "bsd100")[0]) as image:
        image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue(), image.width * image.height


def summarize(rows: list[dict]) -> dict:
    """One condition's rounds of one load: mean rate, percentiles of the pooled latencies."""
    lat = np.concatenate([r["latencies_ms"] for r in rows])
    return {
        "requests_per_s": round(float(np.mean([r["requests_per_s"] for r in rows])), 2),
        "images_per_s": round(float(np.mean([r["images_per_s"] for r in rows])), 3),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "requests": len(lat),
        "errors": sum(r["errors"] for r in rows),
        "server_cores": round(float(np.mean([r.get("server_cores", 0) for r in rows])), 2),
        "rounds_requests_per_s": [r["requests_per_s"] for r in rows],
    }


def label(variant: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in variant.items()) or "default"


def verdict(by: dict[tuple[str, str], dict]) -> dict:
    """The targets, for one server: (route, condition) -> its summary."""
    enc_alone, enc_mixed = by["encode", "encode alone"], by["encode", "mixed"]
    up_alone, up_mixed = by["upscale", "upscale alone"], by["upscale", "mixed"]
    found = {
        "encode_p99_ratio": round(enc_mixed["p99_ms"] / enc_alone["p99_ms"], 2),
        "encode_p99_ms": enc_mixed["p99_ms"],
        "encode_requests_per_s": enc_mixed["requests_per_s"],
        "upscale_share": round(up_mixed["images_per_s"] / up_alone["images_per_s"], 3),
    }
    found["met"] = {
        "encode p99 <= 3x alone": found["encode_p99_ratio"] <= 3,
        "encode p99 < 50 ms": found["encode_p99_ms"] < 50,
        "encode >= 300 req/s": found["encode_requests_per_s"] >= 300,
        "upscale >= 70% of alone": found["upscale_share"] >= 0.7,
    }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per condition and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encode-concurrency", type=int, default=8)
    parser.add_argument("--upscale-clients", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="repeatable"
    )
    parser.add_argument(
        "--vary", default=None, metavar="NAME=V1,V2", help="one server per value, in turn"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of mixed load")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="mixed_load", help="the result file's name")
    args = parser.parse_args()
    env = dict(pair.split("=", 1) for pair in args.server_env)
    data_dir = args.data_dir or next(d for d in default_data_dirs() if (d / "bsd100").is_dir())

    photo, area = photo_body(data_dir)
    encode = Load(request_maker("raw", fashion_pngs()), args.encode_concurrency)
    upscale = Load(lambda i: ("/upscale", {"data": photo}, 1, area), args.upscale_clients)
    loads = {"encode alone": [encode], "upscale alone": [upscale], "mixed": [encode, upscale]}

    variants = [{}]
    if args.vary:
        name, _, values = args.vary.partition("=")
        variants = [{name: value} for value in values.split(",")]

    gc.collect()
    gc.freeze()  # keep the load generator's collector off its start-up heap
    cells: dict[tuple[str, str, str], list[dict]] = {}
    with ExitStack() as stack:
        running = {  # all started before any is measured
            label(variant): stack.enter_context(server(True, env | variant)) for variant in variants
        }
        for each in running.values():
            drive_together(each, [encode, upscale], args.warmup)
        for round_ in range(args.rounds):
            for condition in CONDITIONS:
                for variant, each in running.items():
                    rows = drive_together(each, loads[condition], args.seconds)
                    for load, row in zip(loads[condition], rows, strict=True):
                        route = "encode" if load is encode else "upscale"
                        cells.setdefault((variant, condition, route), []).append(row)
                        shown = {k: v for k, v in row.items() if k != "latencies_ms"}
                        where = {"round": round_, "variant": variant, "condition": condition}
                        print(json.dumps(where | {"route": route} | shown), flush=True)

    table = [
        {"variant": variant, "route": route, "condition": condition} | summarize(rows)
        for (variant, condition, route), rows in cells.items()
    ]
    verdicts = {}
    for variant in running:
        cells_of = {(r["route"], r["condition"]): r for r in table if r["variant"] == variant}
        verdicts[variant] = verdict(cells_of)
    machine = describe_machine()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": machine,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "encode_concurrency": args.encode_concurrency,
        "upscale_clients": args.upscale_clients,
        "server_env": env,
        "rows": table,
        "verdicts": verdicts,
    }
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    print(f"\n{machine}; {args.rounds} rounds of {args.seconds:.0f} s; server env {env}")
    columns = ["variant", "route", "condition", "requests_per_s", "images_per_s", "p50_ms"]
    print_table(table, [*columns, "p99_ms", "requests", "errors", "server_cores"])
    print(json.dumps(verdicts, indent=2))


if __name__ == "__main__":
    main()
