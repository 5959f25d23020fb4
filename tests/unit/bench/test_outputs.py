"""bench.outputs: the digest that shows a speed change left behaviour unchanged."""

from __future__ import annotations

from bench.outputs import run


def test_the_same_records_give_the_same_digest_and_another_shop_another() -> None:
    # the pipeline is deterministic (a replay after a crash relies on it too); a digest that
    # hashed nothing that varies would pass the first check, not the second
    first, again = run(customers=60, days=30), run(customers=60, days=30)
    assert first.events > 100 and first.changes > 50
    assert (again.events, again.changes, again.digest) == (
        first.events,
        first.changes,
        first.digest,
    )
    assert run(customers=60, days=31).digest != first.digest
