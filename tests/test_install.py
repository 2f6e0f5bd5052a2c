"""What a user installs: the distributions built from this checkout (sdist, then the wheel
from the sdist, as `python -m build` does), installed into fresh virtual environments at
the pinned versions, and used from outside the checkout.

- the base install, `pip install latentwire`: decodes an IR of every shipped codec with a
  bare `decode(ir)`, offline, with an empty decoder cache and no torch;
- the server install, `pip install "latentwire[server]"`: `latentwire serve` hosts every
  shipped model, makes the IRs the base install decodes, and serves the browser page and
  the JS decoder from latentwire-web (never from the base wheel: its wasm is 14 MB).

Slow (a fresh venv with torch): `make test-packaging` runs these, and CI runs it.
"""

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from latentwire.client import decode_array
from latentwire.shared.decoder_package import DECODER_NAME
from latentwire.shared.package import MANIFEST_NAME, WEIGHTS_NAME, ZOO_DIR, read_manifest
from latentwire.training.data import load_idx_dataset
from tests.conftest import REPO
from tests.server.conftest import free_port

pytestmark = pytest.mark.packaging

ZOO = sorted(p for p in ZOO_DIR.iterdir() if (p / MANIFEST_NAME).is_file())
CODECS = [p for p in ZOO if (p / DECODER_NAME).is_file()]
# The tasks a server hosts (autoencoders and classifiers are for training and evaluation).
SERVED = {m.id for m in map(read_manifest, ZOO) if m.task in ("codec", "upscale", "generate")}
BUDGET_MB = 25  # the installed `latentwire` package of the base install (README, Install)
WEB_FILES = (
    "latentwire.js",
    "page/index.html",
    "node_modules/@msgpack/msgpack/dist.esm/index.mjs",
    "node_modules/onnxruntime-web/dist/ort.wasm.bundle.min.mjs",
    "node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """sdist and wheel of `latentwire` (the repo root), `latentwire-weights` (zoo/) and
    `latentwire-web` (client/js/, from its npm ci-installed node_modules)."""
    out = tmp_path_factory.mktemp("dist")
    for project in (REPO, REPO / "shared" / "zoo", REPO / "client" / "js"):
        subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(out), str(project)],
            check=True,
            capture_output=True,
        )
    found = {
        "wheel": out / "latentwire-0.1.0-py3-none-any.whl",
        "sdist": out / "latentwire-0.1.0.tar.gz",
        "weights": out / "latentwire_weights-0.1.0-py3-none-any.whl",
        "weights_sdist": out / "latentwire_weights-0.1.0.tar.gz",
        "web": out / "latentwire_web-0.1.0-py3-none-any.whl",
        "web_sdist": out / "latentwire_web-0.1.0.tar.gz",
    }
    assert all(p.is_file() for p in found.values()), sorted(p.name for p in out.iterdir())
    return found


def fresh_venv(path: Path, *requirements: str, find_links: Path | None = None) -> Path:
    """A new venv with ``requirements`` installed by pip at the pinned versions."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    links = ["--find-links", str(find_links)] if find_links else []
    subprocess.run(
        [
            str(path / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-qq",  # quiet, and without warnings about this machine's pip settings
            "--disable-pip-version-check",
            "-c",
            str(REPO / "constraints.txt"),
            *links,
            *requirements,
        ],
        check=True,
    )
    return path / "bin" / "python"


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def test_each_distribution_holds_what_its_install_needs(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    # One namespace: nothing lands in site-packages as a bare `server` or `shared`.
    assert {n.split("/")[0] for n in names} == {"latentwire", "latentwire-0.1.0.dist-info"}
    for sub in ("server", "client", "shared", "training"):
        assert f"latentwire/{sub}/__init__.py" in names
    # The receiver's part of the zoo: every manifest and every codec's decoder, no weights.
    for folder in ZOO:
        assert f"latentwire/shared/zoo/{folder.name}/{MANIFEST_NAME}" in names
    for folder in CODECS:
        assert f"latentwire/shared/zoo/{folder.name}/{DECODER_NAME}" in names
    assert not [n for n in names if n.endswith(".safetensors")]
    # Nor the browser's files: they are latentwire-web's.
    assert not [n for n in names if n.endswith((".wasm", ".js", ".mjs", ".html"))]
    # The sdist carries the same files (the wheel above was built from it).
    with tarfile.open(dists["sdist"]) as sdist:
        members = sdist.getnames()
    for folder in CODECS:
        assert f"latentwire-0.1.0/shared/zoo/{folder.name}/{DECODER_NAME}" in members

    # The weights, and only the weights, of every shipped model.
    weights = zipfile.ZipFile(dists["weights"]).namelist()
    assert sorted(n for n in weights if not n.startswith("latentwire_weights-0.1.0.dist-info")) == [
        f"latentwire_weights/{folder.name}/{WEIGHTS_NAME}" for folder in ZOO
    ]
    metadata = zipfile.ZipFile(dists["wheel"]).read("latentwire-0.1.0.dist-info/METADATA")
    for extra in ("server", "training"):
        assert f'Requires-Dist: latentwire-weights==0.1.0; extra == "{extra}"'.encode() in metadata
    assert b'Requires-Dist: latentwire-web==0.1.0; extra == "server"' in metadata

    # The page, the decoder and the runtime it loads, in client/js's layout.
    web = set(zipfile.ZipFile(dists["web"]).namelist())
    for path in (*WEB_FILES, "page/page.js", "src/latent.js"):
        assert f"latentwire_web/{path}" in web, path
    assert not [n for n in web if "/test/" in n or n.endswith(".py")]
    with tarfile.open(dists["web_sdist"]) as sdist:  # the wheel above was built from it
        assert "latentwire_web-0.1.0/" + WEB_FILES[-1] in sdist.getnames()


@pytest.fixture(scope="module")
def installed_server(dists, tmp_path_factory):
    """`pip install "latentwire[server]"` in a fresh venv, `latentwire serve` from it, run
    in an empty folder outside the checkout (nothing of the checkout on its path)."""
    root = tmp_path_factory.mktemp("server_install")
    python = fresh_venv(
        root / "venv", f"{dists['wheel']}[server]", find_links=dists["weights"].parent
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATENTWIRE_", "PYTHON"))}
    proc = subprocess.Popen(
        [str(python.parent / "latentwire"), "serve", "--port", str(port), "--device", "cpu"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the installed server did not become ready"
            time.sleep(0.5)
        yield url, root / "venv"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_server_install_serves_every_shipped_model(installed_server):
    url, venv = installed_server
    hosted = {m["id"] for m in httpx.get(f"{url}/models").json()}
    assert hosted == SERVED
    # What it runs is the installed package, not this checkout.
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "latentwire_weights" / "sr2x" / WEIGHTS_NAME).is_file()
    assert not (site / "latentwire" / "shared" / "zoo" / "sr2x" / WEIGHTS_NAME).exists()
    # The page and the JS decoder, from latentwire-web: its files, byte for byte.
    web = site / "latentwire_web"
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.content == (web / "page" / "index.html").read_bytes()
    module = httpx.get(f"{url}/client/latentwire.js")
    assert module.status_code == 200 and "export async function decode" in module.text
    assert "'@msgpack/msgpack'" not in httpx.get(f"{url}/client/src/msgpack.js").text  # rewritten
    wasm = httpx.get(f"{url}/client/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm")
    assert wasm.headers["content-type"] == "application/wasm"
    assert wasm.content == (web / WEB_FILES[-1]).read_bytes()
    print(
        f"\nserver install: latentwire {folder_mb(site / 'latentwire'):.1f} MB, "
        f"latentwire_weights {folder_mb(site / 'latentwire_weights'):.1f} MB, "
        f"the whole venv {folder_mb(venv):.0f} MB"
    )


def test_the_base_install_decodes_every_shipped_codec_offline(
    dists, installed_server, tmp_path, data_dir
):
    url, _ = installed_server
    irs, expected = {}, {}
    for folder in CODECS:
        model = read_manifest(folder).id
        body = sample_png(model, data_dir)
        answer = httpx.post(f"{url}/encode", params={"model": model}, content=body, timeout=60)
        assert answer.status_code == 200, answer.text
        irs[model] = answer.content
        expected[model] = decode_array(answer.content)  # the full install's decoder
    for model, ir in irs.items():
        (tmp_path / f"{model}.lw").write_bytes(ir)

    python = fresh_venv(tmp_path / "venv", str(dists["wheel"]))  # no extras
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    script = f"""
import importlib.util, json, socket, sys
from pathlib import Path
import numpy as np

def refuse(*args, **kwargs):
    raise OSError("no network in this test")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = refuse
assert importlib.util.find_spec("torch") is None, "torch is installed"
from latentwire.client import decode
for path in sorted(Path({str(tmp_path)!r}).glob("*.lw")):
    image = decode(path.read_bytes())
    np.save(path.with_suffix(".npy"), np.asarray(image))
assert "torch" not in sys.modules
import latentwire
print(json.dumps({{"package": str(Path(latentwire.__path__[0]))}}))
"""
    env = {"PATH": os.environ["PATH"], "LATENTWIRE_CACHE": str(cache), "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(python), "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not any(cache.iterdir()), "the decoder cache was written to"
    for model in irs:
        decoded = np.load(tmp_path / f"{model}.npy")
        assert np.array_equal(decoded, expected[model]), model
    # The command line too: `latentwire decode` is a base-install command.
    irs_files = [str(tmp_path / f"{model}.lw") for model in irs]
    subprocess.run(
        [str(python.parent / "latentwire"), "decode", *irs_files, "-o", "png"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    for model in irs:
        png = np.asarray(Image.open(tmp_path / "png" / f"{model}.png"))
        assert np.array_equal(png, expected[model]), model

    package = Path(json.loads(done.stdout.splitlines()[-1])["package"])
    size, venv = folder_mb(package), folder_mb(tmp_path / "venv")
    print(f"\nbase install: the latentwire package {size:.1f} MB, the whole venv {venv:.0f} MB")
    assert size <= BUDGET_MB


def sample_png(model: str, data_dir: Path) -> bytes:
    """A real test image the codec takes: Fashion-MNIST, MNIST or a Kodak photo."""
    if model.startswith(("fashion-mnist", "mnist")):
        name = "mnist" if model.startswith("mnist") else "fashion-mnist"
        test_set = load_idx_dataset(name, train=False, data_dir=data_dir)
        image = Image.fromarray(test_set.images[7, 0].numpy())
    else:
        image = Image.open(data_dir / "kodak" / "kodim23.png")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
