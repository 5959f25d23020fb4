"""Shop-defined segments: a rule language over one customer's fields and recent history.

The contract is ``schemas/v1/segment_definition.json``; what a rule may read is the
catalogue in :mod:`service.segments.defined.fields`; :mod:`service.segments.defined.rules`
validates definitions and compiles their rules. Pure logic: not wired to the stream yet
(the query API only previews a definition: ``service.api.queries.definition_preview``).
"""

from __future__ import annotations

from service.segments.defined.fields import FIELDS, HISTORIES, PREDICTIONS, Field
from service.segments.defined.rules import (
    MAX_DEPTH,
    MAX_NODES,
    CompiledRule,
    Definition,
    DefinitionError,
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
    "compile_definition",
    "validate_definition",
]
