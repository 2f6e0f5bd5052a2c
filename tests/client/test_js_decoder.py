"""The JavaScript decoder (client/js) against the Python client: IRs of every shipped codec
(and of small hyperprior codecs made here, format 3: of any size, and one of a fixed size
named by a deployment code) are written with the Python client's pixels into a folder, and
`node --test client/js/test/` must decode each to them (at most one level apart:
onnxruntime-web and onnxruntime may differ in a float's last bit) and pass its own fuzz and
package tests. `make test` installs node_modules (`npm ci`)."""

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
from PIL import Image

from latentwire.client import DecoderStore, decode_array, decode_batch
from latentwire.shared.codec import Codec
from latentwire.shared.coding import decode_hyper
from latentwire.shared.decoder_package import digest_of
from latentwire.shared.images import SIGNED
from latentwire.shared.package import ZOO_DIR, Manifest, list_packages, read_manifest
from latentwire.shared.wire import IR, IRError, parse
from latentwire.training.data import load_datasets

REPO = Path(__file__).resolve().parents[2]
JS = REPO / "client" / "js"
CODECS = [p for p in list_packages() if read_manifest(p).task == "codec"]
SMALL_IMAGES = 4  # test images per 28x28 codec
PHOTO_CROP = (100, 140)  # (height, width): not a multiple of the stride, so it crops
FIXED = (1, 40, 24)  # a deployment's codec of one geometry: synthesized as 48x32, cropped
CODE = 7  # its deployment code: -7 on the wire


@pytest.fixture(scope="module")
def node() -> str:
    """node, with client/js's packages installed (checked before the golden data is made)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: `make system-packages` installs nodejs and npm")
    if not (JS / "node_modules" / "onnxruntime-web").is_dir():
        pytest.fail("client/js/node_modules is missing: run `make js-deps` (npm ci in client/js)")
    return node


def small_hyper_codec(
    folder: Path,
    model_id: str,
    mean: bool,
    seed: int,
    fixed: tuple[int, int, int] | None = None,
    code: int | None = None,
) -> Codec:
    """An untrained hyperprior codec of random hyper-synthesis weights of a trained size
    (as tests/shared/test_hyper.py makes one): its scales are often misjudged, so its
    IRs exercise the excess symbols too. With ``fixed`` (C, H, W), of that one geometry;
    with ``code``, named in its IRs by that deployment code."""
    from tests.shared.test_hyper import packaged, small_model

    return packaged(small_model(mean, seed, fixed), model_id, folder, code)


def excesses(ir: bytes, store: DecoderStore) -> int:
    """How many values of a hyperprior IR's latent sit on their table's edge."""
    parsed = parse(ir)
    decoder = store.get(parsed.model, parsed.digest)
    h, w = decoder.latent_shape(parsed)[1:]
    package = decoder.package
    radii = np.array([t.radius for t in package.hyper.scale_tables])
    index = []

    def parameters(z):
        index.append(package.hyper.synthesis(z, (h, w))[0])
        return index[0]

    z_shape = (package.tables.channels, -(-h // 4), -(-w // 4))
    tables = package.hyper.scale_tables
    _, y = decode_hyper(
        parsed.payload, package.tables, z_shape, tables, parameters, excess=package.hyper.excess
    )
    return int((np.abs(y) >= radii[index[0]]).sum())


def photo(data_dir: Path, name: str, mode: str, box: tuple[int, int] | None) -> np.ndarray:
    """A Kodak photo (its top-left ``box`` (height, width)) as a uint8 (C, H, W) array."""
    with Image.open(data_dir / "kodak" / name) as image:
        pixels = np.asarray(image.convert(mode))
    if box is not None:
        pixels = pixels[: box[0], : box[1]]
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels)


@pytest.fixture(scope="module")
def golden(tmp_path_factory, data_dir) -> Path:
    """IRs of real images and the Python client's pixels, for client/js/test/."""
    root = tmp_path_factory.mktemp("js-golden")
    made = root / "packages"  # the format-3 codecs made here
    made.mkdir()
    cases = []

    def add(name: str, ir: bytes, store: DecoderStore | None = None) -> None:
        pixels = decode_array(ir, store)
        (root / f"{name}.lw").write_bytes(ir)
        (root / f"{name}.pixels").write_bytes(np.ascontiguousarray(pixels).tobytes())
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        model = parse(ir).model
        height, width = pixels.shape[:2]
        cases.append(dict(name=name, model=model, height=height, width=width, channels=channels))

    test_sets = {}
    for folder in CODECS:
        codec = Codec.load(folder)
        manifest = codec.manifest
        channels = codec.package.image_shape[0]
        if codec.package.image_shape[1]:  # 28x28: the first test images of its data set
            if manifest.dataset not in test_sets:
                _, test_set, _ = load_datasets(manifest.dataset, data_dir=data_dir)
                x = torch.stack([test_set[i] for i in range(SMALL_IMAGES)])
                test_sets[manifest.dataset] = list(SIGNED.to_pixels(x).to(torch.uint8).numpy())
            images = test_sets[manifest.dataset]
        else:  # any size: a crop of a photo, and the whole photo for one level
            mode = "L" if channels == 1 else "RGB"
            images = [photo(data_dir, "kodim05.png", mode, PHOTO_CROP)]
            if manifest.id == "photo-q1":
                # 64 x 1536 pixels: 96 latent columns, two overlapping synthesis windows.
                wide = np.concatenate(
                    [photo(data_dir, n, mode, (64, 768)) for n in ("kodim01.png", "kodim05.png")],
                    axis=2,
                )
                images += [photo(data_dir, "kodim01.png", mode, None), wide]
        for i, ir in enumerate(codec.compress(images)):
            add(f"{manifest.id}-{i}", ir)

    hyper_codecs = [
        (small_hyper_codec(made, model_id, mean, seed), seed)
        for model_id, mean, seed in (("hyper-mean-test", True, 4), ("hyper-scale-test", False, 5))
    ]
    # Of a fixed size, named by a code: its IRs (and their mutations) carry no size.
    fixed = small_hyper_codec(made, "deployment-test", False, 6, FIXED, CODE)
    # The shipped codecs and those made here; it lists its folders once: after both are made.
    store = DecoderStore(search_dirs=[made])
    edges = 0
    for codec, seed in hyper_codecs:
        model_id = codec.manifest.id
        images = [
            photo(data_dir, "kodim05.png", "RGB", (90, 140)),
            np.random.default_rng(seed).integers(0, 256, (3, 70, 50)).astype(np.uint8),
        ]
        for i, ir in enumerate(codec.compress(images)):
            add(f"{model_id}-{i}", ir, store)
            edges += excesses(ir, store)
    assert edges > 0, "no hyperprior IR here codes an excess: the test would not cover it"
    rng = np.random.default_rng(6)
    for i, ir in enumerate(fixed.compress([rng.integers(0, 256, FIXED, np.uint8)] * 2)):
        add(f"deployment-test-{i}", ir, store)

    mutated = mutations(root, cases, store)
    (root / "cases.json").write_text(
        json.dumps(
            {"packageDirs": [str(ZOO_DIR), str(made)], "cases": cases, "mutated": mutated},
            indent=1,
        )
    )
    return root


