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

REPO = Path(__file__).resolve().parents[1]


def parts() -> dict[str, str]:
    """Generated part name -> its text."""
    return {"settings": settings_table()}


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
