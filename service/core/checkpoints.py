"""Checkpoints of learned models in a changelog-backed table.

Learned models (``derived_from_customers = False``) cannot be rebuilt from the
customers table, so their pickled state is written to the ``models`` table every
``model_checkpoint_every`` events of a shop and at every full re-evaluation.
A restarted or rebalanced worker resumes from the last checkpoint: at most that
many events of learning are replayed-away, never the whole model.

>>> store: dict[str, dict[str, str]] = {}
>>> checkpoints = Checkpoints(store)
>>> checkpoints.save("tea-1", {"counter": [1, 2, 3]})
>>> checkpoints.load("tea-1")
{'counter': [1, 2, 3]}
>>> checkpoints.load("unknown")
{}
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Mapping, MutableMapping
from typing import Any


class Checkpoints:
    """Pickled objects by name, per owner key (a shop id, or a partition's prior)."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    def save(self, owner: str, objects: Mapping[str, Any]) -> None:
        """Replace the owner's checkpoint with ``objects``."""
        self.table[owner] = {
            name: base64.b64encode(pickle.dumps(obj, protocol=5)).decode("ascii")
            for name, obj in objects.items()
        }

    def load(self, owner: str) -> dict[str, Any]:
        """The owner's objects by name (empty when never checkpointed)."""
        stored = self.table.get(owner) or {}
        return {name: pickle.loads(base64.b64decode(blob)) for name, blob in stored.items()}
