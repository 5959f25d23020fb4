"""A shop's live definitions: which segments it defined, and who is in each.

Membership of a defined segment is kept like a model's segment, in the customer's
``segments`` under the model name ``defined:<segment_id>`` (so sizes, the membership
topic and the members query work unchanged), and every entry and exit carries the
version of the definition that decided it. A customer may be in any number of defined
segments at once.

A new or replaced definition puts the shop's existing customers in or out by a
*re-evaluation*: the shop's customers in key order, a bounded number per commit, resumed
from a cursor that commits with them, so a shop of any size never needs one huge
transaction and a crash resumes where the last commit ended. A deleted definition's
re-evaluation takes everyone out. Customers whose own events arrive meanwhile are
evaluated against the new version at once; the re-evaluation then finds them right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segstream.segments.defined.rules import (
    CompiledRule,
    Definition,
    compile_definition,
    validate_definition,
)

MAX_RETIRED = 1_000
"""Most deleted segments whose last version a shop remembers (a segment re-created under
the same id continues from it, so change ids never repeat)."""
MODEL_PREFIX = "defined:"
"""Model names of defined segments: ``defined:<segment_id>``."""


def model_name(segment_id: str) -> str:
    """The model name a defined segment's changes and memberships carry.

    >>> model_name("green-tea-lovers")
    'defined:green-tea-lovers'
    """
    return f"{MODEL_PREFIX}{segment_id}"


def segment_of(model: str) -> str | None:
    """The defined segment a model name stands for (None: a built-in model).

    >>> segment_of("defined:green-tea-lovers"), segment_of("lifecycle")
    ('green-tea-lovers', None)
    """
    return model.removeprefix(MODEL_PREFIX) if model.startswith(MODEL_PREFIX) else None


@dataclass(slots=True)
class Reevaluation:
    """Putting a shop's existing customers in or out of one segment, ``after`` the last
    customer id done (None: not started), for ``version`` of its definition (or, when
    ``deleted``, taking everyone out; the exits carry the last version)."""

    segment_id: str
    version: int
    deleted: bool = False
    after: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "segment_id": self.segment_id,
            "version": self.version,
            "deleted": self.deleted,
            "after": self.after,
        }


@dataclass(slots=True)
class ShopDefinitions:
    """One shop's definitions (compiled once) and its unfinished re-evaluations, oldest
    first."""

    rules: dict[str, CompiledRule] = field(default_factory=dict)
    pending: list[Reevaluation] = field(default_factory=list)
    retired: dict[str, int] = field(default_factory=dict)
    """Deleted segment -> its last version (the most recent MAX_RETIRED)."""

    @classmethod
    def load(cls, stored: dict[str, Any] | None) -> ShopDefinitions:
        """From the shop's record in the ``shops`` table (None: no definitions)."""
        if stored is None:
            return cls()
        rules = {
            segment_id: compile_definition(validate_definition(payload))
            for segment_id, payload in stored["definitions"].items()
        }
        pending = [
            Reevaluation(item["segment_id"], item["version"], item["deleted"], item["after"])
            for item in stored["pending"]
        ]
        return cls(rules, pending, dict(stored["retired"]))

    def record(self) -> dict[str, Any]:
        """The shop's record of definitions (see :meth:`load`)."""
        return {
            "definitions": {s: rule.definition.to_json() for s, rule in self.rules.items()},
            "pending": [item.to_json() for item in self.pending],
            "retired": self.retired,
        }

    def version(self, segment_id: str) -> int | None:
        """The live version of a segment (None: not defined)."""
        rule = self.rules.get(segment_id)
        return None if rule is None else rule.definition.version

    def last_version(self, segment_id: str) -> int:
        """The highest version the segment ever had here (0: never defined); a new one
        must be above it."""
        return self.version(segment_id) or self.retired.get(segment_id, 0)

    def define(self, definition: Definition) -> None:
        """Make ``definition`` live and re-evaluate the shop's customers against it."""
        self.rules[definition.segment_id] = compile_definition(definition)
        self.retired.pop(definition.segment_id, None)
        self.queue(Reevaluation(definition.segment_id, definition.version))

    def delete(self, segment_id: str) -> bool:
        """Remove a segment (False: it was not defined); everyone in it leaves."""
        rule = self.rules.pop(segment_id, None)
        if rule is None:
            return False
        self.retired[segment_id] = rule.definition.version
        while len(self.retired) > MAX_RETIRED:
            del self.retired[next(iter(self.retired))]
        self.queue(Reevaluation(segment_id, rule.definition.version, deleted=True))
        return True

    def queue(self, item: Reevaluation) -> None:
        """A newer re-evaluation (or a model's rehoming pass, named ``model:<name>``)
        replaces one under way of the same name (started over)."""
        self.pending = [p for p in self.pending if p.segment_id != item.segment_id]
        self.pending.append(item)
