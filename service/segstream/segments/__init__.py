"""Segment models: one module each, discovered by :func:`available_models`.

Adding a model is adding one module here that defines ``MODEL``, a class that
implements :class:`~segstream.segments.base.SegmentModel`. Everything else derives from
the registry: the rules' ``segments.<model>`` fields, the model contract tests, the
experiment targets and rule catalogue of ``deploy/openapi.json``. A model that is not a
module of this package (a test's toy model, a plugin) joins with :func:`register` or, for a
while, :func:`registered`.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from segstream.segments.base import SegmentModel

_REGISTERED: dict[str, type[SegmentModel]] = {}
"""Models registered from outside the package (:func:`register`), in registration order."""


@cache
def _discovered() -> dict[str, type[SegmentModel]]:
    """The ``MODEL`` of every module of this package, by name, by module name."""
    found: dict[str, type[SegmentModel]] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        model = getattr(module, "MODEL", None)
        if model is not None:
            found[model.name] = model
    return found


@cache
def available_models() -> dict[str, type[SegmentModel]]:
    """Every segment model, by name, in a stable order: this package's modules, then the
    registered ones. Cached: :func:`register` and :func:`unregister` clear it."""
    return {**_discovered(), **_REGISTERED}


def register(model: type[SegmentModel]) -> None:
    """Make ``model`` a segment model like the package's own, for every engine, rule and
    query built from now on (a running shop book keeps the models it was built with).

    Raises ValueError when its name is taken by another model or is not a plain name.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", model.name):
        raise ValueError(f"segment model name {model.name!r} is not [a-z][a-z0-9_]*")
    if available_models().get(model.name, model) is not model:
        raise ValueError(f"segment model name {model.name!r} is taken")
    _REGISTERED[model.name] = model
    available_models.cache_clear()


def unregister(name: str) -> None:
    """Remove a model :func:`register` added (the package's own stay)."""
    _REGISTERED.pop(name, None)
    available_models.cache_clear()


@contextmanager
def registered(model: type[SegmentModel]) -> Iterator[type[SegmentModel]]:
    """``model`` registered inside the ``with`` block, and gone after it."""
    register(model)
    try:
        yield model
    finally:
        unregister(model.name)


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


__all__ = [
    "SegmentModel",
    "available_models",
    "is_segment_of",
    "register",
    "registered",
    "segment_names_hint",
    "unregister",
]
