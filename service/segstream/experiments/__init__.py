"""Experiments on segments: deterministic arms (:mod:`.splits`) and their read-out
(:mod:`.readout`)."""

from segstream.experiments.splits import (
    Arm,
    Experiment,
    ExperimentError,
    arm_of,
    changed_fixed,
    check_target,
    validate_experiment,
)

__all__ = [
    "Arm",
    "Experiment",
    "ExperimentError",
    "arm_of",
    "changed_fixed",
    "check_target",
    "validate_experiment",
]
