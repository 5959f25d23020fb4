"""Random definitions over random customers: the compiled rule against a plain interpreter
of the JSON tree written here (the oracle), negation partitions, the size limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.domain.customer import CustomerState
from segstream.domain.events import Plan
from segstream.domain.features import CustomerSnapshot, snapshot
from segstream.segments import available_models
from segstream.segments.defined import (
    FIELDS,
    MAX_DEPTH,
    MAX_NODES,
    compile_definition,
    segment_fields,
    validate_definition,
)

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
EPOCH = date(1970, 1, 1)
CATEGORIES = ["green_tea", "black_tea", "meal_kit", "snack"]
TAGS = ["vegan", "green_tea", "spicy"]
STRINGS = ["urban", "rural", "month", "year", "referral", "web", "high", "low", "email", "x"]
NUMBERS = [0, 1, 2, 3, 4.5, 10, 30, 100, 250.0]
ACTIONS = ["delivered", "opened", "clicked", "converted", "unsubscribed"]
CHANNELS = ["email", "sms", "push"]
OPEN_KEYS = ["vip", "favourite", "score"]
WINDOWS = [1, 7, 30, 90, 365]
EDGES = [-1, 0, *WINDOWS, *(w - 1 for w in WINDOWS)]

# --- the oracle: what each field is, read straight from the state and snapshot ------------


def _attr(key: str) -> Callable[[CustomerState, CustomerSnapshot], Any]:
    return lambda s, v: s.attributes.get(key)


def _segment(model: str) -> Callable[[CustomerState, CustomerSnapshot], Any]:
    return lambda s, v: s.segments.get(model)


def _bought(s: CustomerState, v: CustomerSnapshot) -> Any:
    names = [name for name, n in s.categories.items() if n > 0]
    return names if names else None


def _first_touch_channel(s: CustomerState) -> str | None:
    bought = [datetime.combine(d, time(), UTC) for d in s.purchase_days] + s.signups
    purchase = min(bought, default=None)
    if s.first_touch is not None and (purchase is None or s.first_touch[0] <= purchase):
        return s.first_touch[1]
    if s.first_touch is None and s.first_seen_at is None and purchase is None:
        return None
    return s.acquisition_channel or "unknown"


ORACLE_FIELDS: dict[str, Callable[[CustomerState, CustomerSnapshot], Any]] = {
    "behaviour.order_count": lambda s, v: s.order_count,
    "behaviour.total_spend": lambda s, v: s.total_spend,
    "behaviour.frequency": lambda s, v: max(len(s.purchase_days) - 1, 0),
    "behaviour.recency_days": lambda s, v: (
        (max(s.purchase_days) - min(s.purchase_days)).days if s.purchase_days else None
    ),
    "behaviour.first_purchase_days_ago": lambda s, v: (
        (TODAY - min(s.purchase_days)).days if s.purchase_days else None
    ),
    "behaviour.days_since_last_purchase": lambda s, v: (
        (TODAY - max(s.purchase_days)).days if s.purchase_days else None
    ),
    "behaviour.monetary_value": lambda s, v: v.monetary_value,
    "behaviour.cadence_days": lambda s, v: v.cadence_days,
    "behaviour.tenure_days": lambda s, v: v.tenure_days,
    "behaviour.inactive_days": lambda s, v: v.last_activity_days,
    "behaviour.renewal_count": lambda s, v: s.renewal_count,
    "behaviour.discount_order_count": lambda s, v: s.discount_order_count,
    "behaviour.referral_count": lambda s, v: s.referral_count,
    "behaviour.has_returned": lambda s, v: v.returned_at is not None,
    "categories": _bought,
    "subscription.status": lambda s, v: v.subscription,
    "subscription.cancel_reason": lambda s, v: s.cancel_reason,
    "plan.id": lambda s, v: s.plan_history[-1][1].plan_id if s.plan_history else None,
    "plan.price": lambda s, v: s.plan_history[-1][1].price if s.plan_history else None,
    "plan.tier": lambda s, v: s.plan_history[-1][1].tier if s.plan_history else None,
    "plan.interval": lambda s, v: s.plan_history[-1][1].interval if s.plan_history else None,
    "acquisition.channel": lambda s, v: s.acquisition_channel,
    "acquisition.referred_by": lambda s, v: s.referred_by,
    "contact.preferred_channel": lambda s, v: s.preferred_channel,
    "contact.marketing_opt_in": lambda s, v: s.marketing_opt_in,
    "journey.stage": lambda s, v: (
        "retention"
        if len(s.purchase_days) > 1
        else "purchase"
        if s.purchase_days or s.signups
        else "consideration"
        if s.considered_at
        else "awareness"
        if s.first_touch or s.first_seen_at
        else None
    ),
    "journey.channel": lambda s, v: _first_touch_channel(s),
    "journey.tried": lambda s, v: s.considered_at is not None,
    **{f"segments.{name}": _segment(name) for name in available_models()},
    "feedback.latest_score": lambda s, v: max(s.feedback_scores)[1] if s.feedback_scores else None,
    "feedback.mean_score": lambda s, v: (
        sum(x for _, x in s.feedback_scores) / len(s.feedback_scores) if s.feedback_scores else None
    ),
    "attributes.age": _attr("age"),
    "attributes.gender": _attr("gender"),
    "attributes.region": _attr("region"),
    "attributes.location_type": _attr("location_type"),
    "attributes.postal_code": _attr("postal_code"),
    "attributes.preferences": _attr("preferences"),
}


def read(name: str, s: CustomerState, v: CustomerSnapshot) -> Any:
    if name in ORACLE_FIELDS:
        return ORACLE_FIELDS[name](s, v)
    return s.attributes.get(name.removeprefix("attributes."))


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def same_type(x: Any, value: Any) -> bool:
    if is_number(value):
        return is_number(x)
    return type(x) is type(value)


def compare(x: Any, op: str, value: Any) -> bool:
    """A condition on a read value (None: missing)."""
    if op == "exists":
        return x is not None
    if x is None:
        return False
    if op == "contains":
        return isinstance(x, list) and value in x
    if op == "in":
        return any(same_type(x, v) and x == v for v in value)
    if op in ("eq", "ne"):
        return same_type(x, value) and ((x == value) if op == "eq" else (x != value))
    if not is_number(x):
        return False
    return number_holds(x, op, value)


def number_holds(x: float, op: str, value: Any) -> bool:
    if op == "between":
        return bool(value[0] <= x <= value[1])
    if op == "in":
        return x in value
    holds: dict[str, bool] = {
        "eq": x == value,
        "ne": x != value,
        "lt": x < value,
        "lte": x <= value,
        "gt": x > value,
        "gte": x >= value,
    }
    return holds[op]


def history(name: str, s: CustomerState) -> list[dict[str, Any]]:
    """Items as dicts, oldest first, with their date."""
    if name == "purchase_days":
        return [{"day": d, "amount": a} for d, a in sorted(s.purchase_days.items())]
    if name == "feedback":
        return [{"day": EPOCH + timedelta(days=d), "score": x} for d, x in s.feedback_scores]
    if name == "campaign_responses":
        return [
            {"day": EPOCH + timedelta(days=d), "action": a, "channel": c}
            for d, a, c, _ in s.campaign_touches
        ]
    messages: dict[tuple[int, str], dict[str, Any]] = {}
    for d, a, c, campaign in s.campaign_touches:
        item = messages.setdefault((campaign, c), {"first": d, "actions": set(), "channel": c})
        item["first"] = min(item["first"], d)
        item["actions"].add(a)
    ordered = sorted(messages.items(), key=lambda kv: (kv[1]["first"], kv[0]))
    return [
        {"day": EPOCH + timedelta(days=m["first"]), "action": m["actions"], "channel": m["channel"]}
        for _, m in ordered
    ]


def matches(item: dict[str, Any], spec: dict[str, Any] | None) -> bool:
    for key, wanted in (spec or {}).items():
        x = item[key]
        if isinstance(wanted, dict):
            ok = all(number_holds(x, op, bound) for op, bound in wanted.items())
        else:
            options = wanted if isinstance(wanted, list) else [wanted]
            ok = bool(x & set(options)) if isinstance(x, set) else x in options
        if not ok:
            return False
    return True


def oracle(rule: dict[str, Any], s: CustomerState, v: CustomerSnapshot) -> bool:
    if "all" in rule:
        return all(oracle(child, s, v) for child in rule["all"])
    if "any" in rule:
        return any(oracle(child, s, v) for child in rule["any"])
    if "not" in rule:
        return not oracle(rule["not"], s, v)
    if "field" in rule:
        return compare(read(rule["field"], s, v), rule["op"], rule.get("value"))
    if "last" in rule:
        items = [i for i in history(rule["of"], s) if i["day"] <= TODAY]
        taken = [i for i in items if matches(i, rule.get("where"))][-rule["last"] :]
        if len(taken) < rule["last"]:
            return False
        if "every" in rule:
            return all(matches(i, rule["every"]) for i in taken)
        some = any(matches(i, rule.get("some") or rule.get("none")) for i in taken)
        return some if "some" in rule else not some
    name, item_field = (rule["count"], None) if "count" in rule else rule["sum"].split(".")
    days = rule.get("within_days")
    total: float = 0
    for item in history(name, s):
        age = (TODAY - item["day"]).days
        if age >= 0 and (days is None or age < days) and matches(item, rule.get("where")):
            total += 1 if item_field is None else item[item_field]
    return number_holds(total, rule["op"], rule["value"])


# --- random customers -------------------------------------------------------------------


@st.composite
def customers(draw: st.DrawFn) -> tuple[CustomerState, CustomerSnapshot]:
    # days ago, often on a window's edge (within_days N counts ages 0 .. N - 1)
    day = st.one_of(st.sampled_from(EDGES), st.integers(min_value=-2, max_value=400))
    purchases = draw(st.dictionaries(day, st.sampled_from([5.0, 12.5, 30.0, 60.0]), max_size=8))
    attributes: dict[str, Any] = {}
    if draw(st.booleans()):
        attributes["age"] = draw(st.sampled_from([18, 30, 45, 70]))
    if draw(st.booleans()):
        attributes["location_type"] = draw(st.sampled_from(["urban", "rural"]))
    if draw(st.booleans()):
        attributes["preferences"] = draw(st.lists(st.sampled_from(TAGS), unique=True))
    for key in OPEN_KEYS:
        if draw(st.booleans()):
            attributes[key] = draw(
                st.one_of(
                    st.sampled_from(STRINGS),
                    st.sampled_from(NUMBERS),
                    st.booleans(),
                    st.lists(st.sampled_from(TAGS), max_size=2),
                )
            )
    plans = draw(
        st.lists(
            st.tuples(
                st.integers(1, 300),
                st.sampled_from([0.0, 10.0, 25.0]),
                st.sampled_from(["month", "year"]),
                st.sampled_from([None, "basic", "premium"]),
            ),
            max_size=2,
        )
    )
    signups = sorted({NOW - timedelta(days=d) for d, *_ in plans})
    touches = draw(
        st.lists(
            st.tuples(day, st.sampled_from(ACTIONS), st.sampled_from(CHANNELS)).map(
                lambda t: (t[0], t[1], t[2], hash(t[0] // 7) % 4)
            ),
            max_size=12,
        )
    )
    today = (TODAY - EPOCH).days
    kept = CustomerState(
        "shop",
        "c",
        signups=signups,
        plan_history=sorted(
            (
                (NOW - timedelta(days=d), Plan(f"p{price}", price, "EUR", interval, tier))
                for d, price, interval, tier in plans
            ),
            key=lambda entry: entry[0],
        ),
        acquisition_channel=draw(st.sampled_from([None, "referral", "web"])),
        referred_by=draw(st.sampled_from([None, "c-0"])),
        preferred_channel=draw(st.sampled_from([None, *CHANNELS])),
        marketing_opt_in=draw(st.sampled_from([None, True, False])),
        attributes=attributes,
        purchase_days={TODAY - timedelta(days=d): a for d, a in purchases.items()},
        first_seen_at=NOW - timedelta(days=410),
        order_count=len(purchases) + draw(st.integers(0, 3)),
        renewal_count=draw(st.integers(0, 2)),
        discount_order_count=draw(st.integers(0, 2)),
        referral_count=draw(st.integers(0, 2)),
        total_spend=sum(purchases.values()),
        categories=draw(st.dictionaries(st.sampled_from(CATEGORIES), st.integers(0, 3))),
        segments=draw(
            st.dictionaries(
                st.sampled_from(["rfm", "lifecycle", "churn_risk", "cluster"]),
                st.sampled_from(["high", "low", "Champions", "at_risk", "c1"]),
            )
        ),
        cancel_reason=draw(st.sampled_from([None, "price"])),
        campaign_touches=sorted((today - d, a, c, h) for d, a, c, h in touches),
        feedback_scores=sorted(
            (today - d, x) for d, x in draw(st.lists(st.tuples(day, st.integers(1, 5)), max_size=6))
        ),
    )
    return kept, snapshot(kept, NOW)


# --- random definitions -----------------------------------------------------------------

VALUES_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "number": st.sampled_from(NUMBERS),
    "string": st.sampled_from(STRINGS),
    "boolean": st.booleans(),
}
OPS: dict[str, list[str]] = {
    "number": ["eq", "ne", "lt", "lte", "gt", "gte", "in", "between", "exists"],
    "string": ["eq", "ne", "in", "exists"],
    "boolean": ["eq", "ne", "exists"],
    "set": ["contains", "exists"],
    "any": ["eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "between", "exists"],
}
SCALARS = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.booleans())
OPEN_FIELDS = [f"attributes.{key}" for key in OPEN_KEYS]
NAMED = {**FIELDS, **segment_fields()}
"""The fields the oracle reads: the catalogue but the predictions."""


def field_type(name: str) -> str:
    return NAMED[name].type if name in NAMED else "any"


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    # the open attributes as often as the whole catalogue: their values vary in type
    name = draw(st.sampled_from(list(NAMED)) | st.sampled_from(OPEN_FIELDS))
    kind = field_type(name)
    op = draw(st.sampled_from(OPS[kind]))
    node: dict[str, Any] = {"field": name, "op": op}
    scalar = VALUES_BY_TYPE.get(kind, SCALARS)
    if op in ("eq", "ne"):
        node["value"] = draw(scalar)
    elif op == "in":
        node["value"] = draw(st.lists(scalar, min_size=1, max_size=3))
    elif op in ("lt", "lte", "gt", "gte"):
        node["value"] = draw(st.sampled_from(NUMBERS))
    elif op == "between":
        node["value"] = sorted(draw(st.lists(st.sampled_from(NUMBERS), min_size=2, max_size=2)))
    elif op == "contains":
        node["value"] = draw(st.sampled_from(TAGS + CATEGORIES))
    return node


def filters(history_name: str) -> st.SearchStrategy[dict[str, Any]]:
    def one_or_list(options: list[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.sampled_from(options), st.lists(st.sampled_from(options), min_size=1, max_size=2)
        )

    def ranges(low: float, high: float) -> st.SearchStrategy[dict[str, float]]:
        bound = st.sampled_from([low, (low + high) / 2, high])
        return st.dictionaries(
            st.sampled_from(["gt", "gte", "lt", "lte"]), bound, min_size=1
        ).filter(
            lambda r: (
                max([r.get("gt", low - 1), r.get("gte", low - 1)])
                <= min([r.get("lt", high + 1), r.get("lte", high + 1)])
            )
        )

    if history_name == "purchase_days":
        return st.fixed_dictionaries({"amount": ranges(5, 60)})
    if history_name == "feedback":
        score = st.one_of(
            st.integers(1, 5), st.lists(st.integers(1, 5), min_size=1, max_size=5), ranges(1, 5)
        )
        return st.fixed_dictionaries({"score": score})
    keys = st.fixed_dictionaries(
        {}, optional={"action": one_or_list(ACTIONS), "channel": one_or_list(CHANNELS)}
    )
    return keys.filter(bool)


HISTORY_NAMES = ["purchase_days", "campaign_responses", "campaigns", "feedback"]


@st.composite
def aggregates(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["count", "sum", "last"]))
    if kind == "last":
        name = draw(st.sampled_from(HISTORY_NAMES))
        node: dict[str, Any] = {"last": draw(st.integers(1, 4)), "of": name}
        if draw(st.booleans()):
            node["where"] = draw(filters(name))
        node[draw(st.sampled_from(["every", "some", "none"]))] = draw(filters(name))
        return node
    if kind == "count":
        name = draw(st.sampled_from(HISTORY_NAMES))
        node = {"count": name}
        values = st.integers(0, 4)
    else:
        node = {"sum": draw(st.sampled_from(["purchase_days.amount", "feedback.score"]))}
        name = node["sum"].split(".")[0]
        values = st.sampled_from([0, 5.0, 12.5, 30, 42.5, 100])
    if draw(st.booleans()):
        node["within_days"] = draw(st.sampled_from(WINDOWS))
    if draw(st.booleans()):
        node["where"] = draw(filters(name))
    op = draw(st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "in", "between"]))
    node["op"] = op
    if op == "in":
        node["value"] = draw(st.lists(values, min_size=1, max_size=3))
    elif op == "between":
        node["value"] = sorted(draw(st.lists(values, min_size=2, max_size=2)))
    else:
        node["value"] = draw(values)
    return node


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    budget = [MAX_NODES - 1]  # the root is one node; a negation wraps the rule in one more

    def node(level: int) -> dict[str, Any]:
        budget[0] -= 1
        if level < MAX_DEPTH - 1 and budget[0] > 0 and draw(st.integers(0, 2)) == 0:
            kind = draw(st.sampled_from(["all", "any", "not"]))
            if kind == "not":
                return {"not": node(level + 1)}
            wanted = draw(st.integers(1, 4))
            children: list[dict[str, Any]] = []
            for _ in range(wanted):
                if budget[0] <= 0 and children:
                    break
                children.append(node(level + 1))
            return {kind: children}
        return draw(st.one_of(conditions(), aggregates()))

    return node(1)


def definition(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "shop_id": "shop",
        "segment_id": "random",
        "name": "Random",
        "version": 1,
        "rule": rule,
    }


def size(rule: dict[str, Any]) -> tuple[int, int]:
    children = [*rule.get("all", []), *rule.get("any", [])]
    if "not" in rule:
        children.append(rule["not"])
    sizes = [size(child) for child in children]
    return 1 + max((d for d, _ in sizes), default=0), 1 + sum(n for _, n in sizes)


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_oracle_knows_every_catalogue_field() -> None:
    assert set(ORACLE_FIELDS) == set(NAMED)


@PROPERTY
@given(rules(), st.lists(customers(), min_size=1, max_size=4))
def test_compiled_rules_agree_with_the_oracle_and_their_not_partitions(
    rule: dict[str, Any], people: list[tuple[CustomerState, CustomerSnapshot]]
) -> None:
    compiled = compile_definition(validate_definition(definition(rule)))
    negated = compile_definition(validate_definition(definition({"not": rule})))
    for kept, view in people:
        result = compiled(kept, view)
        assert result is oracle(rule, kept, view)
        assert negated(kept, view) is (not result)


@PROPERTY
@given(rules())
def test_the_validator_accepts_every_generated_rule_within_the_limits(
    rule: dict[str, Any],
) -> None:
    compiled = compile_definition(validate_definition(definition(rule)))
    assert (compiled.depth, compiled.nodes) == size(rule)
    assert compiled.depth <= MAX_DEPTH and compiled.nodes <= MAX_NODES
    assert compiled.definition.rule == rule


@settings(max_examples=250, deadline=None)
@given(st.one_of(conditions(), aggregates()), st.lists(customers(), min_size=3, max_size=5))
def test_single_conditions_and_aggregates_agree_with_the_oracle(
    rule: dict[str, Any], people: list[tuple[CustomerState, CustomerSnapshot]]
) -> None:
    """Leaves alone, many customers each: an edge case is not hidden by the rest of a tree."""
    compiled = compile_definition(validate_definition(definition(rule)))
    for kept, view in people:
        assert compiled(kept, view) is oracle(rule, kept, view)
