"""Decoder packages: both formats read and write back byte for byte; bad ones are refused;
a model folder keeps them gzip-compressed, and reads plain ones too."""

import gzip

import msgpack
import numpy as np
import pytest

from latentwire.shared import decoder_package
from latentwire.shared.coding import SymbolTables
from latentwire.shared.decoder_package import (
    DECODER_NAME,
    PLAIN_DECODER_NAME,
    DecoderPackage,
    DecoderPackageError,
    decoder_path,
    digest_of,
    read_decoder,
    write_decoder,
)
from latentwire.shared.package import list_packages, read_manifest


def package_files():
    return [decoder_path(p) for p in list_packages() if decoder_path(p) is not None]


@pytest.mark.parametrize("path", package_files(), ids=lambda p: p.parent.name)
def test_shipped_packages_write_back_to_the_same_bytes(path):
    """So a package's digest (and every IR made for it) survives a read and a write; the
    shipped ones are kept compressed, and their digest is the package's, decompressed."""
    assert path.name == DECODER_NAME
    data = read_decoder(path)
    assert DecoderPackage.from_bytes(data).to_bytes() == data
    assert digest_of(data) == read_manifest(path.parent).decoder_digest


def test_a_folder_keeps_its_package_compressed_and_reads_a_plain_one(tmp_path):
    data = package().to_bytes()
    (tmp_path / PLAIN_DECODER_NAME).write_bytes(data)
    assert decoder_path(tmp_path).name == PLAIN_DECODER_NAME
    assert read_decoder(decoder_path(tmp_path)) == data
    path = write_decoder(tmp_path, data)
    # The plain file is gone (never two versions in one folder); the same bytes, same file.
    assert decoder_path(tmp_path) == path and not (tmp_path / PLAIN_DECODER_NAME).exists()
    first = path.read_bytes()
    assert first[:2] == b"\x1f\x8b"
    assert read_decoder(path) == data
    write_decoder(tmp_path, data)
    assert path.read_bytes() == first
    assert decoder_path(tmp_path / "nothing") is None


def test_a_corrupt_or_oversized_compressed_package_is_refused(tmp_path, monkeypatch):
    data = package().to_bytes()
    packed = gzip.compress(data)
    path = tmp_path / DECODER_NAME
    for bad, says in [
        (packed[: len(packed) // 2], "cut short"),
        (packed[:10] + bytes(len(packed) - 10), "corrupt gzip"),
        (packed + packed, "after the gzip stream"),  # one member only (as the JS reader)
        (data, "corrupt gzip"),  # a .gz file is gzip
    ]:
        path.write_bytes(bad)
        with pytest.raises(DecoderPackageError, match=says):
            read_decoder(path)
    path.write_bytes(packed)
    monkeypatch.setattr(decoder_package, "MAX_PACKAGE_BYTES", len(data) - 1)
    with pytest.raises(DecoderPackageError, match="too large"):
        read_decoder(path)


def package(positions=49, contexts=2, radius=3):
    rows = 4 * positions * contexts
    pmf = np.random.default_rng(0).random((rows, 2 * radius + 1))
    tables = SymbolTables.from_pmf(pmf, radius, positions=positions, contexts=contexts)
    return DecoderPackage("m", (1, 28, 28), (4, 7, 7), 4, tables, b"onnx")


def test_tables_per_position_and_context_round_trip_as_format_2():
    data = package().to_bytes()
    fields = msgpack.unpackb(data)
    assert fields["format"] == 2 and (fields["positions"], fields["contexts"]) == (49, 2)
    assert len(fields["frequencies"]) == 4 * 49 * 2 * 7 * 2  # uint16
    tables = DecoderPackage.from_bytes(data).tables
    assert np.array_equal(tables.frequencies, package().tables.frequencies)
    assert (tables.positions, tables.contexts) == (49, 2)
    assert msgpack.unpackb(package(positions=1, contexts=1).to_bytes())["format"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"positions": 48},  # not 1 and not the latent's h * w
        {"contexts": 0},
        {"contexts": 1000},
        {"contexts": 3},  # the tables no longer fit
        {"frequencies": b"\x01\x00" * 10},
        {"format": 3},
        {"stride": 0},  # decoding divides by it
        {"image_shape": [2, 28, 28]},  # neither gray nor RGB
        {"radius": 3.0},  # integers only: int() would take a float or a string
        {"contexts": "2"},
    ],
)
def test_inconsistent_format_2_packages_are_refused(change):
    fields = msgpack.unpackb(package().to_bytes())
    fields.update(change)
    with pytest.raises(DecoderPackageError, match="malformed"):
        DecoderPackage.from_bytes(msgpack.packb(fields, use_bin_type=True))


@pytest.mark.parametrize("version", [0, 4, "3", None])
def test_packages_of_formats_this_client_does_not_read_are_refused_by_name(version):
    fields = msgpack.unpackb(package().to_bytes())
    fields["format"] = version
    with pytest.raises(DecoderPackageError, match=f"format {version!r} is not supported"):
        DecoderPackage.from_bytes(msgpack.packb(fields, use_bin_type=True))


def test_a_package_that_is_not_a_map_is_malformed():
    with pytest.raises(DecoderPackageError, match="malformed"):
        DecoderPackage.from_bytes(msgpack.packb([1, 2, 3]))
