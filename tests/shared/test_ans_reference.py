"""The from-first-principles decoder (ans_reference.py, the executable specification for
other-language decoders) against constriction and latentwire's own decoding: the exact
24-bit tables, the coder's state after every symbol, and the latents of every shipped codec
from real test images."""

from itertools import pairwise
from pathlib import Path

import constriction
import numpy as np
import pytest
from PIL import Image

from latentwire.shared import coding, hyper
from latentwire.shared.codec import Codec
from latentwire.shared.coding import SymbolTables
from latentwire.shared.models.codec import pad_to_stride
from latentwire.shared.package import list_packages, read_manifest
from latentwire.shared.wire import parse
from tests.shared import ans_reference as ref

TOTAL = 1 << coding.FREQUENCY_BITS


def random_row(rng: np.random.Generator, n: int, ones: float = 0.0) -> np.ndarray:
    """n positive integer frequencies summing to 2**16: a random, often very peaked pmf,
    with about a fraction ``ones`` of the entries forced to frequency 1."""
    weights = rng.exponential(size=n) ** rng.uniform(1, 8)
    forced = rng.random(n) < ones
    forced[rng.integers(n)] = False  # one entry keeps a weight
    weights[forced] = 0
    row = np.maximum(1, np.floor(weights / weights.sum() * (TOTAL - n))).astype(np.int64)
    row[np.argmax(row)] += TOTAL - row.sum()
    assert row.min() >= 1 and row.sum() == TOTAL
    return row


