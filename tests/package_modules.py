"""The package's modules as syntax trees, for the tests that check its shape (layers,
class sizes): one walk, one naming of modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import segstream

ROOT = Path(segstream.__file__).parent
"""The installed package's folder (``service/segstream`` in a checkout)."""


def module_name(path: Path, root: Path = ROOT) -> str:
    """``segstream.a.b`` of a file under the package ``root`` (``__init__`` names the package)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@dataclass(frozen=True)
class Module:
    """One source file of the package: where it is, its dotted name, its syntax tree."""

    path: Path
    name: str
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package relative imports start from (the module itself for ``__init__``)."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


def modules(root: Path = ROOT) -> Iterator[Module]:
    """Every ``.py`` file under ``root``, parsed, in path order."""
    for path in sorted(root.rglob("*.py")):
        yield Module(path, module_name(path, root), ast.parse(path.read_text(), str(path)))
