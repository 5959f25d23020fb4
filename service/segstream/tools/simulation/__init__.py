"""Simulated tiny subscription shops: a deterministic source of demo and test events.

Shops (:mod:`~segstream.tools.simulation.shops`) have plans, products and signup forms;
customers follow personas (:mod:`~segstream.tools.simulation.personas`) with a planned
churn outcome; :func:`generate` turns a :class:`SimulationConfig` into events
plus the truth about every customer, without touching Kafka.

A product feature, so it ships in the package: ``segstream simulate`` publishes it (the
feed of ``make demo``, and of a trial without a shop's own history); tests and benches
use it too.
"""

from segstream.tools.simulation.generator import (
    DEFAULT_MIX,
    CustomerTruth,
    Simulation,
    SimulationConfig,
    generate,
)
from segstream.tools.simulation.personas import PERSONAS, PersonaName, Treatment
from segstream.tools.simulation.shops import KINDS, KINDS_BY_NAME, Shop, shops_per_kind

__all__ = [
    "DEFAULT_MIX",
    "KINDS",
    "KINDS_BY_NAME",
    "PERSONAS",
    "CustomerTruth",
    "PersonaName",
    "Shop",
    "Simulation",
    "SimulationConfig",
    "Treatment",
    "generate",
    "shops_per_kind",
]
