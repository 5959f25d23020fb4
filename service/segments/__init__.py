"""Segment models: one module each, discovered by :func:`available_models`.

Adding a model is adding one module here that defines ``MODEL``, a class that
implements :class:`~service.segments.base.SegmentModel`.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from service.segments.base import SegmentModel


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


__all__ = ["SegmentModel", "available_models"]
