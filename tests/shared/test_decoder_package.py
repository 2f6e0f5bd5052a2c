"""Decoder packages: both formats read and write back byte for byte; bad ones are refused."""

import msgpack
import numpy as np
import pytest

from latentwire.shared.coding import SymbolTables
from latentwire.shared.decoder_package import DECODER_NAME, DecoderPackage, DecoderPackageError
from latentwire.shared.package import list_packages


def package_files():
    return [p / DECODER_NAME for p in list_packages() if (p / DECODER_NAME).exists()]


@pytest.mark.parametrize("path", package_files(), ids=lambda p: p.parent.name)
def test_shipped_packages_write_back_to_the_same_bytes(path):
    """So a package's digest (and every IR made for it) survives a read and a write."""
    data = path.read_bytes()
    assert DecoderPackage.from_bytes(data).to_bytes() == data


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
