"""Regenerate the parts of the docs that are made from the code (`make docs`).

Each generated part sits between two markers in its file, ``<!-- generated: NAME -->`` and
``<!-- end: NAME -->``; everything outside them is written by hand. The tests fail when a
generated part is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from latentwire.server.settings import env_file_body, settings_table
from latentwire.shared.package import Manifest, list_packages, read_manifest

REPO = Path(__file__).resolve().parents[1]


def parts() -> dict[str, str]:
    """Generated part name -> its text."""
    return {"settings": settings_table(), "models": models_table()}


def _headline(m: Manifest) -> str:
    """A model's main measured figure, as its manifest records it."""
    x = m.metrics
    if m.task == "codec" and "ir_bytes" in x:
        return f"{x['ir_bytes']} B an image ({x['bpp']} bpp), {x['psnr_db']} dB, SSIM {x['ssim']}"
    if m.task == "codec":
        kind = "" if m.config["shape"]["channels"] == 1 else "RGB "
        return f"{x['bpp']} bpp, {x['psnr_db']} dB {kind}PSNR on {x['test_set']}"
    if m.task == "upscale":
        return ", ".join(
            f"{name} {v['psnr_y_db_model']} dB Y (bicubic {v['psnr_y_db_bicubic']})"
            for name, v in x.items()
        )
    if m.task == "generate":
        floor, covered = x["real_floor"], x["classes_covered"]
        return f"Fréchet {x['frechet_distance']} (real data {floor}), {covered} classes"
    if m.task == "classify":
        return f"{x['test_accuracy']:.1%} test accuracy"
    return f"{x['psnr_db']:.2f} dB, SSIM {x['ssim']:.3f}"


def _trained(m: Manifest) -> str:
    """This stage's epochs, time and hardware; earlier stages are in the manifest's init."""
    t = m.training
    stages, init = 1, t.get("init")
    while init:
        stages, init = stages + 1, init.get("init")
    earlier = f", after {stages - 1} earlier stage{'s' * (stages > 2)}" if stages > 1 else ""
    return f"{t.get('epochs')} epochs, {t.get('seconds', 0):,.0f} s on {t.get('hardware')}{earlier}"


def models_table() -> str:
    """Every shipped model, from its manifest (shared/zoo/*/manifest.json)."""
    rows = [
        "| model | task | family | data | parameters | measured at export | last stage |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in sorted(map(read_manifest, list_packages()), key=lambda m: (m.task, m.id)):
        rows.append(
            f"| `{m.id}` | {m.task} | {m.family} | {m.dataset} | {m.parameters:,} | "
            f"{_headline(m)} | {_trained(m)} |"
        )
    return "\n".join(rows) + "\n"


def fill(text: str, generated: dict[str, str]) -> str:
    for name, body in generated.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end: {name} -->)", re.DOTALL)
        text = pattern.sub(lambda m, body=body: m[1] + body + m[2], text)
    return text


def env_file(text: str) -> str:
    """latentwire.env: its hand-written header, then every setting."""
    header = text.split("\n\n", 1)[0]
    return header + "\n\n" + env_file_body()


def main() -> int:
    generated = parts()
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text()
        new = fill(text, generated)
        if new != text:
            path.write_text(new)
            print(f"updated {path.relative_to(REPO)}")
    env = REPO / "latentwire.env"
    env.write_text(env_file(env.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
