"""The reference consumer's logic: bootstrap from memberships, then apply each change
once, nothing the membership already holds, and act only with consent."""

from __future__ import annotations

import json
from typing import Any

from segstream.tools.follow import Follower


def member(customer: str, segment: str, since: str, change_id: str) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "kind": "segment_membership",
            "shop_id": "tea-1",
            "customer_id": customer,
            "model": "lifecycle",
            "segment": segment,
            "since": since,
            "change_id": change_id,
            "marketing_opt_in": True,
        }
    ).encode()


def change(
    customer: str, current: str | None, at: str, event_id: str, **extra: Any
) -> dict[str, Any]:
    return {
        "kind": "segment_changed",
        "event_id": event_id,
        "shop_id": "tea-1",
        "customer_id": customer,
        "model": "lifecycle",
        "previous": "active",
        "current": current,
        "changed_at": at,
        "marketing_opt_in": True,
    } | extra


def test_bootstrap_keeps_the_last_record_per_key_and_drops_tombstones() -> None:
    follower = Follower()
    follower.bootstrap(b"tea-1|c-1|lifecycle", member("c-1", "new", "2026-01-01T00:00:00Z", "a"))
    follower.bootstrap(b"tea-1|c-1|lifecycle", member("c-1", "active", "2026-02-01T00:00:00Z", "b"))
    follower.bootstrap(b"tea-1|c-2|lifecycle", member("c-2", "new", "2026-01-05T00:00:00Z", "c"))
    follower.bootstrap(b"tea-1|c-2|lifecycle", None)
    assert {k: v["segment"] for k, v in follower.members.items()} == {
        ("tea-1", "c-1", "lifecycle"): "active"
    }


def test_changes_already_in_the_membership_or_repeated_are_skipped() -> None:
    follower = Follower()
    follower.bootstrap(b"tea-1|c-1|lifecycle", member("c-1", "active", "2026-02-01T00:00:00Z", "b"))
    assert follower.on_change(change("c-1", "active", "2026-02-01T00:00:00Z", "b")) is None
    assert follower.on_change(change("c-1", "new", "2026-01-01T00:00:00Z", "a")) is None
    risky = change("c-1", "at_risk", "2026-03-20T00:00:00.5Z", "d")
    action = follower.on_change(risky)
    assert action is not None and action.verb == "send"
    assert follower.on_change(dict(risky)) is None  # the same id again
    assert follower.members[("tea-1", "c-1", "lifecycle")]["segment"] == "at_risk"


def test_no_marketing_without_consent_and_leaving_removes_the_member() -> None:
    follower = Follower()
    unknown = change("c-9", "at_risk", "2026-03-20T00:00:00Z", "x", marketing_opt_in=None)
    action = follower.on_change(unknown)
    assert action is not None and action.verb == "hold"
    assert follower.on_change(change("c-9", None, "2026-04-01T00:00:00Z", "y")) is None
    assert ("tea-1", "c-9", "lifecycle") not in follower.members
    assert follower.on_change(change("c-8", "loyal", "2026-04-01T00:00:00Z", "z")) is None


def test_the_summary_counts_what_was_applied_with_cluster_names() -> None:
    follower = Follower()
    follower.bootstrap(b"tea-1|c-1|lifecycle", member("c-1", "active", "2026-02-01T00:00:00Z", "b"))
    follower.on_change(change("c-1", "active", "2026-02-01T00:00:00Z", "b"))  # already held
    follower.on_change(change("c-1", "at_risk", "2026-03-01T00:00:00Z", "d"))
    follower.on_change(change("c-1", "at_risk", "2026-03-01T00:00:00Z", "d"))  # repeated id
    follower.on_change(
        change("c-2", "at_risk", "2026-03-02T00:00:00Z", "e", marketing_opt_in=False)
    )
    cluster = {"model": "cluster", "previous": None, "current_name": "frequent · big baskets"}
    follower.on_change(change("c-2", "c3", "2026-03-02T00:00:00Z", "f", **cluster))
    follower.on_change(change("c-3", None, "2026-03-03T00:00:00Z", "g"))
    assert follower.summary() == [
        "applied 4 changes, skipped 2 repeats; 1 send, 1 hold",
        "  cluster: → c3 (frequent · big baskets) 1",
        "  lifecycle: → at_risk 2, → left 1",
        "members now: cluster 1, lifecycle 2",
    ]
