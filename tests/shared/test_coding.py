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
)


def laplace_tables(channels=4, radius=6, seed=0):
    rng = np.random.default_rng(seed)
    values = np.arange(-radius, radius + 1)
    scales = rng.uniform(0.3, 3.0, size=(channels, 1))
    return SymbolTables.from_pmf(np.exp(-np.abs(values) / scales), radius)


def test_tables_are_positive_and_exactly_normalized():
    tables = laplace_tables()
    assert (tables.frequencies >= 1).all()
    assert (tables.frequencies.sum(axis=1) == 1 << FREQUENCY_BITS).all()
    # A pmf with vanishing tails still keeps every symbol codable.
    tiny = SymbolTables.from_pmf(np.array([[1e-30, 1.0, 1e-30]]), 1)
    assert tiny.frequencies.min() == 1


def test_round_trip_and_clamping():
    tables = laplace_tables()
    rng = np.random.default_rng(1)
    latent = rng.laplace(scale=1.5, size=(4, 7, 7)).round().astype(np.int32)
    latent[0, 0, 0] = 40  # outside [-R, R]: clamped by the encoder
    payload = encode_latent(latent, tables)
    decoded = decode_latent(payload, tables, latent.shape)
    assert np.array_equal(decoded, np.clip(latent, -6, 6))


def test_size_is_near_the_ideal_code_length():
    tables = laplace_tables()
    latent = np.zeros((4, 16, 16), dtype=np.int32)
    payload = encode_latent(latent, tables)
    assert len(payload) <= tables.bits(latent) / 8 + 8


def test_corrupt_payloads_are_coding_errors():
    tables = laplace_tables()
    latent = np.arange(4 * 49).reshape(4, 7, 7) % 5 - 2
    payload = encode_latent(latent, tables)
    with pytest.raises(CodingError):
        decode_latent(payload + b"\x17\x00\x00\x01", tables, latent.shape)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=120))
def test_any_payload_decodes_or_raises_coding_error(payload):
    tables = laplace_tables()
    try:
        out = decode_latent(payload, tables, (4, 7, 7))
    except CodingError:
        return
    assert out.shape == (4, 7, 7) and np.abs(out).max() <= tables.radius
