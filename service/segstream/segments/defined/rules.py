"""The rule language of shop-defined segments: validate a definition, compile its rule.

A definition (``schemas/v1/segment_definition.json``) names a segment and holds a rule
tree. :func:`validate_definition` checks it against the schema and then for what the
schema cannot say (a known field, an op and a value that fit the field's type, ordered
bounds, the size limits) and raises :class:`DefinitionError` naming the offending part by
its path, ``rule/all/2/value``. :func:`compile_definition` turns a valid definition once
into a :class:`CompiledRule`: nested closures, so evaluating a customer walks no JSON.

Logic is two-valued. A missing value (no plan, no purchase yet, an attribute the customer
never stated) or a value of another type makes every comparison on it false, ``ne``
included; ``exists`` is its only test. ``not`` is plain negation, so a rule and its
``not`` split every customer into two parts, and ``not {eq x}`` (anything but x, or
nothing) differs from ``ne x`` (a value other than x). Three-valued logic (unknown
propagating through ``not``) would leave customers in neither part, which a segment that
an e-mail tool acts on cannot explain.

Windows count days back from the evaluation's stream time (``CustomerSnapshot.as_of``,
a UTC day): ``within_days: 1`` is that day alone. Items dated after it are not seen.

The stream keeps definitions live per shop (:mod:`segstream.segments.defined.live`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jsonschema import ValidationError

from segstream.domain.contracts import document_error
from segstream.domain.customer import CustomerState, day_number
from segstream.domain.features import CustomerSnapshot
from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.segments import available_models, is_segment_of, segment_names_hint
from segstream.segments.defined.conditions import aggregate, kind_of, last, numeric
from segstream.segments.defined.fields import OPEN_PREFIX, SEGMENTS_PREFIX, FieldType, resolve
from segstream.segments.defined.timing import (
    Later,
    NextChange,
    OutOfLooksError,
    compile_next_change,
    reads_predictions,
)

log = get_logger(__name__)

SCHEMA = "segment_definition"
MAX_DEPTH = 8
"""Most levels of a rule tree (the root is level 1; all, any and not add one)."""
MAX_NODES = 64
"""Most nodes of a rule tree (every all, any, not, condition and aggregate)."""
SEGMENT_FIELDS = SEGMENTS_PREFIX
"""Fields that read the customer's segment of a model (``segments.lifecycle``)."""
COMBINATORS = ("all", "any", "not")
LEAVES = ("field", "count", "sum", "last")

