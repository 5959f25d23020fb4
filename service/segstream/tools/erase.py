"""``segstream erase SHOP CUSTOMER``: ask segstream to forget a customer.

Publishes one ``customer_erased`` event (schemas/v1/customer_erased.json) for the customer
to the erasure topic, as a shop platform does for a privacy request: the worker owning the
shop takes the customer out of every segment (the changes carry cause ``erased``), books a
paying subscriber's churn, and deletes their state; events of theirs dated before the
request that arrive later are dropped. The event is checked against the contract before it
is sent. Prints the event id.

Exit codes: 0 sent, 1 Kafka failure, 2 bad arguments or settings (nothing sent), 130
interrupted.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from segstream.domain.contracts import Rejection, parse_event
from segstream.domain.events import CustomerErased, format_time
from segstream.tools.command import UsageError, parser_for, run_cli
from segstream.tools.publish import encode
from segstream.tools.simulate import send, settings_from_environment


def erasure(shop_id: str, customer_id: str, now: datetime) -> dict[str, object]:
    """The erasure event of ``customer_id`` at ``shop_id``, requested ``now``; UsageError
    when it breaks the contract (an id with a control character, say).

    >>> event = erasure("tea-1", "c-7", datetime(2026, 3, 1, tzinfo=UTC))
    >>> event["type"], event["occurred_at"]
    ('customer_erased', '2026-03-01T00:00:00Z')
    """
    event: dict[str, object] = {
        "schema_version": 1,
        "type": CustomerErased.type_name,
        "event_id": f"erase-{uuid.uuid4()}",
        "shop_id": shop_id,
        "customer_id": customer_id,
        "occurred_at": format_time(now),
    }
    checked = parse_event(encode(event), CustomerErased, now)
    if isinstance(checked, Rejection):
        raise UsageError(f"not a valid erasure request: {checked.detail}")
    return event


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, check the request, publish it."""
    parser = parser_for("erase", __doc__)
    parser.add_argument("shop_id", metavar="SHOP", help="the shop's id")
    parser.add_argument("customer_id", metavar="CUSTOMER", help="the customer's id at the shop")
    args = parser.parse_args(argv)

    def body() -> int:
        event = erasure(args.shop_id, args.customer_id, datetime.now(UTC).replace(microsecond=0))
        settings = settings_from_environment()
        status = send("erase", settings, [(CustomerErased.topic_role, event)], None, 1)
        if status == 0:
            print(f"erase: sent {event['event_id']} for {args.shop_id}/{args.customer_id}")
        return status

    return run_cli("erase", body)


if __name__ == "__main__":
    sys.exit(main())