def rows_of(rng: np.random.Generator) -> list[np.ndarray]:
    rows = [np.array([1, TOTAL - 1]), np.array([TOTAL - 1, 1]), np.array([TOTAL // 2] * 2)]
    rows += [np.array([1] * 5 + [TOTAL - 10] + [1] * 5), np.ones(TOTAL, np.int64)]
    for n in (3, 5, 13, 69, 83, 165, 1023):
        rows += [random_row(rng, n), random_row(rng, n, ones=0.5)]
    return [*rows, random_row(rng, 5000, ones=0.7)]


def left_cumulative(symbols, model, *params) -> list[int]:
    """constriction's left cumulative of each symbol, read off the coder: one symbol pushed
    on an empty coder (state 0) leaves state = cdf[symbol], and its compressed words are
    that state ([] for 0)."""
    lefts = []
    for symbol in symbols:
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(np.array([symbol], np.int32), model, *params)
        words = coder.get_compressed()
        assert len(words) <= 1
        lefts.append(int(words[0]) if len(words) else 0)
    return lefts


def test_cumulative_tables_are_constrictions():
    rng = np.random.default_rng(0)
    family = constriction.stream.model.Categorical(perfect=False)
    for row in rows_of(rng):
        n = len(row)
        cdf = ref.cumulative([int(f) for f in row])
        assert cdf[0] == 0 and cdf[-1] == 1 << ref.PRECISION and len(cdf) == n + 1
        assert all(b - a >= 1 for a, b in pairwise(cdf))
        symbols = range(n) if n <= 1100 else [0, 1, n - 1, *rng.integers(0, n, 300)]
        p = row / TOTAL  # exactly what SymbolTables.probabilities holds
        model = constriction.stream.model.Categorical(p, perfect=False)
        expected = [cdf[s] for s in symbols]
        assert left_cumulative(symbols, model) == expected
        assert left_cumulative(symbols, family, p[None]) == expected
    # The closed form: n symbols of frequency 2**16 / n.
    assert ref.cumulative([TOTAL // 4] * 4) == [0, 1 << 22, 2 << 22, 3 << 22, 1 << 24]
    assert ref.cumulative([1] * TOTAL)[:4] == [0, 256, 512, 768]


def to_payload(coder) -> bytes:
    return coder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


def constriction_decoder(payload: bytes):
    padded = payload + b"\0" * (-len(payload) % 4)
    return constriction.stream.stack.AnsCoder(np.frombuffer(padded, "<u4").astype(np.uint32))


def test_random_streams_decode_state_for_state_like_constriction():
    """Random tables (frequencies of 1, long rows) and symbols, constriction encoding:
    after every symbol the reference holds constriction's state and words left (pos()),
    also past the end; both encoders write the same bytes."""
    rng = np.random.default_rng(1)
    family = constriction.stream.model.Categorical(perfect=False)
    for trial in range(120):
        n = int(rng.choice([2, 3, 13, 83, 1023, 5000]))
        count = int(rng.integers(0, 80))
        rows = [random_row(rng, n, ones=float(rng.choice([0.0, 0.5, 0.9]))) for _ in range(count)]
        rows = np.array(rows, np.int64).reshape(count, n)
        if trial % 2:  # symbols as the tables expect them, or anything (improbable ones too)
            symbols = np.array([rng.choice(n, p=r / TOTAL) for r in rows], np.int32)
        else:
            symbols = rng.integers(0, n, count).astype(np.int32)
        coder = constriction.stream.stack.AnsCoder()
        if count:
            coder.encode_reverse(symbols, family, rows / TOTAL)
        payload = to_payload(coder)
        assert ref.encode(symbols.tolist(), rows.tolist()) == payload

        theirs, ours = constriction_decoder(payload), ref.AnsDecoder(payload)
        assert theirs.pos() == (ours.unread, ours.state)
        extra = [random_row(rng, n) for _ in range(3)]  # decoding on past the end
        for k, row in enumerate([*rows, *extra]):
            symbol = ours.decode(row.tolist())
            assert symbol == int(theirs.decode(family, (row / TOTAL)[None])[0])
            assert theirs.pos() == (ours.unread, ours.state)
            if k < count:
                assert symbol == symbols[k]
            if k == count - 1:
                assert ours.is_empty() and theirs.is_empty()
                assert (ours.unread, ours.state) == (0, 0)


def test_one_table_models_decode_like_the_prebuilt_models():
    """The prebuilt model (per-channel tables) decodes with the same table as the family."""
    rng = np.random.default_rng(2)
    for n in (2, 13, 165, 1023):
        row = random_row(rng, n, ones=0.5)
        model = constriction.stream.model.Categorical(row / TOTAL, perfect=False)
        symbols = rng.integers(0, n, 500).astype(np.int32)
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(symbols, model)
        payload = to_payload(coder)
        theirs, ours = constriction_decoder(payload), ref.AnsDecoder(payload)
        cdf = ref.cumulative(row.tolist())
        for symbol in symbols:
            assert ours.decode_cdf(cdf) == int(theirs.decode(model)) == symbol
            assert theirs.pos() == (ours.unread, ours.state)
        assert ours.is_empty()


def test_a_state_of_exactly_two_to_the_32_reads_no_word():
    """The refill rule is state < 2**32, strictly: symbols pushed on a coder whose state is
    exactly 2**32 (with a word below it) decode back to that state, the word still unread."""
    rng = np.random.default_rng(5)
    family = constriction.stream.model.Categorical(perfect=False)
    coder = constriction.stream.stack.AnsCoder(np.array([0xDEADBEEF, 0, 1], np.uint32))
    assert coder.pos() == (1, 1 << 32)
    rows = np.array([random_row(rng, 13, ones=0.3) for _ in range(20)])
    symbols = rng.integers(0, 13, 20).astype(np.int32)
    coder.encode_reverse(symbols, family, rows / TOTAL)
    payload = to_payload(coder)
    theirs, ours = constriction_decoder(payload), ref.AnsDecoder(payload)
    for symbol, row in zip(symbols, rows, strict=True):
        assert ours.decode(row.tolist()) == symbol
        assert int(theirs.decode(family, (row / TOTAL)[None])[0]) == symbol
        assert theirs.pos() == (ours.unread, ours.state)
    assert (ours.unread, ours.state) == (1, 1 << 32)


@pytest.mark.parametrize(
    "words",
    [[], [5], [0xFFFFFFFF], [0x1234, 7], [1, 2, 3], [0, 0, 0, 1 << 31], [9, 8, 7, 6, 5]],
)
def test_start_reads_the_last_word_then_the_one_before(words):
    payload = np.array(words, "<u4").tobytes().rstrip(b"\0")
    ours = ref.AnsDecoder(payload)
    assert constriction_decoder(payload).pos() == (ours.unread, ours.state)
    if len(words) >= 2:
        assert ours.state == words[-1] << 32 | words[-2] and ours.unread == len(words) - 2
    assert ours.is_empty() == (not words)


def test_a_last_zero_word_is_rejected_by_both():
    payload = np.array([5, 0], "<u4").tobytes()  # not stripped: ends in a zero word
    with pytest.raises(ValueError):
        ref.AnsDecoder(payload)
    with pytest.raises(ValueError):
        constriction_decoder(payload)


# --- latentwire's latents --------------------------------------------------------------


def table_indices(latent: np.ndarray, tables: SymbolTables) -> list[int]:
    """The table of every symbol (channel-major), by the context rule, for re-encoding."""
    flat = np.clip(latent.reshape(len(latent), -1), -tables.radius, tables.radius)
    channels, size = flat.shape
    before = coding.nonzero_before(flat != 0)
    position = np.arange(size) if tables.positions > 1 else np.zeros(size, np.int64)
    index = (np.arange(channels)[:, None] * tables.positions + position) * tables.contexts
    return (index + np.minimum(before, tables.contexts - 1)).ravel().tolist()


def check_latent(payload: bytes, tables: SymbolTables, shape: tuple[int, ...]) -> None:
    theirs = coding.decode_latent(payload, tables, shape)
    ours = ref.decode_latent(
        payload,
        tables.frequencies.tolist(),
        tables.radius,
        shape,
        tables.positions,
        tables.contexts,
    )
    assert np.array_equal(np.array(ours, np.int32).reshape(shape), theirs)
    rows = tables.frequencies[table_indices(theirs, tables)].tolist()
    assert ref.encode((theirs.ravel() + tables.radius).tolist(), rows) == payload


@pytest.mark.parametrize(
    "layout",
    [{}, {"positions": 12, "contexts": 3}, {"contexts": 4}],
    ids=["per-channel", "per-position-and-context", "per-context"],
)
def test_synthetic_latents(layout):
    rng = np.random.default_rng(3)
    radius, channels = 7, 5
    tables = SymbolTables(
        radius,
        np.stack(
            [
                random_row(rng, 2 * radius + 1, ones=0.3)
                for _ in range(channels * layout.get("positions", 1) * layout.get("contexts", 1))
            ]
        ).astype(np.uint32),
        **layout,
    )
    for scale in (0.3, 1.5, 6.0):
        latent = rng.laplace(scale=scale, size=(channels, 3, 4)).round().astype(np.int32)
        check_latent(coding.encode_latent(latent, tables), tables, latent.shape)


CODECS = [p for p in list_packages() if read_manifest(p).task == "codec"]
KODAK_CROPS = [("kodim01.png", 0, 0, 64, 96), ("kodim07.png", 200, 301, 50, 70)]


def test_the_zoo_has_codecs():
    assert len(CODECS) >= 2


@pytest.mark.parametrize("package", CODECS, ids=[p.name for p in CODECS])
def test_shipped_codecs_decode_to_latentwires_latents(package, data_dir: Path):
    codec = Codec.load(package)
    tables, stride = codec.package.tables, codec.package.stride
    dataset = codec.manifest.dataset
    if dataset in ("fashion-mnist", "mnist"):
        from latentwire.training.data import load_idx_dataset

        images = load_idx_dataset(dataset, train=False, data_dir=data_dir).images
        start = 37 * (codec.manifest.quality or 0)
        images = list(images[start : start + 6].numpy())
    else:
        images = []
        mode = "L" if codec.shape[0] == 1 else "RGB"  # the grayscale photo levels: gray
        for name, top, left, height, width in KODAK_CROPS:
            pixels = np.atleast_3d(np.asarray(Image.open(data_dir / "kodak" / name).convert(mode)))
            crop = pixels[top : top + height, left : left + width].transpose(2, 0, 1)
            images.append(np.ascontiguousarray(crop))
    irs = codec.compress(images)
    for image, ir in zip(images, irs, strict=True):
        _, height, width = image.shape
        if codec.package.hyper is None:
            shape = (tables.channels, -(-height // stride), -(-width // stride))
            check_latent(parse(ir).payload, tables, shape)
        else:
            check_hyperprior_ir(codec, image, parse(ir).payload)


def check_hyperprior_ir(codec: Codec, image: np.ndarray, payload: bytes) -> None:
    """The reference decoder reads a shipped hyperprior codec's payload to the z and y
    latentwire decodes, and y plus the means is the latent the encoder coded."""
    package, h = codec.package, codec.package.hyper
    latent = codec.model.quantized_latent(
        pad_to_stride(codec._to_model(image[None]), package.stride)
    )[0]
    _, rows, cols = latent.shape
    z_shape = (package.tables.channels, -(-rows // 4), -(-cols // 4))
    means = []

    def parameters(z):
        index, mean = h.synthesis(np.asarray(z, np.int32).reshape(z_shape), (rows, cols))
        means.append(mean)
        return index

    z, y = coding.decode_hyper(
        payload, package.tables, z_shape, h.scale_tables, parameters, excess=h.excess
    )
    assert np.array_equal(y + means[0], latent)
    ours_z, ours_y = ref.decode_hyper(
        payload,
        package.tables.frequencies.tolist(),
        package.tables.radius,
        z_shape,
        [(t.frequencies[0].tolist(), t.radius) for t in h.scale_tables],
        lambda decoded: parameters(decoded).ravel().tolist(),
        (h.excess.frequencies[0].tolist(), h.excess.radius),
    )
    assert np.array_equal(np.array(ours_z).reshape(z_shape), z)
    assert np.array_equal(np.array(ours_y).reshape(y.shape), y)


def test_hyperprior_streams():
    """z with per-channel tables, then y by scale index (the real 64 Gaussian tables, rows
    up to 783 wide, many frequencies of 1), from a given index map or from z."""
    rng = np.random.default_rng(4)
    scales, excess = hyper.scale_tables(), hyper.excess_table()
    z_radius, z_shape = 6, (4, 2, 3)
    z_tables = SymbolTables(
        z_radius, np.stack([random_row(rng, 13, 0.3) for _ in range(4)]).astype(np.uint32)
    )
    for trial in range(4):
        z = rng.laplace(scale=2.0, size=z_shape).round().astype(np.int32)
        z = np.clip(z, -z_radius, z_radius)
        index = rng.integers(0, len(scales), size=(6, 4, 6)).astype(np.int32)
        if trial == 3:
            index[:] = rng.integers(0, 8)  # one group only
        sigma = hyper.scale_of(index)
        y = rng.normal(scale=sigma * rng.choice([0.5, 1.0, 3.0])).round().astype(np.int32)
        y[0, 0, 0], y[1, 1, 1], y[2, 2, 2] = 900, -45, 4  # misjudged scales
        payload = coding.encode_hyper(z, z_tables, y, index, scales, excess=excess)

        def parameters(decoded_z, index=index):
            return index

        their_z, their_y = coding.decode_hyper(
            payload, z_tables, z_shape, scales, parameters, excess=excess
        )
        # Values beyond their table's edge come back whole (up to R + the excess radius).
        edge = np.array([t.radius for t in scales])[index]
        expected = np.sign(y) * np.minimum(np.abs(y), edge + excess.radius)
        assert np.array_equal(their_y, expected) and (np.abs(y) > edge).any()
        scale_rows = [(t.frequencies[0].tolist(), t.radius) for t in scales]
        args = (payload, z_tables.frequencies.tolist(), z_radius, z_shape, scale_rows)
        excess_row = (excess.frequencies[0].tolist(), excess.radius)
        our_z, our_y = ref.decode_hyper(*args, index.ravel().tolist(), excess_row)
        assert np.array_equal(np.array(our_z).reshape(z_shape), their_z)
        assert np.array_equal(np.array(our_y).reshape(index.shape), their_y)
        seen = []

        def hyper_synthesis(decoded_z, seen=seen, index=index):
            seen.append(decoded_z)
            return index.ravel().tolist()

        from_z = ref.decode_hyper(*args, hyper_synthesis, excess_row)
        assert from_z == (our_z, our_y) and np.array_equal(np.array(seen[0]).reshape(z_shape), z)
