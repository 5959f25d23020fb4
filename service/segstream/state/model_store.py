"""Checkpoints of a shop's segment models in a changelog-backed table.

Every model of a shop is written with every batch that changed it (one record per shop,
all its models), so a restarted or rebalanced worker resumes exactly where the last
committed batch left it. Records stay small whatever the shop's size: models keep
per-customer data in the customers' own states.

A record says what wrote it: ``{"format": 2, "versions": {...}, "models": {name: pickle}}``,
the versions being Python's and those of the libraries a pickled model's classes come
from (:data:`LIBRARIES`). Format 1 (before versions) is the bare ``{name: pickle}`` and
still loads. A model that cannot be read back (a library upgrade changed a class it
pickled) is left out with a warning naming both versions: the pipeline creates it afresh
and it learns again from the stream, while everything in the customers' states (facts,
segments, what models keep per customer) stays. Pin the libraries across a rolling
upgrade to keep learned models (``deploy/README.md``, "Upgrades").

>>> store: dict[str, bytes] = {}
>>> checkpoints = Checkpoints(store)
>>> checkpoints.save("tea-1", {"counter": [1, 2, 3]})
>>> checkpoints.load("tea-1")
{'counter': [1, 2, 3]}
>>> checkpoints.load("unknown")
{}
"""

from __future__ import annotations

import io
import pickle
import platform
from collections.abc import Mapping, MutableMapping
from importlib import metadata
from typing import Any

from segstream.observability.logs import get_logger
from segstream.state.codec import decode, encode

FORMAT = 2
LIBRARIES = ("river", "numpy", "scipy")
"""The libraries whose classes a pickled model may hold."""


def running_versions() -> dict[str, str]:
    """Python's version and the :data:`LIBRARIES`' installed versions."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


class Checkpoints:
    """Pickled objects by name, per owner key (a shop id, or a partition's prior), with the
    versions that wrote them."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self.versions = running_versions()

    def save(self, owner: str, objects: Mapping[str, Any]) -> None:
        """Replace the owner's checkpoint with ``objects``."""
        models = {name: pickle.dumps(obj, protocol=5) for name, obj in objects.items()}
        self.table[owner] = encode({"format": FORMAT, "versions": self.versions, "models": models})

    def load(self, owner: str) -> dict[str, Any]:
        """The owner's objects by name that can be read back (empty when never
        checkpointed); an unreadable one is left out with a warning."""
        stored = self.table.get(owner)
        if stored is None:
            return {}
        versions, blobs = _unpack(decode(stored))
        loaded = {}
        for name, blob in blobs.items():
            try:
                loaded[name] = loads(blob)
            except Exception as error:  # a class or module a library upgrade changed
                get_logger(__name__).warning(
                    "checkpoint_unreadable",
                    owner=owner,
                    model=name,
                    error=f"{type(error).__name__}: {error}"[:300],
                    written_by=versions,
                    running=self.versions,
                )
        return loaded

    def sizes(self, owner: str) -> dict[str, int]:
        """Bytes of each of the owner's checkpointed objects."""
        stored = self.table.get(owner)
        return {} if stored is None else {n: len(b) for n, b in _unpack(decode(stored))[1].items()}


MOVED = {
    "segstream.core.events": "segstream.domain.events",
    "segstream.core.contracts": "segstream.domain.contracts",
    "segstream.core.customer": "segstream.domain.customer",
    "segstream.core.features": "segstream.domain.features",
    "segstream.core.changes": "segstream.domain.changes",
    "segstream.core.keys": "segstream.state.keyspace",
    "segstream.core.codec": "segstream.state.codec",
    "segstream.core.checkpoints": "segstream.state.model_store",
    "segstream.core.pipeline": "segstream.engine.pipeline",
    "segstream.engine.pipeline.ShopBook": "segstream.engine.books",
    "segstream.engine.pipeline.Schedule": "segstream.engine.books",
}
"""Modules of the former ``core`` package and where they live now (issue 27's layers),
and classes (``module.Class``) that left their module for another."""


class _Unpickler(pickle.Unpickler):
    """Finds the classes of pickles written before a module moved: the package ``service``
    is now ``segstream`` (releases before 0.1.0's wheel), and ``segstream.core``'s modules
    are in the domain, state and engine layers (:data:`MOVED`)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "service" or module.startswith("service."):
            module = "segstream" + module.removeprefix("service")
        module = MOVED.get(module, module)
        return super().find_class(MOVED.get(f"{module}.{name}", module), name)


def loads(blob: bytes) -> Any:
    """A checkpointed object, also one pickled under the package's former name."""
    return _Unpickler(io.BytesIO(blob)).load()


def _unpack(record: dict[str, Any]) -> tuple[dict[str, str] | None, dict[str, bytes]]:
    """(versions, pickles by name) of a record of either format (format 1: no versions)."""
    if record.get("format") == FORMAT:
        return record["versions"], record["models"]
    return None, record
