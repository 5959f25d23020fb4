"""What ``bench.quality`` measures segstream against: the CDNOW sample and lifetimes' BG/NBD.

Both come from the ``lifetimes`` package (a bench-only dependency, pinned in the ``dev``
extras): its copy of CDNOW_sample.txt (Fader, Hardie & Lee 2005, "Counting your customers
the easy way": 2,357 customers of the music retailer CDNOW who first bought in the first
quarter of 1997, every purchase until 1998-06-30) and its ``BetaGeoFitter``, fitted offline
on the calibration period, the figure a data scientist would compute instead of asking
segstream. ``lifetimes`` is imported only when used, so the rest of the bench (and its
doctests) runs without it; only the fitter and the data file are used (its summary helpers
do not work with pandas 3: ``bench.quality`` computes frequency, recency and T itself).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from typing import Any

SHIFT = timedelta(days=10_227)
"""CDNOW's dates are moved 28 years later (segstream refuses times before 2000): 10,227
days, exactly 1,461 weeks, so weekdays stay what they were (1997-01-01, a Wednesday,
becomes 2025-01-01, a Wednesday)."""
CDNOW_SHOP = "cdnow"
SAMPLE = "CDNOW_sample.txt"
MASTER = "CDNOW_master.txt"
"""The full log: 23,570 customers (the sample holds every tenth)."""
PENALIZERS = (0.0, 0.001, 0.01, 0.1)
INSTALL_HINT = "bench.quality needs the lifetimes package: .venv/bin/pip install -e '.[dev]'"


class MissingDependencyError(RuntimeError):
    """``lifetimes`` is not installed (the message says how to install it)."""


def _lifetimes() -> Any:
    try:
        with warnings.catch_warnings():  # it sets a pandas option pandas 3 deprecated
            warnings.simplefilter("ignore")
            return importlib.import_module("lifetimes")
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None


def cdnow_csv(name: str = SAMPLE) -> str:
    """CDNOW_sample (or, with :data:`MASTER`, the full log) as a transaction CSV
    (``customer_id,date,amount``), dates shifted by :data:`SHIFT`: what a platform's
    export would hand ``segstream.tools.replay``.

    The sample's columns are the customer id, the customer's number in the sample, the
    date (YYYYMMDD), the number of CDs and the dollars spent; the master's (after a header
    line) the same without the number in the sample. One line is one purchase.
    """
    path = resources.files(_lifetimes()) / "datasets" / name
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["customer_id", "date", "amount"])
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields[0].isdigit():
            continue  # the master's header
        customer_id, day, dollars = fields[0], fields[-3], fields[-1]
        when = date(int(day[:4]), int(day[4:6]), int(day[6:])) + SHIFT
        writer.writerow([customer_id, when.isoformat(), dollars])
    return out.getvalue()


@dataclass(frozen=True)
class BgNbdAnchor:
    """lifetimes' BG/NBD fitted on one shop's calibration period (``frequency``, ``recency``
    and ``T`` in days, lifetimes' definitions), answering for the same customers in order."""

    fitter: Any
    frequency: Any
    recency: Any
    T: Any
    penalizer: float

    @classmethod
    def fit(
        cls,
        frequency: Sequence[int],
        recency: Sequence[float],
        T: Sequence[float],  # noqa: N803
        horizons: Sequence[float],
    ) -> BgNbdAnchor:
        """Maximum likelihood as lifetimes does it: without a penalizer if that converges
        and answers every customer with a number at every horizon (in days), else with the
        smallest of :data:`PENALIZERS` that does, else the first that converges. Only the
        simulator's subscription shops need this: their regular renewals drive the dropout
        parameters to the edge, where lifetimes' search fails or its hypergeometric function
        overflows to NaN for customers without a repeat purchase (those are then left out)."""
        numpy = importlib.import_module("numpy")
        arrays = [numpy.asarray(v, dtype=float) for v in (frequency, recency, T)]
        converged = []
        for penalizer in PENALIZERS:
            anchor = cls._fitted(arrays, penalizer)
            if anchor is not None and anchor.answers(horizons):
                return anchor
            converged += [] if anchor is None else [anchor]
        if not converged:
            raise RuntimeError(f"BG/NBD did not converge with any penalizer of {PENALIZERS}")
        return converged[0]

    @classmethod
    def _fitted(cls, arrays: Sequence[Any], penalizer: float) -> BgNbdAnchor | None:
        """The fit with ``penalizer``, None when lifetimes' search does not converge."""
        fitter = _lifetimes().BetaGeoFitter(penalizer_coef=penalizer)
        failure: type[Exception] = importlib.import_module("lifetimes.utils").ConvergenceError
        try:
            with _quiet():
                fitter.fit(*arrays)
        except failure:
            return None
        frequencies, recencies, ages = arrays
        return cls(fitter, frequencies, recencies, ages, penalizer)

    def answers(self, horizons: Sequence[float]) -> bool:
        """Whether every customer's expected purchases and P(buys) are finite numbers."""
        found = [v for days in horizons for v in self.expected_purchases(days) + self.p_buys(days)]
        return all(math.isfinite(v) for v in found)

    @property
    def params(self) -> dict[str, float]:
        """The fitted r, alpha, a, b."""
        return {name: float(value) for name, value in self.fitter.params_.items()}

    def expected_purchases(self, days: float) -> list[float]:
        """Expected purchase days in the next ``days`` days (lifetimes'
        ``conditional_expected_number_of_purchases_up_to_time``)."""
        with _quiet():
            found = self.fitter.conditional_expected_number_of_purchases_up_to_time(
                days, self.frequency, self.recency, self.T
            )
        return [float(v) for v in found]

    def p_buys(self, days: float) -> list[float]:
        """P(at least one purchase in the next ``days`` days | history): alive now (lifetimes'
        ``conditional_probability_alive``) and the Poisson process fires, its rate's posterior
        given alive being Gamma(r + x, alpha + T), so
        ``P = P(alive) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))`` (dropping out
        happens only at a purchase, so a customer alive now who buys nothing stays alive)."""
        params = self.params
        with _quiet():
            alive = self.fitter.conditional_probability_alive(self.frequency, self.recency, self.T)
        return [
            float(p) * (1.0 - math.pow((params["alpha"] + t) / (params["alpha"] + t + days), shape))
            for p, t, shape in zip(alive, self.T, params["r"] + self.frequency, strict=True)
        ]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """lifetimes prints a failed search to stdout (where the bench's tables go) and its
    searches warn about the extreme parameters they try; neither says anything here."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
