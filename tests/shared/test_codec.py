"""The codec object and the choice of codec: one way to code, one place that chooses."""

import numpy as np
import pytest
import torch
from PIL import Image

from latentwire.client import decode_array
from latentwire.shared.codec import (
    Codec,
    CodecChoice,
    CodecLevel,
    NoSuchCodec,
    NoSuchQuality,
    QualityMismatch,
    codec_name,
)
from latentwire.shared.images import SIGNED, UNIT, PixelRange, WrongGeometry, model_input
from latentwire.shared.package import PackageError, find_package, read_manifest

LEVELS = [
    CodecLevel("fashion-mnist-q1", 1, (1, 28, 28)),
    CodecLevel("fashion-mnist-q3", 3, (1, 28, 28)),
    CodecLevel("fashion-mnist-q5", 5, (1, 28, 28)),
    CodecLevel("photo-q2", 2, (3, 0, 0)),
    CodecLevel("photo-q4", 4, (3, 0, 0)),
]


def test_compress_then_decompress_is_what_the_light_client_decodes(data_dir):
    codec = Codec.load("fashion-mnist-q3")
    with Image.open(data_dir / "set5" / "bird.png") as image:
        gray = image.convert("L").resize((28, 28))
    pixels = model_input(gray, codec.shape)
    irs = codec.compress([pixels, pixels])
    assert irs[0] == irs[1] and len(irs[0]) < 200
    (decoded,) = codec.decompress(irs[:1])
    np.testing.assert_array_equal(decoded, decode_array(irs[0]))
    assert decoded.shape == (28, 28)
    with pytest.raises(WrongGeometry, match="28x28 grayscale"):
        model_input(gray.resize((30, 28)), codec.shape)


def test_only_codec_packages_load_as_codecs():
    with pytest.raises(PackageError, match="not a codec"):
        Codec.load("sr2x")


def test_the_level_of_a_manifest_is_the_level_of_the_loaded_codec():
    for model_id in ("fashion-mnist-q2", "photo-q1"):
        manifest = read_manifest(find_package(model_id))
        assert CodecLevel.of(manifest) == Codec.load(model_id).level


@pytest.mark.parametrize(
    "model, quality, image, chosen",
    [
        (None, None, Image.new("L", (28, 28)), "fashion-mnist-q3"),  # auto, default level
        (None, 5, Image.new("L", (28, 28)), "fashion-mnist-q5"),
        (None, None, Image.new("RGB", (28, 28)), "photo-q4"),  # colour: not the small codec's
        (None, None, Image.new("L", (64, 48)), "photo-q4"),  # no level 3: the middle one
        (None, 4, Image.new("RGB", (640, 480)), "photo-q4"),
        ("fashion-mnist", 1, Image.new("RGB", (1, 1)), "fashion-mnist-q1"),  # named: no look
        ("photo-q4", None, Image.new("L", (28, 28)), "photo-q4"),
    ],
)
def test_one_place_chooses_the_codec(model, quality, image, chosen):
    assert CodecChoice(LEVELS).chooser(model, quality)(image) == chosen


def test_a_named_choice_is_checked_before_any_image():
    choice = CodecChoice(LEVELS)
    with pytest.raises(NoSuchCodec):
        choice.chooser("nope", None)
    with pytest.raises(NoSuchQuality, match=r"\[1, 3, 5\]"):
        choice.chooser("fashion-mnist", 2)
    with pytest.raises(QualityMismatch):
        choice.chooser("photo-q4", 2)
    # Without a photo codec, auto sends everything to the small one (whose error explains).
    small_only = CodecChoice(LEVELS[:3])
    assert small_only.chooser(None, None)(Image.new("RGB", (99, 99))) == "fashion-mnist-q3"
    assert codec_name("fashion-mnist-q3") == "fashion-mnist" and codec_name("sr2x") == "sr2x"


def test_pixel_ranges_keep_the_arithmetic_every_model_was_trained_with():
    u = torch.arange(256, dtype=torch.float32)
    assert torch.equal(SIGNED.to_model(u), u / 127.5 - 1)  # codecs, autoencoders
    assert torch.equal(UNIT.to_model(u), u / 255.0)  # generators, SR, classifiers
    for pixel_range in (SIGNED, UNIT):
        back = pixel_range.to_pixels(pixel_range.to_model(u))
        assert torch.equal(back, u)
        np.testing.assert_array_equal(pixel_range.to_pixels(pixel_range.to_model(u.numpy())), u)
    assert PixelRange.from_json([-1, 1]) == SIGNED
    with pytest.raises(ValueError):
        PixelRange.from_json([0, 255])


@pytest.mark.parametrize("model", ["fashion-mnist-q3", "photo-q3"])
def test_a_higher_effort_decodes_with_the_same_decoder_and_costs_no_more(model, data_dir):
    """Over real images (Fashion-MNIST; Kodak crops for the photo codec), effort 1's IRs,
    decoded by the light client with the shipped decoder, cost no more in rate + lambda *
    distortion than effort 0's; and an image gives the same bytes alone as in company."""
    from latentwire.client import decode_batch
    from latentwire.training.data import load_idx_dataset

    codec = Codec.load(model)
    if model == "photo-q3":
        images = []
        for name in ("kodim05.png", "kodim14.png", "kodim21.png", "kodim23.png"):
            with Image.open(data_dir / "kodak" / name) as photo:
                crop = np.asarray(photo.convert("RGB"))[:64, :96]
            images.append(np.ascontiguousarray(crop.transpose(2, 0, 1)))
    else:
        test_set = load_idx_dataset("fashion-mnist", train=False, data_dir=data_dir)
        images = list(test_set.images[:12].numpy())
    costs = {}
    for effort in (0, 1):
        irs = codec.compress(images, effort)
        decoded = np.stack([np.atleast_3d(d) for d in decode_batch(irs)]).astype(np.float64)
        squared_error = ((decoded - np.stack(images).transpose(0, 2, 3, 1)) ** 2).sum()
        # The training loss times the pixels: lambda * 255^2 * MSE on [0, 1] per channel.
        costs[effort] = 8 * sum(map(len, irs)) + codec.lmbda * squared_error / images[0].shape[0]
    assert costs[1] <= costs[0]
    assert codec.compress(images[3:4], 1) == codec.compress(images, 1)[3:4]
    with pytest.raises(ValueError, match="effort"):
        codec.compress(images[:1], 4)


def test_auto_sends_grayscale_photos_to_the_grayscale_codec_when_there_is_one():
    levels = [*LEVELS, CodecLevel("photo-gray-q2", 2, (1, 0, 0))]
    choose = CodecChoice(levels).chooser(None, 2)
    assert choose(Image.new("L", (640, 480))) == "photo-gray-q2"
    assert choose(Image.new("LA", (64, 48))) == "photo-gray-q2"
    assert choose(Image.new("RGB", (640, 480))) == "photo-q2"
    with pytest.raises(NoSuchQuality):  # the small codec fits, and has no level 2
        choose(Image.new("L", (28, 28)))
