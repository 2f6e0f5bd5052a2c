"""Encode with torch, decode with the light client: real IRs of real test images."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentwire.client import DecoderStore, IRError, decode, decode_array, decode_batch
from latentwire.shared.codec import Codec
from latentwire.shared.images import SIGNED
from latentwire.shared.package import list_packages, read_manifest
from latentwire.shared.wire import IR, parse
from latentwire.training.data import load_datasets
from latentwire.training.metrics import psnr

# The small codecs (the any-size photo codecs have tests of their own).
SHIPPED_CODECS = [
    p
    for p in list_packages()
    if read_manifest(p).task == "codec" and read_manifest(p).dataset != "photos"
]


def load_codec(folder):
    codec = Codec.load(folder)
    return codec, codec.manifest, codec.package


def pixels(x: torch.Tensor) -> list[np.ndarray]:
    """Images in [-1, 1] (a data set's) as the uint8 (C, H, W) arrays a codec takes."""
    return list(SIGNED.to_pixels(x).to(torch.uint8).numpy())


@pytest.fixture(scope="module")
def test_images():
    _, test_set, _ = load_datasets("fashion-mnist")
    return torch.stack([test_set[i] for i in range(64)])


@pytest.fixture(scope="module")
def tiny(tiny_codec, test_images):
    codec, _manifest, package = load_codec(tiny_codec / "tiny")
    store = DecoderStore([tiny_codec])
    irs = codec.compress(pixels(test_images))
    return codec, package, store, irs


def test_decode_matches_the_torch_synthesis(tiny, test_images):
    codec, _, store, irs = tiny
    image = decode(irs[0], store)
    assert image.mode == "L" and image.size == (28, 28)
    model = codec.model
    with torch.inference_mode():
        expected = model.synthesis(torch.round(model.analysis(test_images[:1])))
    expected = torch.round((expected.clamp(-1, 1) + 1) * 127.5)[0, 0].numpy()
    # onnxruntime and torch may differ in the last float bit, so at most one level.
    assert np.abs(np.asarray(image, dtype=np.int16) - expected).max() <= 1


def test_batch_decode_equals_one_by_one(tiny):
    _, _, store, irs = tiny
    batch = decode_batch(irs, store)
    assert len(batch) == len(irs)
    for ir, image in zip(irs[:8], batch[:8], strict=False):
        assert np.array_equal(decode_array(ir, store), image)


def test_same_image_gives_identical_ir_bytes_across_runs_and_processes(tiny, tiny_codec):
    codec, _package, store, irs = tiny
    _, test_set, _ = load_datasets("fashion-mnist")
    again = codec.compress(pixels(torch.stack([test_set[i] for i in range(4)])))
    assert again == irs[:4]
    script = (
        "import sys, hashlib; import numpy as np\n"
        "from latentwire.client import DecoderStore, decode_array\n"
        f"store = DecoderStore([{str(tiny_codec)!r}])\n"
        "data = sys.stdin.buffer.read()\n"
        "print(hashlib.sha256(decode_array(data, store).tobytes()).hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], input=irs[3], capture_output=True, check=True
    )
    import hashlib

    assert (
        out.stdout.decode().strip()
        == hashlib.sha256(decode_array(irs[3], store).tobytes()).hexdigest()
    )


def test_wrong_decoder_version_and_unknown_models_are_refused(tiny):
    _, _package, store, irs = tiny
    ir = parse(irs[0])
    stale = IR(ir.model, ir.digest ^ 1, ir.payload).to_bytes()
    with pytest.raises(IRError, match="different version"):
        decode(stale, store)
    with pytest.raises(IRError, match="no decoder"):
        decode(IR("someone-elses-model", 1, b"").to_bytes(), store)
    with pytest.raises(IRError, match="codes 28x28"):
        decode(IR(ir.model, ir.digest, ir.payload, (4000, 4000)).to_bytes(), store)


def test_an_unreadable_package_is_skipped_and_a_package_exported_again_is_found(
    tiny, tiny_codec, tmp_path
):
    """A corrupt decoder.msgpack.gz in one folder does not hide a good copy in another, and
    is named when it is all there is; a store that indexed a folder reads its package as
    it is now (written again, plain to compressed), never a raw file error."""
    import shutil

    from latentwire.shared.decoder_package import decoder_path, read_decoder, write_decoder

    _, _, _, irs = tiny
    good = decoder_path(tiny_codec / "tiny")
    broken, copy = tmp_path / "broken", tmp_path / "copy"
    shutil.copytree(tiny_codec / "tiny", broken / "tiny")
    shutil.copytree(tiny_codec / "tiny", copy / "tiny")
    (decoder_path(broken / "tiny")).write_bytes(b"\x1f\x8b not really gzip")
    expected = decode_array(irs[0], DecoderStore([tiny_codec]))
    assert np.array_equal(decode_array(irs[0], DecoderStore([broken, copy])), expected)
    with pytest.raises(IRError, match="unusable"):
        decode_array(irs[0], DecoderStore([broken]))

    plain = tmp_path / "plain"
    shutil.copytree(tiny_codec / "tiny", plain / "tiny")
    data = read_decoder(good)
    decoder_path(plain / "tiny").unlink()
    (plain / "tiny" / "decoder.msgpack").write_bytes(data)
    store = DecoderStore([plain])
    assert store.has(parse(irs[0]).model, parse(irs[0]).digest + 1) is False  # indexed now
    write_decoder(plain / "tiny", data)  # the plain file is replaced by the .gz
    assert np.array_equal(decode_array(irs[0], store), expected)


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_irs_only_ever_raise_irerror(tiny, data):
    _, _, store, irs = tiny
    ir = bytearray(data.draw(st.sampled_from(irs[:8])))
    action = data.draw(st.sampled_from(["flip", "truncate", "append", "splice"]))
    if action == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(ir) - 1))
            ir[i] ^= 1 << data.draw(st.integers(0, 7))
    elif action == "truncate":
        ir = ir[: data.draw(st.integers(0, len(ir) - 1))]
    elif action == "append":
        ir += data.draw(st.binary(min_size=1, max_size=32))
    else:
        i = data.draw(st.integers(0, len(ir)))
        ir[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        image = decode_array(bytes(ir), store)
    except IRError:
        return
    assert image.shape == (28, 28) and image.dtype == np.uint8


@pytest.mark.parametrize("folder", SHIPPED_CODECS, ids=lambda p: p.name)
def test_shipped_codec_reaches_its_published_figures(folder, data_dir):
    """The first 2,000 Fashion-MNIST/MNIST test images through real IRs, against the
    manifest's figures for all 10,000 (which the export and the benchmark measure; the
    first 2,000 are within 0.6% and 0.05 dB of them for every shipped level)."""
    codec, manifest, package = load_codec(folder)
    assert package.digest == manifest.decoder_digest
    contexts = package.tables.contexts
    assert manifest.tables == {"from": "counted", "training_images": 60000, "contexts": contexts}
    _, test_set, _ = load_datasets(manifest.dataset, data_dir=data_dir)
    x = pixels(torch.stack([test_set[i] for i in range(2000)]))
    irs = codec.compress(x)
    decoded = np.stack(decode_batch(irs))[:, None]
    size = np.mean([len(ir) for ir in irs])
    assert size == pytest.approx(manifest.metrics["ir_bytes"], rel=0.015)
    assert size < 28 * 28 / 3  # a third of the raw 8-bit image, header included
    score = psnr(np.stack(x), decoded, per_image=True).mean()
    assert score == pytest.approx(manifest.metrics["psnr_db"], abs=0.1)
