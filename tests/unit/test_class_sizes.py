"""No class in the package over MAX_LINES (issue 27): a class that big does several jobs.

The classes that were already bigger when the rule came are listed in OVERSIZED with the
size they had: they may only shrink (and leave the list once they fit), never grow.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.package_modules import ROOT, modules

MAX_LINES = 300
OVERSIZED: dict[str, int] = {}
"""Classes over MAX_LINES before the rule, and their size then (to be cut; not to grow):
none left since issue 27 cut the last four."""


def class_sizes(root: Path) -> dict[str, int]:
    """Lines of every class under ``root`` (decorators and docstrings included), by
    dotted name."""
    sizes = {}
    for module in modules(root):
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ClassDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                sizes[f"{module.name}.{node.name}"] = (node.end_lineno or node.lineno) - first + 1
    return sizes


def too_big(sizes: dict[str, int], limit: int, known: dict[str, int]) -> list[str]:
    """What breaks the rule: a class over ``limit`` lines that is not ``known``, a known
    one grown past its size, a known one that fits now (take it off the list)."""
    problems = [
        f"{name}: {size} lines (at most {known.get(name, limit)})"
        for name, size in sorted(sizes.items())
        if size > known.get(name, limit)
    ]
    problems += [
        f"{name} is {sizes.get(name, 0)} lines now: take it off OVERSIZED"
        for name in sorted(known)
        if sizes.get(name, 0) <= limit
    ]
    return problems


def test_no_class_in_the_package_is_over_the_limit() -> None:
    assert too_big(class_sizes(ROOT), MAX_LINES, OVERSIZED) == []


def test_a_class_over_the_limit_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    body = "".join(f"    a{n} = {n}\n" for n in range(MAX_LINES))  # the class line makes 301
    (package / "big.py").write_text(f"@decorated\nclass Big:\n{body}\nclass Small:\n    pass\n")
    sizes = class_sizes(package)
    assert sizes == {"pkg.big.Big": MAX_LINES + 2, "pkg.big.Small": 2}
    assert too_big(sizes, MAX_LINES, {}) == ["pkg.big.Big: 302 lines (at most 300)"]
    assert too_big(sizes, MAX_LINES, {"pkg.big.Big": 302}) == []
    assert too_big(sizes, MAX_LINES, {"pkg.big.Big": 301}) != []
    assert too_big(sizes, MAX_LINES, {"pkg.big.Big": 302, "pkg.big.Small": 400}) == [
        "pkg.big.Small is 2 lines now: take it off OVERSIZED"
    ]
