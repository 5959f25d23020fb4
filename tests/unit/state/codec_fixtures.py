"""Golden customer states for the state codec: the bytes an encoder wrote, and the state
they decode to, in ``tests/unit/state/data/customer_states_v<N>.json``.

``python -m tests.unit.state.codec_fixtures <N> [--older]`` writes format N's file with
the encoder of the checkout it runs in (``--older`` adds the shorter format-1 layouts
older releases wrote, from :mod:`tests.unit.state.v1_layout`). A file is written once,
by the release whose format it records, and never rewritten: every later release must
decode its bytes to the same states (``test_codec_fixtures``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

from harness.stores import InProcessPipeline
from segstream.domain.contracts import EVENT_TYPES
from segstream.domain.customer import CustomerState, id_hash
from segstream.domain.events import Plan
from segstream.settings import Settings
from segstream.state.codec import FORMAT, decode_state, encode_state
from segstream.tools.publish import encode
from segstream.tools.simulation import KINDS_BY_NAME, SimulationConfig, generate, shops_per_kind
from tests.unit.state.v1_layout import LAYOUTS, encode_before

DATA = Path(__file__).parent / "data"
Encoder = Callable[[CustomerState], bytes]


def path_of(version: int) -> Path:
    """The fixture file of format ``version``."""
    return DATA / f"customer_states_v{version}.json"


def every_field() -> CustomerState:
    """A state with every field away from its default, with the values codecs get wrong:
    fractions of seconds and of cents, consent False, an empty cancel reason."""
    at = datetime(2026, 3, 1, 9, 30, 0, 250000, tzinfo=UTC)
    later = datetime(2026, 4, 2, 10, tzinfo=UTC)
    return CustomerState(
        "tea-1",
        "c-every",
        signups=[at, later],
        cancellations=[(later, datetime(2026, 5, 2, tzinfo=UTC))],
        cancel_reason="",
        plan_history=[
            (at, Plan("p-1", 12.5, "EUR", "month", None)),
            (later, Plan("p-2", 0.125, "EUR", "year", "gold")),
        ],
        acquisition_channel="web",
        referred_by="c-0",
        preferred_channel="sms",
        attributes={"age": 34, "region": "north", "tags": ["a", "b"]},
        purchase_days={date(2026, 3, 1): 12.5, date(2026, 3, 9): 1e18, date(2026, 4, 2): 0.125},
        first_seen_at=at,
        order_count=3,
        renewal_count=1,
        discount_order_count=1,
        total_spend=1e18 + 12.625,
        categories={"tea": 2, "cups": 1},
        seen_ids=[(id_hash("e-1"), 20513), (id_hash("e-2"), 20545)],
        segments={"rfm": "Champions", "churn_risk": "low"},
        memory={"rfm": [739000, 2, 410], "cluster": b"\x00\x01\xff"},
        due_at=datetime(2026, 6, 1, 0, 0, 0, 500000, tzinfo=UTC),
        segment_since={"rfm": 1772357400.0, "churn_risk": 1772357400.5},
        marketing_opt_in=False,
        attribute_times={"age": later, "region": at, "tags": at},
        preferred_channel_at=at,
        marketing_opt_in_at=later,
        campaign_touches=[
            (20513, "opened", "email", id_hash("camp-1")),
            (20545, "clicked", "sms", id_hash("camp-2")),
        ],
        feedback_scores=[(20513, 4), (20545, 1)],
        referral_count=2,
        enrolments={"thanks": [1.7e9, 2, 30.5, True, "treatment"]},
        first_touch=(datetime(2026, 2, 20, tzinfo=UTC), "social"),
        considered_at=datetime(2026, 2, 25, tzinfo=UTC),
    )


def simulated() -> list[CustomerState]:
    """Customers of a small simulated coffee shop (with touchpoints), as the worker's
    pipeline left them: the three with the most fields set, and the one with the fewest."""
    shop = shops_per_kind(1, (KINDS_BY_NAME["coffee"],))[0]
    config = SimulationConfig(
        seed=3, shops=(shop,), customers_per_shop=40, days=120, touchpoints=True
    )
    worker = InProcessPipeline(Settings())
    for role, value in generate(config).outbox():
        if not isinstance(value, bytes):
            worker.handle(EVENT_TYPES[role], role, encode(value), value["shop_id"])
    worker.commit()
    table = worker.tables["customers"]
    states = sorted((table[key] for key in table), key=lambda s: (-_fields_set(s), s.customer_id))
    return [*states[:3], states[-1]]


def _fields_set(state: CustomerState) -> int:
    bare = CustomerState(state.shop_id, state.customer_id)
    return sum(getattr(state, name) != getattr(bare, name) for name in state.__slots__)


def entries(encoder: Encoder, older: bool) -> Iterator[dict[str, str]]:
    """Fixture entries: name, shop and customer ids, the bytes (hex) and the state's repr."""
    states = {"every_field": every_field(), "bare": CustomerState("tea-1", "c-bare")}
    states |= {f"simulated_{n}": state for n, state in enumerate(simulated())}
    for name, state in states.items():
        yield _entry(name, state, encoder(state))
    for field in LAYOUTS if older else ():
        yield _entry(
            f"every_field_before_{field}",
            states["every_field"],
            encode_before(states["every_field"], field),
        )


def _entry(name: str, state: CustomerState, raw: bytes) -> dict[str, str]:
    decoded = decode_state(state.shop_id, state.customer_id, raw)
    return {
        "name": name,
        "shop_id": state.shop_id,
        "customer_id": state.customer_id,
        "hex": raw.hex(),
        "state": repr(decoded),
    }


def main(argv: list[str]) -> None:
    """Write format ``argv[0]``'s fixture file with this checkout's encoder."""
    version = int(argv[0])
    if version != FORMAT:
        raise SystemExit(f"this checkout writes format {FORMAT}, not {version}")
    found = list(entries(encode_state, "--older" in argv))
    path_of(version).write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
