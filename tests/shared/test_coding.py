import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentwire.shared.coding import (
    FREQUENCY_BITS,
    CodingError,
    SymbolTables,
    decode_latent,
    encode_latent,
    encode_latents,
)


def laplace_tables(channels=4, radius=6, seed=0, positions=1, contexts=1):
    rng = np.random.default_rng(seed)
    values = np.arange(-radius, radius + 1)
    scales = rng.uniform(0.3, 3.0, size=(channels * positions * contexts, 1))
    pmf = np.exp(-np.abs(values) / scales)
    return SymbolTables.from_pmf(pmf, radius, positions=positions, contexts=contexts)


# One table per channel (any-size models), and per channel, position and context.
LAYOUTS = {"per-channel": {}, "per-position-and-context": {"positions": 49, "contexts": 3}}


def test_tables_are_positive_and_exactly_normalized():
    tables = laplace_tables()
    assert (tables.frequencies >= 1).all()
    assert (tables.frequencies.sum(axis=1) == 1 << FREQUENCY_BITS).all()
    # A pmf with vanishing tails still keeps every symbol codable.
    tiny = SymbolTables.from_pmf(np.array([[1e-30, 1.0, 1e-30]]), 1)
    assert tiny.frequencies.min() == 1


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_round_trip_and_clamping(layout):
    tables = laplace_tables(**layout)
    rng = np.random.default_rng(1)
    latent = rng.laplace(scale=1.5, size=(4, 7, 7)).round().astype(np.int32)
    latent[0, 0, 0] = 40  # outside [-R, R]: clamped by the encoder
    payload = encode_latent(latent, tables)
    decoded = decode_latent(payload, tables, latent.shape)
    assert np.array_equal(decoded, np.clip(latent, -6, 6))


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_a_batch_codes_each_latent_as_it_alone_would(layout):
    """encode_latents works out every latent's contexts at once (what the server's batches
    use); each latent's bytes are still its own."""
    tables = laplace_tables(**layout)
    latents = np.random.default_rng(4).laplace(scale=1.5, size=(5, 4, 7, 7)).round()
    latents = latents.astype(np.int32)
    assert encode_latents(latents, tables) == [encode_latent(x, tables) for x in latents]
    assert encode_latents(latents[:0], tables) == []


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_size_is_near_the_ideal_code_length(layout):
    tables = laplace_tables(**layout)
    latent = np.random.default_rng(2).laplace(scale=1.0, size=(4, 7, 7)).round().astype(int)
    payload = encode_latent(latent, tables)
    assert tables.bits(latent) / 8 - 1 <= len(payload) <= tables.bits(latent) / 8 + 8


def test_a_symbol_is_coded_with_its_channel_position_and_context_table():
    """The table rule of the IR format, checked against bits(): the context is how many
    earlier channels are nonzero at the position, capped at contexts - 1."""
    tables = laplace_tables(channels=3, radius=2, positions=4, contexts=2)
    latent = np.array([[1, 0, 0, 0], [2, 0, 1, 0], [0, 0, 0, 1]]).reshape(3, 2, 2)
    #   channel 0: context 0 everywhere; channel 1: 1, 0, 0, 0; channel 2: 1 (capped), 0, 1, 0
    contexts = [[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0]]
    expected = 0.0
    for c in range(3):
        for p in range(4):
            row = tables.frequencies[(c * 4 + p) * 2 + contexts[c][p]]
            expected -= np.log2(row[latent.reshape(3, 4)[c, p] + 2] / (1 << FREQUENCY_BITS))
    assert tables.bits(latent) == pytest.approx(expected)


def test_per_symbol_tables_code_exactly_as_per_channel_ones():
    """constriction quantizes a per-symbol row as it quantizes the prebuilt model of that
    row: position tables that repeat their channel's table give the same bytes."""
    per_channel = laplace_tables(channels=4)
    repeated = SymbolTables(
        per_channel.radius, np.repeat(per_channel.frequencies, 49 * 2, axis=0), 49, 2
    )
    latent = np.random.default_rng(3).laplace(scale=1.5, size=(4, 7, 7)).round().astype(int)
    assert encode_latent(latent, repeated) == encode_latent(latent, per_channel)


def test_tables_that_do_not_fit_the_latent_are_refused():
    tables = laplace_tables(positions=49, contexts=2)
    with pytest.raises(ValueError, match="positions"):
        encode_latent(np.zeros((4, 8, 8), dtype=np.int32), tables)
    with pytest.raises(ValueError, match="divide"):
        SymbolTables(6, tables.frequencies[:-1], 49, 2)


def test_corrupt_payloads_are_coding_errors():
    tables = laplace_tables()
    latent = np.arange(4 * 49).reshape(4, 7, 7) % 5 - 2
    payload = encode_latent(latent, tables)
    with pytest.raises(CodingError):
        decode_latent(payload + b"\x17\x00\x00\x01", tables, latent.shape)


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@settings(max_examples=1000, deadline=None)
@given(payload=st.binary(max_size=120))
def test_any_payload_decodes_or_raises_coding_error(layout, payload):
    tables = laplace_tables(**layout)
    try:
        out = decode_latent(payload, tables, (4, 7, 7))
    except CodingError:
        return
    assert out.shape == (4, 7, 7) and np.abs(out).max() <= tables.radius