MUTATIONS = 400


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """flip / truncate / append / splice, as test_decode.py mutates IRs."""
    ir = bytearray(data)
    action = rng.integers(4)
    if action == 0:
        for _ in range(rng.integers(1, 5)):
            ir[rng.integers(len(ir))] ^= 1 << int(rng.integers(8))
    elif action == 1:
        ir = ir[: rng.integers(len(ir))]
    elif action == 2:
        ir += rng.bytes(int(rng.integers(1, 33)))
    else:
        i = int(rng.integers(len(ir) + 1))
        ir[i:i] = rng.bytes(int(rng.integers(1, 9)))
    return bytes(ir)


def mutations(root: Path, cases: list[dict], store: DecoderStore) -> list[dict]:
    """Mutated IRs (half of them in the payload only) and what the Python client makes of
    each: the JS decoder must refuse the same ones and decode the others alike."""
    rng = np.random.default_rng(7)
    small = [c for c in cases if c["height"] * c["width"] <= 140 * 100]
    out = []
    for i in range(MUTATIONS):
        case = small[rng.integers(len(small))]
        ir = (root / f"{case['name']}.lw").read_bytes()
        if i % 2:
            parsed = parse(ir)
            ir = IR(parsed.model, parsed.digest, mutate(rng, parsed.payload), parsed.size)
            ir = ir.to_bytes()
        else:
            ir = mutate(rng, ir)
        name = f"mutated-{i}"
        (root / f"{name}.lw").write_bytes(ir)
        try:
            pixels = decode_array(ir, store)
        except IRError:
            out.append(dict(name=name, decoded=False))
            continue
        (root / f"{name}.pixels").write_bytes(np.ascontiguousarray(pixels).tobytes())
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        height, width = pixels.shape[:2]
        out.append(dict(name=name, decoded=True, height=height, width=width, channels=channels))
    return out


