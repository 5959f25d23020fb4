"""Passes over a shop's existing customers, a bounded number per commit, resumed from a
cursor that commits with them: the re-evaluation of a defined segment, the enrolment of
an experiment's members (in the experiments' own queue), the rehoming of a learned
model's customers (queued with the re-evaluations). The :class:`Backlog` knows which shops
have one unfinished."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from segstream.domain.contracts import DeadLetterReason
from segstream.engine.books import ShopBook
from segstream.state.keyspace import definitions_key, experiments_key, shop_of

Refusal = tuple[DeadLetterReason, str]
"""Why a control record changes nothing: its dead letter's reason and detail."""


class Backlog:
    """The shops (of the partitions the tables hold) with an unfinished pass, read from
    the tables once and then kept up to date."""

    def __init__(self, shops: MutableMapping[str, Any]) -> None:
        self.shops = shops
        self._known: set[str] | None = None
        """None: not known, read the tables."""

    def add(self, shop_id: str) -> None:
        """The shop has a pass queued."""
        if self._known is not None:
            self._known.add(shop_id)

    def settle(self, book: ShopBook) -> None:
        """The shop's passes may all be done."""
        if not (book.definitions.pending or book.experiments.pending) and self._known is not None:
            self._known.discard(book.shop_id)

    def forget(self) -> None:
        """Read the tables again when next asked (after a rebalance or an aborted batch)."""
        self._known = None

    def shop_ids(self) -> list[str]:
        """The shops with an unfinished pass, sorted."""
        if self._known is None:
            self._known = {
                shop_of(key)
                for key in list(self.shops)
                if key in (definitions_key(shop_of(key)), experiments_key(shop_of(key)))
                and self.shops[key].get("pending")
            }
        return sorted(self._known)
