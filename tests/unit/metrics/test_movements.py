"""MRR movements of one customer and what one event changed, computed by hand."""

from __future__ import annotations

from segstream.domain.customer import CustomerState, apply
from segstream.domain.events import Event
from segstream.metrics.movements import EventEffect, Movement, classify
from tests.unit.metrics.builders import (
    at,
    cancel,
    change_plan,
    copy_state,
    order,
    plan,
    signup,
)


def fold(*events: Event) -> CustomerState:
    state = CustomerState("tea-1", "c-1")
    for event in events:
        apply(state, event)
    return state


def effect_of(event: Event, *earlier: Event) -> EventEffect:
    before = fold(*earlier)
    after = copy_state(before)
    apply(after, event)
    return classify(event, before, after)


Row = tuple[str, str, float]


def rows(found: tuple[Movement, ...]) -> list[Row]:
    return [(m.kind, m.at.date().isoformat(), m.mrr) for m in found]


def summary(effect: EventEffect) -> tuple[list[Row], list[Row]]:
    return rows(effect.added), rows(effect.removed)


def test_first_signup_is_new_business_at_the_plans_monthly_price() -> None:
    effect = effect_of(signup("c-1", at("2025-03-05"), price=60.0, interval="quarter"))
    assert effect.kind == "new"
    assert summary(effect) == ([("new", "2025-03-05", 20.0)], [])
    assert effect.added[0].subscribers == 1


def test_cancellation_churns_at_its_effective_day_in_a_later_month() -> None:
    effect = effect_of(
        cancel("c-1", at("2025-03-20"), effective=at("2025-04-05")),
        signup("c-1", at("2025-03-05")),
    )
    assert effect.kind == "churn"
    assert summary(effect) == ([("churn", "2025-04-05", 30.0)], [])
    churn = effect.added[0]
    assert churn.subscribers == -1 and churn.spell_start == at("2025-03-05")


def test_cancellation_without_effective_at_churns_at_once() -> None:
    effect = effect_of(cancel("c-1", at("2025-03-20")), signup("c-1", at("2025-03-05")))
    assert summary(effect) == ([("churn", "2025-03-20", 30.0)], [])


def test_effective_before_the_request_churns_when_requested() -> None:
    effect = effect_of(
        cancel("c-1", at("2025-03-20"), effective=at("2025-03-15")),
        signup("c-1", at("2025-03-05")),
    )
    assert summary(effect) == ([("churn", "2025-03-20", 30.0)], [])


def test_signup_after_the_subscription_ended_is_a_reactivation() -> None:
    effect = effect_of(
        signup("c-1", at("2025-05-01"), price=40.0),
        signup("c-1", at("2025-03-05")),
        cancel("c-1", at("2025-03-20")),
    )
    assert effect.kind == "reactivation"
    assert summary(effect) == ([("reactivation", "2025-05-01", 40.0)], [])


def test_signup_while_cancelling_undoes_the_pending_churn_and_changes_the_plan() -> None:
    effect = effect_of(
        signup("c-1", at("2025-03-25"), price=50.0),
        signup("c-1", at("2025-03-05"), price=30.0),
        cancel("c-1", at("2025-03-20"), effective=at("2025-04-05")),
    )
    assert effect.kind == "correction"
    assert summary(effect) == (
        [("expansion", "2025-03-25", 20.0)],
        [("churn", "2025-04-05", 30.0)],
    )


def test_upgrade_and_downgrade_orders_are_expansion_and_contraction() -> None:
    start = signup("c-1", at("2025-03-05"), price=30.0)
    upgrade = order("c-1", at("2025-03-10"), new_plan=plan(50.0, tier="premium"))
    assert summary(effect_of(upgrade, start)) == ([("expansion", "2025-03-10", 20.0)], [])
    downgrade = order("c-1", at("2025-03-20"), new_plan=plan(10.0))
    assert effect_of(downgrade, start, upgrade).added[0].kind == "contraction"
    assert effect_of(downgrade, start, upgrade).added[0].mrr == 40.0


def test_downgrade_to_a_free_plan_is_churn_not_contraction() -> None:
    start = signup("c-1", at("2025-03-05"), price=30.0)
    effect = effect_of(order("c-1", at("2025-03-10"), new_plan=plan(0.0)), start)
    assert summary(effect) == ([("churn", "2025-03-10", 30.0)], [])


def test_orders_without_a_plan_and_free_plans_move_nothing() -> None:
    start = signup("c-1", at("2025-03-05"))
    assert effect_of(order("c-1", at("2025-03-06")), start).kind == "none"
    assert effect_of(signup("c-1", at("2025-03-05"), price=0.0)).kind == "none"


def test_late_signup_books_both_the_new_business_and_the_churn_already_known() -> None:
    # The cancellation arrived first (nothing to churn then); the signup brings both.
    effect = effect_of(
        signup("c-1", at("2025-03-05")),
        cancel("c-1", at("2025-03-20"), effective=at("2025-04-05")),
    )
    assert summary(effect) == (
        [("new", "2025-03-05", 30.0), ("churn", "2025-04-05", 30.0)],
        [],
    )


def test_late_earlier_signup_moves_the_new_business_to_its_own_time() -> None:
    effect = effect_of(signup("c-1", at("2025-03-02")), signup("c-1", at("2025-03-05")))
    assert summary(effect) == ([("new", "2025-03-02", 30.0)], [("new", "2025-03-05", 30.0)])


def test_late_upgrade_revalues_the_pending_churn() -> None:
    effect = effect_of(
        order("c-1", at("2025-03-10"), new_plan=plan(50.0, tier="premium")),
        signup("c-1", at("2025-03-05"), price=30.0),
        cancel("c-1", at("2025-03-20"), effective=at("2025-04-05")),
    )
    assert summary(effect) == (
        [("expansion", "2025-03-10", 20.0), ("churn", "2025-04-05", 50.0)],
        [("churn", "2025-04-05", 30.0)],
    )


def test_pause_at_price_zero_churns_and_resume_reactivates_not_new() -> None:
    # A customer is new once: a resume is not a second first payment (it would count
    # them twice among their cohort's customers).
    start = signup("c-1", at("2025-03-05"), price=30.0)
    pause = change_plan("c-1", at("2025-03-12"), 0.0, "pause")
    resume = change_plan("c-1", at("2025-04-02"), 30.0, "resume")
    assert summary(effect_of(pause, start)) == ([("churn", "2025-03-12", 30.0)], [])
    effect = effect_of(resume, start, pause)
    assert summary(effect) == ([("reactivation", "2025-04-02", 30.0)], [])


def test_a_churn_after_a_resume_belongs_to_the_spell_the_resume_began() -> None:
    effect = effect_of(
        cancel("c-1", at("2025-04-20")),
        signup("c-1", at("2025-03-05")),
        change_plan("c-1", at("2025-03-12"), 0.0, "pause"),
        change_plan("c-1", at("2025-04-02"), 30.0, "resume"),
    )
    (churn,) = effect.added
    assert (churn.kind, churn.spell_start) == ("churn", at("2025-04-02"))


def test_first_payment_after_a_free_plan_is_new_and_begins_the_spell() -> None:
    effect = effect_of(
        order("c-1", at("2025-03-20"), new_plan=plan(30.0)),
        signup("c-1", at("2025-03-05"), price=0.0),
        cancel("c-1", at("2025-03-08")),
        signup("c-1", at("2025-03-10"), price=0.0),
    )
    (new,) = effect.added
    assert (new.kind, new.spell_start) == ("new", at("2025-03-20"))
