"""Shared check for the schema files: every property says what it means."""

from __future__ import annotations

from typing import Any


def undocumented(node: Any, where: str) -> list[str]:
    """JSON-pointer-ish places of properties that lack a description."""
    missing: list[str] = []
    if isinstance(node, dict):
        for prop, sub in node.get("properties", {}).items():
            if not (isinstance(sub, dict) and sub.get("description")):
                missing.append(f"{where}/properties/{prop}")
        for key, value in node.items():
            if key not in ("enum", "const", "examples", "if", "then", "else", "not"):
                missing += undocumented(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            missing += undocumented(item, f"{where}/{i}")
    return missing
