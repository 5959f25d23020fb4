"""Segment models: one module each, discovered by :func:`available_models`.

Adding a model is adding one module here that defines ``MODEL``, a class that
implements :class:`~segstream.segments.base.SegmentModel`.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from functools import cache

from segstream.segments.base import SegmentModel


@cache
def available_models() -> dict[str, type[SegmentModel]]:
    """Every segment model class in this package, by name, in a stable order."""
    found: dict[str, type[SegmentModel]] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        model = getattr(module, "MODEL", None)
        if model is not None:
            found[model.name] = model
    return found


def is_segment_of(model: type[SegmentModel], segment: str) -> bool:
    """Whether ``model`` can put a customer in ``segment`` (its ``segment_names``).

    >>> models = available_models()
    >>> is_segment_of(models["lifecycle"], "at_risk"), is_segment_of(models["lifecycle"], "at-risk")
    (True, False)
    >>> is_segment_of(models["cluster"], "c12"), is_segment_of(models["cluster"], "c12\\n")
    (True, False)
    """
    names = model.segment_names
    if "enum" in names:
        return segment in names["enum"]
    whole = str(names["pattern"]).removeprefix("^").removesuffix("$")
    return re.fullmatch(whole, segment) is not None


def segment_names_hint(model: type[SegmentModel]) -> str:
    """The model's segment names for a message: the list, or the pattern."""
    names = model.segment_names
    if "enum" in names:
        return ", ".join(names["enum"])
    return f"names matching {names['pattern']}"


__all__ = ["SegmentModel", "available_models", "is_segment_of", "segment_names_hint"]
