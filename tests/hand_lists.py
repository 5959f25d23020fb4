"""Find passages that list a registry's names by hand (the event types, the segment models),
for the tests that check a registry is the one place its names are listed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARE = 2 / 3
"""A passage naming this share of the names lists them by hand."""
PRODUCT = [
    "service/segstream/**/*.py",
    "schemas/**/*.json",
    "schemas/*.md",
    "docs/**/*.md",
    "deploy/**/*.md",
    "deploy/**/*.yaml",
    "deploy/**/*.sh",
    "deploy/openapi.json",
    "harness/**/*.py",
    "bench/**/*.py",
    "README.md",
    "Makefile",
]
"""What ships or documents the product (the tests, which pick names for their cases, aside)."""


def hand_lists(text: str, names: list[str], share: float = SHARE, lines: int = 12) -> list[int]:
    """First lines of the ``lines``-line passages of ``text`` naming ``share`` of ``names``."""
    pattern = re.compile(rf"(?<![\w-])({'|'.join(map(re.escape, names))})(?![\w-])")
    named = [set(pattern.findall(row)) for row in text.splitlines()]
    return [
        start + 1
        for start in range(len(named))
        if len(set().union(*named[start : start + lines])) >= share * len(names)
    ]


def product_files() -> list[Path]:
    """Every file of :data:`PRODUCT` but the schema examples."""
    found = {path for pattern in PRODUCT for path in ROOT.glob(pattern) if path.is_file()}
    return sorted(path for path in found if "examples" not in path.parts)


def listing(forms: list[list[str]], share: float = SHARE) -> dict[str, list[int]]:
    """Per product file (relative path) that lists one of ``forms`` by hand, where."""
    found = {}
    for path in product_files():
        text = path.read_text(encoding="utf-8")
        lines = sorted({line for names in forms for line in hand_lists(text, names, share)})
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    return found
