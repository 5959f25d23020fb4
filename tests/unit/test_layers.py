"""The package's layers, enforced: nothing imports upward (issue 27).

domain (events, contracts, customer state, snapshots, changes) -> state (keyspace, codec,
model checkpoints) -> models (segments, learning, metrics, experiments) -> engine (folds
one event and runs the models) -> stream and API -> command-line tools. ``settings`` and
``observability`` sit under all of them. Every import counts, also one inside a function
or under ``TYPE_CHECKING``: a lazy import upward is still a dependency upward.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.package_modules import ROOT, Module, module_name, modules

LAYERS: tuple[tuple[str, ...], ...] = (
    ("segstream", "segstream.settings", "segstream.observability", "segstream.schemas"),
    ("segstream.domain",),
    ("segstream.state",),
    ("segstream.segments", "segstream.learning", "segstream.metrics", "segstream.experiments"),
    ("segstream.engine",),
    ("segstream.stream", "segstream.api", "segstream.webhooks"),
    ("segstream.tools", "segstream.cli", "segstream.__main__", "segstream.settings_doc"),
)
"""Lowest first; a module belongs to the layer of its longest matching prefix."""


def layer_of(module: str) -> int:
    """The layer of ``module`` (a dotted name inside segstream)."""
    found = [
        (len(prefix), number)
        for number, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not found:
        raise LookupError(f"{module} is in no layer: add it to LAYERS")
    return max(found)[1]


def imports(module: Module) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in ``module``, relative ones resolved."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.package.split(".")
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # ``from segstream import settings`` imports a module
                yield node.lineno, base if base != "segstream" else f"{base}.{alias.name}"


def upward_imports(root: Path = ROOT) -> list[str]:
    """Every import of a higher layer in the package at ``root``, as
    ``file:line: module -> module``."""
    found = []
    for module in modules(root):
        for line, target in imports(module):
            if target.split(".")[0] == "segstream" and layer_of(target) > layer_of(module.name):
                where = module.path.relative_to(root.parent)
                found.append(f"{where}:{line}: {module.name} -> {target}")
    return found


def test_nothing_imports_upward() -> None:
    assert upward_imports() == []


def test_every_module_has_a_layer() -> None:
    for path in ROOT.rglob("*.py"):
        layer_of(module_name(path))


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("segstream.settings", 0),
        ("segstream.domain.events", 1),
        ("segstream.state.codec", 2),
        ("segstream.segments.defined.rules", 3),
        ("segstream.engine.pipeline", 4),
        ("segstream.api.routes", 5),
        ("segstream.tools.replay", 6),
    ],
)
def test_layers_are_read_by_prefix(module: str, layer: int) -> None:
    assert layer_of(module) == layer


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    # the check itself can fail: a domain module importing the engine, absolutely or
    # relatively, lazily inside a function, is reported; a downward one is not
    root = tmp_path / "segstream"
    (root / "domain").mkdir(parents=True)
    (root / "engine").mkdir()
    (root / "__init__.py").write_text("")
    (root / "engine" / "run.py").write_text("from segstream.domain import events\n")
    (root / "domain" / "events.py").write_text(
        "from segstream.engine.run import go\ndef late() -> None:\n    from ..engine import run\n"
    )
    assert upward_imports(root) == [
        "segstream/domain/events.py:1: segstream.domain.events -> segstream.engine.run",
        "segstream/domain/events.py:3: segstream.domain.events -> segstream.engine",
    ]
