"""Shop-defined segments: a rule language over one customer's fields and recent history.

The contract is ``schemas/v1/segment_definition.json``; what a rule may read is the
catalogue in :mod:`service.segments.defined.fields`; :mod:`service.segments.defined.rules`
validates definitions and compiles their rules; :mod:`service.segments.defined.live` keeps
a shop's definitions live in the stream; :mod:`service.segments.defined.templates` holds
the built-in templates.
"""

from __future__ import annotations

from service.segments.defined.fields import FIELDS, HISTORIES, PREDICTIONS, Field
from service.segments.defined.rules import (
    MAX_DEPTH,
    MAX_NODES,
    CompiledRule,
    Definition,
    DefinitionError,
    check_segment_names,
    compile_definition,
    validate_definition,
)

__all__ = [
    "FIELDS",
    "HISTORIES",
    "MAX_DEPTH",
    "MAX_NODES",
    "PREDICTIONS",
    "CompiledRule",
    "Definition",
    "DefinitionError",
    "Field",
    "check_segment_names",
    "compile_definition",
    "validate_definition",
]
