"""No id the input contract accepts can make a key equal to another one (issue 27).

The ids are drawn from the contract itself (``envelope.json``'s ``shop_id`` and
``customer_id``, the definitions' ``segment_id`` and ``experiment_id``): a contract that
loosened, say, let a shop id hold ``|``, makes shop ``a|definitions``'s record the
definitions of shop ``a``, and the property fails (the last test shows the check finds
exactly that).
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import segstream
from segstream.state import keyspace as ks

SCHEMAS = Path(segstream.__file__).parent / "schemas" / "v1"
PARTITIONS = 12


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


ENVELOPE = _schema("envelope.json")["$defs"]


def _pattern(node: dict[str, Any]) -> re.Pattern[str]:
    """A schema node's pattern (its ``$ref``'s inside the envelope), as the contract reads
    it: a final ``$`` is the end of the input (``domain.contracts._compiled``)."""
    pattern = node.get("pattern") or ENVELOPE[node["$ref"].rpartition("/")[2]]["pattern"]
    return re.compile(pattern.removesuffix("$") + r"\Z")


def _ids(node: dict[str, Any], alphabet: str = "") -> st.SearchStrategy[str]:
    """Strings the contract accepts for ``node``: drawn from its pattern, or from text of
    ``alphabet`` (the characters keys are made of) and any other, kept when the pattern
    and the lengths allow them."""
    pattern, low, high = _pattern(node), node.get("minLength", 1), node["maxLength"]
    drawn = st.from_regex(pattern, fullmatch=True)
    if alphabet:
        drawn |= st.text(st.sampled_from(alphabet) | st.characters(), min_size=low, max_size=12)
    return drawn.filter(
        lambda text: (
            low <= len(text) <= high
            and bool(pattern.fullmatch(text))
            and not _has_lone_surrogate(text)
        )
    )


def _has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds an unpaired surrogate: the contract refuses such a record
    before any pattern (``domain.contracts``: "unpaired surrogate escape"), so no key is
    ever made of one."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


SHOP_IDS = _ids(ENVELOPE["shop_id"])
CUSTOMER_IDS = _ids(ENVELOPE["customer_id"], "/|_:.-aZ0")
SEGMENT_IDS = _ids(_schema("segment_definition.json")["properties"]["segment_id"])
EXPERIMENT_IDS = _ids(_schema("experiment_definition.json")["properties"]["experiment_id"])


def tables(
    shops: Iterable[str],
    customers: Iterable[str],
    partitions: Iterable[int],
    dimensions: Iterable[str],
    names: Iterable[tuple[str, str]] = (),
) -> dict[str, list[tuple[str, Hashable]]]:
    """Every key of each table (and the definitions topic, and the names of a shop's
    passes) for these ids, each with what it stands for."""
    shops, customers, partitions = list(shops), list(customers), list(partitions)
    day = date(2026, 3, 1)
    found: dict[str, list[tuple[str, Hashable]]] = {
        "customers": [
            (ks.customer_key(s, c), ("customer", s, c)) for s in shops for c in customers
        ],
        "shops": [
            *((s, ("shop", s)) for s in shops),
            *((ks.definitions_key(s), ("definitions", s)) for s in shops),
            *((ks.experiments_key(s), ("experiments", s)) for s in shops),
            *((ks.lifetime_key(s), ("lifetime", s)) for s in shops),
            *((ks.funnel_key(s), ("funnel", s)) for s in shops),
            *((ks.erasure_key(s, c), ("erased", s, c)) for s in shops for c in customers),
            *((ks.referrals_key(s, c), ("referrals", s, c)) for s in shops for c in customers),
            *((ks.progress_key(p), ("progress", p)) for p in partitions),
        ],
        "models": [
            *((s, ("checkpoint", s)) for s in shops),
            *((ks.prior_key(p), ("prior", p)) for p in partitions),
        ],
        "metrics": [
            *((ks.index_key(s), ("index", s)) for s in shops),
            *((ks.day_key(s, day, d), ("day", s, d)) for s in shops for d in dimensions),
            *((ks.total_key(s, d), ("total", s, d)) for s in shops for d in dimensions),
        ],
        "definitions topic": [
            (ks.definition_record_key(s, name).decode(), (kind, s, name))
            for s in shops
            for kind, name in names
        ],
    }
    return found


def collisions(keys: dict[str, list[tuple[str, Hashable]]]) -> list[str]:
    """Keys of one table that stand for two different things."""
    found = []
    for table, entries in keys.items():
        meaning: dict[str, Hashable] = {}
        for key, what in entries:
            if meaning.setdefault(key, what) != what:
                found.append(f"{table}: {key!r} is {meaning[key]} and {what}")
    return found


def misrouted(keys: dict[str, list[tuple[str, Hashable]]]) -> list[str]:
    """Keys whose shop or partition is not that of what they stand for."""
    found = []
    for table, entries in keys.items():
        if table == "definitions topic":
            continue
        for key, what in entries:
            assert isinstance(what, tuple)
            kind, owner = what[0], what[1]
            expected = (
                owner if kind in ("progress", "prior") else ks.shop_partition(owner, PARTITIONS)
            )
            if ks.partition_of(key, PARTITIONS) != expected:
                found.append(f"{table}: {key!r} ({what}) routed to another partition")
            if kind not in ("progress", "prior") and ks.shop_of(key) != owner:
                found.append(f"{table}: {key!r} ({what}) read as shop {ks.shop_of(key)!r}")
            if table == "shops" and ks.is_shop_key(key) != (kind == "shop"):
                found.append(f"shops: {key!r} ({what}) taken for a shop's main record or not")
    return found


@settings(max_examples=150, deadline=None)
@given(
    shops=st.lists(SHOP_IDS, min_size=1, max_size=4, unique=True),
    customers=st.lists(CUSTOMER_IDS, min_size=1, max_size=4, unique=True),
    partitions=st.lists(st.integers(0, PARTITIONS - 1), max_size=3, unique=True),
    dimensions=st.lists(st.text(max_size=12), min_size=1, max_size=3, unique=True),
    segments=st.lists(SEGMENT_IDS, max_size=3, unique=True),
    experiments=st.lists(EXPERIMENT_IDS, max_size=3, unique=True),
    models=st.lists(st.sampled_from(["cluster", "rfm", "lifecycle", "churn_risk"]), max_size=2),
)
def test_no_id_the_contract_accepts_collides_with_another_key(
    shops: list[str],
    customers: list[str],
    partitions: list[int],
    dimensions: list[str],
    segments: list[str],
    experiments: list[str],
    models: list[str],
) -> None:
    names = [
        *(("segment", s) for s in segments),
        *(("experiment", ks.experiment_name(e)) for e in experiments),
        *(("rehoming", f"{ks.REHOMING_PREFIX}{m}") for m in set(models)),
    ]
    keys = tables(shops, customers, partitions, dimensions, names)
    assert collisions(keys) == []
    assert misrouted(keys) == []


def test_the_check_finds_a_shop_id_the_contract_refuses() -> None:
    """A shop id with ``|`` (refused by the contract) would be another shop's record, one
    with ``/`` another shop's customer: the checks above see both."""
    refused = tables(["a", "a|definitions", "a/b"], ["b/c", "c"], [3], ["all"])
    assert "shops: 'a|definitions' is ('shop', 'a|definitions') and ('definitions', 'a')" in (
        collisions(refused)
    )
    assert "customers: 'a/b/c' is ('customer', 'a', 'b/c') and ('customer', 'a/b', 'c')" in (
        collisions(refused)
    )
    assert not _pattern(ENVELOPE["shop_id"]).fullmatch("a|definitions")
    assert not _pattern(ENVELOPE["shop_id"]).fullmatch("__progress__")
