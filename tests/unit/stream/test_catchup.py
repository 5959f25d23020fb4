"""A worker behind on its input: records behind, rate and time left, logged and exported."""

from __future__ import annotations

import math

import pytest

from segstream.observability import telemetry
from segstream.stream import catchup
from segstream.stream.catchup import CatchUp, Progress
from tests.factories import LogRecorder

ORDERS, SIGNUPS = "orders", "signups"


def test_the_rate_is_the_committed_offsets_pace_and_the_time_left_the_lags() -> None:
    catch_up = CatchUp(threshold=100, report_every_s=30.0)
    first = catch_up.measure({(ORDERS, 0): 5000}, {(ORDERS, 0): 0}, {0}, now=0.0)
    assert (first.behind, first.rate, first.remaining_s) == (5000, None, None)
    # 1,000 records folded in 10 s while 200 new ones arrived: the lag shrank by 800
    progress = catch_up.measure({(ORDERS, 0): 4200}, {(ORDERS, 0): 1000}, {0}, now=10.0)
    assert progress is not None
    assert (progress.behind, progress.rate) == (4200, 100.0)
    assert progress.remaining_s == pytest.approx(52.5)


def test_only_owned_partitions_count_and_new_ones_do_not_make_a_rate() -> None:
    catch_up = CatchUp(threshold=100, report_every_s=30.0)
    lag = {(ORDERS, 0): 500, (ORDERS, 1): 9999}
    catch_up.measure(lag, {(ORDERS, 0): 100, (ORDERS, 1): 5}, {0}, now=0.0)
    # partition 2 comes (a rebalance without forget); its committed offset is not a pace
    lag = {(ORDERS, 0): 300, (ORDERS, 1): 9999, (SIGNUPS, 2): 50}
    committed = {(ORDERS, 0): 300, (ORDERS, 1): 5, (SIGNUPS, 2): 70_000}
    progress = catch_up.measure(lag, committed, {0, 2}, now=4.0)
    assert progress is not None
    assert (progress.behind, progress.rate) == (350, 50.0)


def test_a_backlog_that_does_not_shrink_has_no_time_left_and_exports_infinity() -> None:
    catch_up = CatchUp(threshold=100, report_every_s=30.0)
    catch_up.measure({(ORDERS, 0): 500}, {(ORDERS, 0): 0}, {0}, now=0.0)
    progress = catch_up.measure({(ORDERS, 0): 900}, {(ORDERS, 0): 10}, {0}, now=5.0)
    assert progress is not None and progress.remaining_s is None
    catch_up.report(progress, now=5.0)
    assert math.isinf(telemetry.CATCH_UP_REMAINING._value.get())


def test_the_pace_is_taken_over_the_window_not_since_the_start() -> None:
    catch_up = CatchUp(threshold=100, report_every_s=30.0, window_s=10.0)
    for second in range(0, 31, 5):  # 100 records/s for 20 s, then 10 records/s
        committed = 100 * min(second, 20) + 10 * max(0, second - 20)
        progress = catch_up.measure(
            {(ORDERS, 0): 10_000 - committed}, {(ORDERS, 0): committed}, {0}, float(second)
        )
    assert progress is not None and progress.rate == pytest.approx(10.0)


def test_it_says_when_a_backlog_starts_every_so_often_while_it_lasts_and_when_it_ends() -> None:
    catch_up = CatchUp(threshold=1000, report_every_s=30.0)
    said = [
        catch_up.report(Progress(behind, 200.0, behind / 200.0, folded=folded), now)
        for now, behind, folded in [
            (0, 50, 0),
            (5, 5000, 100),
            (10, 4000, 1100),
            (35, 1500, 6100),
            (40, 999, 7100),
            (45, 0, 8000),
        ]
    ]
    assert said == [None, "catching_up", None, "catching_up", "caught_up", None]
    assert telemetry.CATCH_UP_BEHIND._value.get() == 0
    assert telemetry.CATCH_UP_REMAINING._value.get() == 0.0


def test_forget_starts_the_measurement_over() -> None:
    catch_up = CatchUp(threshold=100, report_every_s=30.0)
    catch_up.measure({(ORDERS, 0): 500}, {(ORDERS, 0): 0}, {0}, now=0.0)
    catch_up.forget()
    assert catch_up.measure({(ORDERS, 0): 400}, {(ORDERS, 0): 100}, {0}, now=5.0).rate is None


def test_a_backlog_is_reported_at_its_first_measurement_and_ends_with_its_average_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said = LogRecorder()
    monkeypatch.setattr(catchup, "log", said)
    catch_up = CatchUp(threshold=100, report_every_s=30.0)
    first = catch_up.measure({(ORDERS, 0): 3000}, {(ORDERS, 0): 0}, {0}, now=0.0)
    assert catch_up.report(first, now=0.0) == "catching_up"  # rate unknown yet
    assert math.isnan(telemetry.CATCH_UP_RATE._value.get())
    catch_up.measure({(ORDERS, 0): 1000}, {(ORDERS, 0): 2000}, {0}, now=4.0)
    done = catch_up.measure({(ORDERS, 0): 0}, {(ORDERS, 0): 3000}, {0}, now=6.0)
    assert done.folded == 3000 and done.remaining_s == 0.0
    assert catch_up.report(done, now=6.0) == "caught_up"
    assert said.said("info") == [
        ("catching_up", {"behind": 3000, "rate": None, "remaining_s": None}),
        ("caught_up", {"took_s": 6.0, "rate": 500.0}),  # 3,000 records in 6 s
    ]
