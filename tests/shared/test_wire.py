import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentwire.shared.wire import IR, MODEL_CODES, IRError, parse


def test_golden_bytes_catch_format_drift():
    ir = IR("fashion-mnist-q1", 0x0102, b"\x05\x06")
    assert ir.to_bytes() == bytes.fromhex("940201cd0102c4020506")
    assert parse(ir.to_bytes()) == ir


def test_fixed_overhead_is_at_most_eight_bytes_for_shipped_models():
    payload = bytes(range(100))
    assert len(IR("mnist-q2", 0xFFFF, payload).to_bytes()) == len(payload) + 8
    assert len(IR("mnist-q2", 0x7F, payload).to_bytes()) == len(payload) + 6


def test_custom_models_and_sizes_round_trip():
    ir = IR("my-photos-q3", 7, b"abc", (480, 640))
    assert parse(ir.to_bytes()) == ir


def test_codes_are_unique():
    assert len(set(MODEL_CODES.values())) == len(MODEL_CODES)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([1, 1, 0, b""], "version 1 is not supported"),
        ([3, 1, 0, b""], "version 3 is not supported"),
        (["2", 1, 0, b""], "version is not an integer"),
        ([2, 999, 0, b""], "unknown model code"),
        ([2, 1.5, 0, b""], "neither a known code"),
        ([2, "", 0, b""], "neither a known code"),
        ([2, 1, -1, b""], "16-bit"),
        ([2, 1, 1 << 16, b""], "16-bit"),
        ([2, 1, 0, "text"], "not binary"),
        ([2, 1, 0, b"", 0, 5], "out of bounds"),
        ([2, 1, 0, b"", 100000, 5], "out of bounds"),
        ([2, 1, 0, b"", True, 5], "out of bounds"),
        ([2, 1, 0], "4 or 6 fields"),
        ({"version": 2}, "not a msgpack message"),
    ],
)
def test_bad_fields_get_a_clear_irerror(fields, message):
    with pytest.raises(IRError, match=message):
        parse(msgpack.packb(fields, use_bin_type=True))


def test_non_bytes_and_garbage_are_irerrors():
    with pytest.raises(IRError):
        parse("not bytes")  # type: ignore[arg-type]
    with pytest.raises(IRError, match="not a msgpack message"):
        parse(b"\xc1")
    with pytest.raises(IRError, match="not a msgpack message"):
        parse(IR("mnist-q1", 1, b"x" * 50).to_bytes()[:-3])  # truncated
    # A declared 4 GB bin is refused by the parser, not allocated.
    with pytest.raises(IRError):
        parse(bytes.fromhex("940201cd0102c6ffffffff") + b"\0" * 10)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_irerror(data):
    with contextlib.suppress(IRError):
        parse(data)