OPS_BY_TYPE: dict[FieldType, tuple[str, ...]] = {
    "number": ("eq", "ne", "lt", "lte", "gt", "gte", "in", "between", "exists"),
    "string": ("eq", "ne", "in", "exists"),
    "boolean": ("eq", "ne", "exists"),
    "set": ("contains", "exists"),
    "any": ("eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "between", "exists"),
}
"""Which ops a field of each type takes."""

Test = Callable[[CustomerState, CustomerSnapshot], bool]


class DefinitionError(ValueError):
    """A definition that breaks the contract: ``path`` (``rule/all/2/op``) and why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path or "definition"  # the whole document
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True, slots=True)
class Definition:
    """A valid segment definition (its rule is a private copy of the JSON tree)."""

    shop_id: str
    segment_id: str
    name: str
    version: int
    rule: dict[str, Any]
    description: str | None = None
    nodes: int = field(default=0, compare=False)
    depth: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The definition as its contract writes it."""
        out: dict[str, Any] = {
            "schema_version": 1,
            "shop_id": self.shop_id,
            "segment_id": self.segment_id,
            "name": self.name,
            "version": self.version,
            "rule": copy.deepcopy(self.rule),
        }
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A definition's rule as one callable: ``rule(state, snapshot) -> bool``.

    A rule that fails on a customer (an error of ours that validation let through, such as
    a count written ``8.0`` once was) holds for nobody and names no moment, rather than
    failing the event: the definition is a shop's input, and no input may stop its shop's
    stream. Each failure is counted (``segstream_definition_failures_total``, alerted) and
    the first of each definition version is logged with the error."""

    definition: Definition
    test: Test
    nodes: int
    depth: int
    changes: NextChange
    predictions: bool = False
    """Whether the rule reads a prediction (a refit of the shop's lifetime model re-evaluates
    it for every customer)."""
    failures: list[int] = field(default_factory=lambda: [0], init=False, compare=False)
    """How often the rule failed (one cell: the rule itself is frozen)."""

    def __call__(self, state: CustomerState, view: CustomerSnapshot) -> bool:
        try:
            return self.test(state, view)
        except Exception as error:  # any defect of a rule: see the class
            self._failed("evaluate", error)
            return False

    def strict(self, state: CustomerState, view: CustomerSnapshot) -> bool:
        """The rule for a preview, whose caller shows a failure: a
        :class:`DefinitionError` naming the customer and the error (neither counted nor
        logged as a live rule's)."""
        try:
            return self.test(state, view)
        except Exception as error:  # any defect of a rule: see the class
            reason = f"fails on customer {state.customer_id!r}: {type(error).__name__}: {error}"
            raise DefinitionError("rule", reason) from error

    def next_change(
        self, state: CustomerState, view: CustomerSnapshot, later: Later
    ) -> datetime | None:
        """When the answer for this customer may next differ with no event of theirs
        (None: not before one); ``later`` gives their snapshot at a later moment."""
        try:
            return self.changes(state, view, later)
        except OutOfLooksError:
            raise  # the look-ahead's budget, which the caller handles
        except Exception as error:  # any defect of a rule: see the class
            self._failed("look_ahead", error)
            return None

    def _failed(self, step: str, error: Exception) -> None:
        self.failures[0] += 1
        telemetry.DEFINITION_FAILURES.labels(step=step).inc()
        if self.failures[0] == 1:
            definition = self.definition
            log.error(
                "definition_failed",
                shop=definition.shop_id,
                segment=definition.segment_id,
                version=definition.version,
                step=step,
                error=f"{type(error).__name__}: {error}",
            )


# --- validation --------------------------------------------------------------------------


def validate_definition(payload: Any) -> Definition:
    """The :class:`Definition` ``payload`` (parsed JSON) states, or :class:`DefinitionError`."""
    if isinstance(payload, Mapping):
        _check_size(payload.get("rule"), "rule")  # first: bounds the schema's work
    try:
        error = document_error(SCHEMA, payload)
    except RecursionError:
        raise DefinitionError("rule", "nested too deeply to read") from None
    if error is not None:
        raise _schema_error(error)
    depth, nodes = _check_rule(payload["rule"], "rule", 1)
    return Definition(
        shop_id=payload["shop_id"],
        segment_id=payload["segment_id"],
        name=payload["name"],
        version=payload["version"],
        rule=copy.deepcopy(payload["rule"]),
        description=payload.get("description"),
        nodes=nodes,
        depth=depth,
    )


def _check_size(rule: Any, path: str) -> None:
    """At most MAX_DEPTH levels and MAX_NODES nodes, each node of one kind: walked without
    recursion, before the schema (which then has a bounded tree to walk), stopping at the
    first excess."""
    stack = [(rule, path, 1)]
    nodes = 0
    while stack:
        node, where, level = stack.pop()
        if not isinstance(node, Mapping):
            continue
        nodes += 1
        if level > MAX_DEPTH:
            raise DefinitionError(where, f"rules nest at most {MAX_DEPTH} levels deep")
        if nodes > MAX_NODES:
            raise DefinitionError(where, f"a rule has at most {MAX_NODES} nodes")
        kinds = [key for key in COMBINATORS + LEAVES if key in node]
        if len(kinds) > 1:
            both = " and ".join(repr(k) for k in kinds)
            raise DefinitionError(where, f"a rule node is one thing, not {both} at once")
        for key in ("all", "any"):
            children = node.get(key)
            if isinstance(children, list):
                for i, child in reversed(list(enumerate(children))):
                    stack.append((child, f"{where}/{key}/{i}", level + 1))
        if "not" in node:
            stack.append((node["not"], f"{where}/not", level + 1))


def _schema_error(error: ValidationError) -> DefinitionError:
    path = "/".join(str(part) for part in error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "anyOf" and schema.get("title") == "rule":
        keys = ", ".join(COMBINATORS + LEAVES)
        return DefinitionError(path, f"a rule is an object with one of the keys {keys}")
    if error.validator == "oneOf" and "every" in schema.get("properties", {}):
        return DefinitionError(path, "a last rule takes exactly one of every, some, none")
    if error.schema is False:  # only the value of an exists condition (the path stops above it)
        return DefinitionError(f"{path}/value", "op 'exists' takes no value")
    return DefinitionError(path, error.message)


def _check_rule(node: dict[str, Any], path: str, level: int) -> tuple[int, int]:
    """Semantic checks of a schema-valid rule: (depth, nodes) of the tree."""
    depth, nodes = level, 1
    children = [
        (f"{path}/{k}/{i}", c) for k in ("all", "any") for i, c in enumerate(node.get(k, ()))
    ]
    if "not" in node:
        children.append((f"{path}/not", node["not"]))
    for child_path, child in children:
        child_depth, child_nodes = _check_rule(child, child_path, level + 1)
        depth, nodes = max(depth, child_depth), nodes + child_nodes
    if "field" in node:
        _check_condition(node, path)
    elif "count" in node or "sum" in node:
        _check_value_order(node, path)
        _check_filter(node.get("where"), f"{path}/where")
    elif "last" in node:
        for key in ("where", "every", "some", "none"):
            _check_filter(node.get(key), f"{path}/{key}")
    return depth, nodes


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def _check_condition(node: dict[str, Any], path: str) -> None:
    name, op = node["field"], node["op"]
    found = resolve(name)
    if found is None:
        raise DefinitionError(
            f"{path}/field",
            f"unknown field {name!r} (see FIELDS in service/segstream/segments/defined/fields.py;"
            f" any {OPEN_PREFIX}<key> is open)",
        )
    kind = found.type
    if op not in OPS_BY_TYPE[kind]:
        takes = ", ".join(OPS_BY_TYPE[kind])
        raise DefinitionError(
            f"{path}/op", f"{op!r} does not apply to field {name!r} (a {kind}; it takes {takes})"
        )
    if op in ("eq", "ne", "in") and kind in ("number", "string", "boolean"):
        values = node["value"] if op == "in" else [node["value"]]
        for i, value in enumerate(values):
            if _json_type(value) != kind:
                where = f"{path}/value/{i}" if op == "in" else f"{path}/value"
                raise DefinitionError(
                    where,
                    f"{op!r} needs a {kind} value for field {name!r} (a {kind}), got {value!r}",
                )
    _check_value_order(node, path)


def _check_value_order(node: dict[str, Any], path: str) -> None:
    if node["op"] == "between" and node["value"][0] > node["value"][1]:
        low, high = node["value"]
        raise DefinitionError(f"{path}/value", f"between needs low <= high, got [{low}, {high}]")
    numbers = all(_json_type(v) == "number" for v in node["value"]) if node["op"] == "in" else True
    if not numbers and "field" not in node:  # an aggregate is a number
        raise DefinitionError(f"{path}/value", "'in' on an aggregate needs numbers")


def _check_filter(spec: dict[str, Any] | None, path: str) -> None:
    for key, value in (spec or {}).items():
        if isinstance(value, Mapping):
            low = max((value[k] for k in ("gt", "gte") if k in value), default=-math.inf)
            high = min((value[k] for k in ("lt", "lte") if k in value), default=math.inf)
            if low > high:
                raise DefinitionError(f"{path}/{key}", f"an empty range: {low} > {high}")


def check_segment_names(definition: Definition) -> None:
    """:class:`DefinitionError` for a condition on ``segments.<model>`` that compares with
    a segment the model never assigns (``"at-risk"`` for ``at_risk``): such a rule would
    hold for nobody, or everybody, forever. The names are the model registry's
    (``segment_names``). Not part of :func:`validate_definition`: a definition already
    live on the topic stays valid when a model's names change; the API checks new ones."""
    stack: list[tuple[Any, str]] = [(definition.rule, "rule")]
    while stack:
        node, path = stack.pop()
        for key in ("all", "any"):
            stack.extend((child, f"{path}/{key}/{i}") for i, child in enumerate(node.get(key, ())))
        if "not" in node:
            stack.append((node["not"], f"{path}/not"))
        if str(node.get("field", "")).startswith(SEGMENT_FIELDS) and node["op"] in (
            "eq",
            "ne",
            "in",
        ):
            _check_segment_values(node, path)


def _check_segment_values(node: dict[str, Any], path: str) -> None:
    name = node["field"].removeprefix(SEGMENT_FIELDS)
    model = available_models().get(name)
    if model is None:
        return
    many = node["op"] == "in"
    for i, value in enumerate(node["value"] if many else [node["value"]]):
        if isinstance(value, str) and not is_segment_of(model, value):
            shown = repr(value) if len(value) <= 80 else f"{value[:80]!r}..."
            raise DefinitionError(
                f"{path}/value/{i}" if many else f"{path}/value",
                f"model {name!r} has no segment {shown}; known: {segment_names_hint(model)}",
            )


# --- compilation -------------------------------------------------------------------------


def compile_definition(definition: Definition) -> CompiledRule:
    """The definition's rule as a :class:`CompiledRule` (built once; pure and reusable)."""
    rule = definition.rule
    changes = compile_next_change(rule, _compile)
    return CompiledRule(
        definition,
        _compile(rule),
        definition.nodes,
        definition.depth,
        changes,
        reads_predictions(rule),
    )


def _compile(node: dict[str, Any]) -> Test:
    if "all" in node:
        return _all(tuple(_compile(child) for child in node["all"]))
    if "any" in node:
        return _any(tuple(_compile(child) for child in node["any"]))
    if "not" in node:
        inner = _compile(node["not"])
        return lambda state, view: not inner(state, view)
    if "field" in node:
        return _condition(node)
    if "last" in node:
        return _last(node)
    return _aggregate(node)


def _all(tests: tuple[Test, ...]) -> Test:
    if len(tests) == 1:
        return tests[0]

    def test(state: CustomerState, view: CustomerSnapshot) -> bool:
        return all(each(state, view) for each in tests)

    return test


def _any(tests: tuple[Test, ...]) -> Test:
    if len(tests) == 1:
        return tests[0]

    def test(state: CustomerState, view: CustomerSnapshot) -> bool:
        return any(each(state, view) for each in tests)

    return test


def _condition(node: dict[str, Any]) -> Test:
    found = resolve(node["field"])
    assert found is not None  # validated
    get = found.get
    op: str = node["op"]
    value: Any = node.get("value")
    if op == "exists":
        return lambda state, view: get(state, view) is not None
    if op == "contains":
        return lambda state, view: kind_of(x := get(state, view)) == "set" and value in x
    if op == "in":
        wanted = frozenset((kind_of(v), v) for v in value)

        def member(state: CustomerState, view: CustomerSnapshot) -> bool:
            kind = kind_of(x := get(state, view))
            return kind is not None and (kind, x) in wanted

        return member
    if op in ("eq", "ne"):
        kind, equal = kind_of(value), op == "eq"
        return lambda state, view: kind_of(x := get(state, view)) == kind and (x == value) is equal
    check = numeric(op, value)
    return lambda state, view: kind_of(x := get(state, view)) == "number" and check(x)


def _aggregate(node: dict[str, Any]) -> Test:
    """``count`` or ``sum`` of a history's items within the window, compared by op."""
    check = aggregate(node)
    return lambda state, view: check(state, day_number(view.as_of))


def _last(node: dict[str, Any]) -> Test:
    """The latest ``last`` items (matching ``where``): every / some / none match a filter."""
    check = last(node)
    return lambda state, view: check(state, day_number(view.as_of))
