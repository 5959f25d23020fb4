"""bench.soak: where RSS levels off, and the growth over the last third of the feed."""

from __future__ import annotations

import pytest

from bench.soak import Readings, analyse, levels_off, slope_per_10_min


def test_the_slope_is_in_mib_per_ten_minutes() -> None:
    assert slope_per_10_min([(0, 100.0), (60, 101.0), (120, 102.0)]) == pytest.approx(10.0)
    assert slope_per_10_min([(0, 100.0)]) == 0.0
    assert slope_per_10_min([(5, 100.0), (5, 120.0)]) == 0.0


def test_rss_levels_off_where_it_never_rises_five_percent_again() -> None:
    rising_then_flat = [(t, 100.0 + min(t, 300) / 3) for t in range(0, 900, 10)]
    at, level = levels_off(rising_then_flat)
    assert 150 < at < 300  # within 5 % of the 200 MiB it ends at
    assert level == pytest.approx(200.0, abs=2)
    # a steady leak levels off only near its end: the run says it did not level off
    leak = [(t, 100.0 + t / 3) for t in range(0, 900, 10)]
    assert levels_off(leak)[0] > 800
    with pytest.raises(ValueError):
        levels_off([])


def test_a_run_is_summed_up_from_its_feed_and_not_its_settling() -> None:
    readings = Readings(
        rss=[(t, 200.0 + (t if t <= 600 else 600 - (t - 600))) for t in range(0, 700, 10)],
        lag=[(0, 50, 0.0), (300, 120, 3000.0), (600, 30, 6000.0), (660, 0, 6030.0)],
        feed_end_s=600,
        drained_s=660,
    )
    found = analyse(readings)
    assert found["rss_start_mib"] == 260.0  # the first tenth is warm-up
    assert (found["rss_peak_mib"], found["rss_end_mib"]) == (800.0, 800.0)
    assert found["rss_settled_mib"] == 710.0
    assert found["last_third_growth_mib_per_10min"] == pytest.approx(600.0)
    assert (found["lag_max"], found["lag_at_feed_end"], found["drained_after_feed_s"]) == (
        120,
        30,
        60,
    )
    assert found["handled_per_s"] == 10.0
