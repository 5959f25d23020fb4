"""Shop-defined segments: a rule language over one customer's fields and recent history.

The contract is ``schemas/v1/segment_definition.json``; what a rule may read is the
catalogue in :mod:`segstream.segments.defined.fields`; :mod:`segstream.segments.defined.rules`
validates definitions and compiles their rules from the leaves of
:mod:`segstream.segments.defined.conditions`; :mod:`segstream.segments.defined.timing` names
when a rule's answer can next change without an event; :mod:`segstream.segments.defined.live` keeps
a shop's definitions live in the stream; :mod:`segstream.segments.defined.templates` holds
the built-in templates.
"""

from __future__ import annotations

from segstream.segments.defined.fields import (
    FIELDS,
    HISTORIES,
    PREDICTIONS,
    Field,
    catalogue,
    segment_fields,
)
from segstream.segments.defined.rules import (
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
    "catalogue",
    "check_segment_names",
    "compile_definition",
    "segment_fields",
    "validate_definition",
]