def test_the_js_decoder_gives_the_python_clients_pixels(node, golden):
    env = {**os.environ, "LATENTWIRE_JS_GOLDEN": str(golden)}
    result = subprocess.run(
        [node, "--test", "--test-reporter=dot", "client/js/test/"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    report = json.loads((golden / "report.json").read_text())
    expected = {read_manifest(p).id for p in CODECS} | {"hyper-mean-test", "hyper-scale-test"}
    expected.add(str(CODE))  # the report is keyed by the IR's model: the code, for that one
    assert set(report["maxDifference"]) == expected
    assert max(report["maxDifference"].values()) <= 1, report


# Decodes each IR named in a JSON list of {name, ir, options} with client/js and prints
# {name: {width, height, gray} or {code, message}}: the images' R channel (= G = B for a
# grayscale codec's), or the IRError.
DECODE_JS = """
import { readFileSync } from 'node:fs';
const { decode, IRError } = await import(process.env.LATENTWIRE_JS_MODULE);
const out = {};
for (const c of JSON.parse(readFileSync(process.argv[2], 'utf8'))) {
  try {
    const image = await decode(readFileSync(c.ir), { ...c.options, browserCache: false });
    const gray = Array.from(image.data.filter((_, i) => i % 4 === 0));
    out[c.name] = { width: image.width, height: image.height, gray };
  } catch (e) {
    if (!(e instanceof IRError)) throw e;
    out[c.name] = { code: e.code, message: e.message };
  }
}
console.log(JSON.stringify(out));
"""


def js_decode(node: str, folder: Path, cases: list[dict]) -> dict:
    """client/js's decode of each case ({name, ir: bytes, options}), through DECODE_JS."""
    spec = []
    for c in cases:
        (folder / f"{c['name']}.lw").write_bytes(c["ir"])
        spec.append({**c, "ir": str(folder / f"{c['name']}.lw")})
    (folder / "cases.json").write_text(json.dumps(spec))
    (folder / "decode.mjs").write_text(DECODE_JS)
    env = {**os.environ, "LATENTWIRE_JS_MODULE": (JS / "latentwire.js").as_uri()}
    result = subprocess.run(
        [node, str(folder / "decode.mjs"), str(folder / "cases.json")],
        cwd=JS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"node failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def test_a_fixed_size_hyperprior_codec_named_by_its_code_decodes_to_the_python_pixels(
    node, tmp_path
):
    """A deployment's hyperprior codec of one geometry (40x24, synthesized as 48x32 at
    stride 16): its IRs name it by code 7 and carry no size; the JS decoder finds its
    package by that code (the folder's manifest.json, as the Python client) and decodes
    them to exactly the Python client's pixels. A package of another digest with the code,
    and one of the IR's digest with another code, are refused by both."""
    mine, other, liar = tmp_path / "mine", tmp_path / "other", tmp_path / "liar"
    codec = small_hyper_codec(mine, "mine-q3", False, 5, FIXED, CODE)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, FIXED, np.uint8) for _ in range(3)]
    irs = codec.compress(images)
    for ir in irs:
        fields = msgpack.unpackb(ir)
        assert len(fields) == 4 and fields[1] == -CODE  # no size; the code, one byte
    expected = decode_batch(irs, DecoderStore([mine]))

    # Another version of the model (the same code, another digest).
    small_hyper_codec(other, "mine-q3", False, 6, FIXED, CODE)
    # The IR's package with code 8, where a manifest says 7 (and an IR of its digest).
    relabelled = dataclasses.replace(codec.package, code=8).to_bytes()
    (liar / "mine-q3").mkdir(parents=True)
    (liar / "mine-q3" / "decoder.msgpack").write_bytes(relabelled)
    manifest = Manifest(
        id="mine-q3", family="hyperprior", config={}, dataset="-", task="codec", code=CODE
    )
    (liar / "mine-q3" / "manifest.json").write_text(manifest.to_json())
    relabelled_ir = IR(CODE, digest_of(relabelled), parse(irs[0]).payload).to_bytes()
    refusals = {
        "other-version": (irs[0], other, "digest-mismatch", "different version"),
        "other-code": (relabelled_ir, liar, "bad-decoder", "is for 8, not 7"),
    }
    for ir, folder, _, message in refusals.values():
        with pytest.raises(IRError, match=message):
            decode_batch([ir], DecoderStore([folder]))

    cases = [
        dict(name=f"fixed-{i}", ir=ir, options={"packageDirs": [str(mine)]})
        for i, ir in enumerate(irs)
    ]
    cases += [
        dict(name=name, ir=ir, options={"packageDirs": [str(folder)]})
        for name, (ir, folder, _, _) in refusals.items()
    ]
    decoded = js_decode(node, tmp_path, cases)
    for i, pixels in enumerate(expected):
        got = decoded[f"fixed-{i}"]
        assert "code" not in got, got
        assert (got["height"], got["width"]) == pixels.shape == FIXED[1:]
        np.testing.assert_array_equal(np.array(got["gray"], np.uint8).reshape(pixels.shape), pixels)
    for name, (_, _, code, _) in refusals.items():
        assert decoded[name].get("code") == code, decoded[name]
