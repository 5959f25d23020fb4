"""Checkpoints of a shop's segment models in a changelog-backed table.

Every model of a shop is written with every batch that changed it (one record per shop,
all its models), so a restarted or rebalanced worker resumes exactly where the last
committed batch left it. Records stay small whatever the shop's size: models keep
per-customer data in the customers' own states.

>>> store: dict[str, bytes] = {}
>>> checkpoints = Checkpoints(store)
>>> checkpoints.save("tea-1", {"counter": [1, 2, 3]})
>>> checkpoints.load("tea-1")
{'counter': [1, 2, 3]}
>>> checkpoints.load("unknown")
{}
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, MutableMapping
from typing import Any

from service.core.codec import decode, encode


class Checkpoints:
    """Pickled objects by name, per owner key (a shop id, or a partition's prior)."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    def save(self, owner: str, objects: Mapping[str, Any]) -> None:
        """Replace the owner's checkpoint with ``objects``."""
        self.table[owner] = encode(
            {name: pickle.dumps(obj, protocol=5) for name, obj in objects.items()}
        )

    def load(self, owner: str) -> dict[str, Any]:
        """The owner's objects by name (empty when never checkpointed)."""
        stored = self.table.get(owner)
        if stored is None:
            return {}
        return {name: pickle.loads(blob) for name, blob in decode(stored).items()}

    def sizes(self, owner: str) -> dict[str, int]:
        """Bytes of each of the owner's checkpointed objects."""
        stored = self.table.get(owner)
        return {} if stored is None else {n: len(b) for n, b in decode(stored).items()}
