"""Model packages: a folder with ``manifest.json`` and ``model.safetensors``.

The manifest carries everything needed to rebuild and trust the model: its family and
config, the data set, the exact training command, and its measured metrics. Weights are
safetensors; nothing is ever unpickled from a package. Reading a manifest needs no torch.

The shipped packages (``zoo/``) are split across two distributions: ``latentwire`` installs
each one's manifest and, for a codec, its decoder package (all a receiver needs);
``latentwire-weights`` (pulled in by the server and training extras) installs the weights,
as ``latentwire_weights/<folder>/model.safetensors``. In a checkout both sit in the folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentwire.shared.images import SIGNED, UNIT, PixelRange

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "model.safetensors"
MANIFEST_FORMAT = 1
ZOO_DIR = Path(__file__).parent / "zoo"
WEIGHTS_DISTRIBUTION = "latentwire_weights"  # the import name of latentwire-weights


class PackageError(ValueError):
    """A model package is missing, malformed or does not match its manifest."""


@dataclass
class Manifest:
    id: str
    family: str
    config: dict[str, Any]
    dataset: str
    task: str = "autoencoder"  # or "codec", "upscale"
    quality: int | None = None  # codecs: the quality level, 1 = fewest bytes
    decoder_digest: int | None = None  # codecs: the digest IRs carry (see decoder_package)
    code: int | None = None  # codecs of a deployment: the model code its IRs carry (wire)
    tables: dict[str, Any] | None = None  # codecs: how the coding tables were made
    training: dict[str, Any] = field(default_factory=dict)  # command, epochs, seconds, hardware
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    parameters: int = 0
    created: str = ""
    format: int = MANIFEST_FORMAT
    # The values the model computes in for pixels 0..255 (latentwire.shared.images);
    # packages written before it was recorded get their task's convention.
    pixel_range: list[float] | None = None

    def __post_init__(self) -> None:
        if self.pixel_range is None:
            signed = self.task in ("codec", "autoencoder")
            self.pixel_range = (SIGNED if signed else UNIT).to_json()
        PixelRange.from_json(self.pixel_range)  # a clear error for anything else

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PackageError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise PackageError(f"{where}: expected a JSON object")
        if data.get("format") != MANIFEST_FORMAT:
            raise PackageError(f"{where}: manifest format {data.get('format')!r} is not supported")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"id", "family", "config", "dataset"} - set(data)
        if missing:
            raise PackageError(f"{where}: missing fields {sorted(missing)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as e:
            raise PackageError(f"{where}: {e}") from None


def read_manifest(package_dir: str | os.PathLike) -> Manifest:
    path = Path(package_dir) / MANIFEST_NAME
    if not path.is_file():
        raise PackageError(f"{package_dir}: no {MANIFEST_NAME}; is this a model package?")
    return Manifest.from_json(path.read_text(), where=str(path))


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_weights_path(package_dir: str | os.PathLike) -> Path:
    """The package's weights file, after checking it against the manifest's digest."""
    manifest = read_manifest(package_dir)
    shipped = Path(package_dir).resolve().parent == ZOO_DIR.resolve()
    path = Path(package_dir) / WEIGHTS_NAME
    if not path.is_file() and shipped:
        path = _installed_weights(Path(package_dir).name) or path
    if not path.is_file():
        raise PackageError(
            f"the weights of {manifest.id} are not installed (the base install holds only "
            "what decoding needs): pip install 'latentwire[server]' or 'latentwire[training]'"
            if shipped
            else f"{package_dir}: no {WEIGHTS_NAME}"
        )
    if manifest.weights_sha256 and file_sha256(path) != manifest.weights_sha256:
        raise PackageError(f"{path}: contents do not match the manifest's sha256")
    return path


def _installed_weights(folder: str) -> Path | None:
    """A shipped package's weights where latentwire-weights installed them, if it did."""
    spec = importlib.util.find_spec(WEIGHTS_DISTRIBUTION)
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / folder / WEIGHTS_NAME
        if path.is_file():
            return path
    return None


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that a reader (or a crash) never sees it half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; packages are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_packages(root: str | os.PathLike = ZOO_DIR) -> list[Path]:
    """Every model package directly under ``root``, sorted by folder name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / MANIFEST_NAME).is_file())


def package_folder(model: str | os.PathLike) -> Path:
    """A package given as its folder, or else the shipped package with that id."""
    folder = Path(model)
    return folder if (folder / MANIFEST_NAME).is_file() else find_package(str(model))


def find_package(model_id: str, roots: list[Path] | None = None) -> Path:
    """The package folder of a model id, looked up among the shipped models (and ``roots``)."""
    for root in [*(roots or []), ZOO_DIR]:
        for package in list_packages(root):
            if read_manifest(package).id == model_id:
                return package
    known = [read_manifest(p).id for r in [*(roots or []), ZOO_DIR] for p in list_packages(r)]
    raise PackageError(f"unknown model {model_id!r}; known: {', '.join(known) or 'none'}")
