"""The Bjøntegaard delta rate and the size ratio at equal PSNR, on curves with a known answer."""

import pytest

from latentwire.training.compare import bd_rate, size_ratio

ANCHOR = [{"psnr_db": 24 + 2 * i, "bpp": 0.1 * 1.5**i, "psnr_y_db": 25 + 2 * i} for i in range(6)]


def test_the_same_curve_is_zero_and_half_the_rate_is_minus_fifty():
    half = [{**p, "bpp": p["bpp"] / 2} for p in ANCHOR]
    assert bd_rate(ANCHOR, ANCHOR, "bpp") == pytest.approx(0, abs=1e-9)
    assert bd_rate(ANCHOR, half, "bpp") == pytest.approx(-50, abs=1e-6)
    assert bd_rate(ANCHOR, half, "bpp", "psnr_y_db") == pytest.approx(-50, abs=1e-6)


def test_curves_that_do_not_overlap_or_are_too_short_have_none():
    above = [{**p, "psnr_db": p["psnr_db"] + 20} for p in ANCHOR]
    assert bd_rate(ANCHOR, above, "bpp") is None
    assert bd_rate(ANCHOR, ANCHOR[:3], "bpp") is None


def test_within_averages_over_that_part_of_the_range_only():
    # The test codec's rate doubles every 10 dB against the anchor's, equal at 30 dB: the
    # average log-ratio over [lo, hi] is that at (lo + hi) / 2.
    tilted = [{**p, "bpp": p["bpp"] * 2 ** ((p["psnr_db"] - 30) / 10)} for p in ANCHOR]
    assert bd_rate(ANCHOR, tilted, "bpp") == pytest.approx((2**-0.1 - 1) * 100, abs=1e-6)
    low = bd_rate(ANCHOR, tilted, "bpp", within=(20, 30))  # clipped to the curves' 24 dB
    assert low == pytest.approx((2**-0.3 - 1) * 100, abs=1e-6)
    assert bd_rate(ANCHOR, tilted, "bpp", within=(30, 34)) == pytest.approx(
        (2**0.2 - 1) * 100, abs=1e-6
    )
    assert bd_rate(ANCHOR, tilted, "bpp", within=(40, 50)) is None


def test_size_ratio_interpolates_the_anchor_at_the_same_psnr():
    half_way = {"psnr_db": 25, "bytes": 0.5 * (0.1 * 1.5**0.5)}
    anchor = [{**p, "bytes": p["bpp"]} for p in ANCHOR]
    assert size_ratio(anchor, half_way) == pytest.approx(0.5)
    assert size_ratio(anchor, {"psnr_db": 40, "bytes": 1.0}) is None
