"""The README documents every setting and every API route the code has."""

from __future__ import annotations

from pathlib import Path

from pydantic_core import to_jsonable_python

from segstream.api.routes import DEFINITIONS, SHOP_POSTS, SHOP_VIEWS
from segstream.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    for name, field in Settings.model_fields.items():
        variable = f"`SEGSTREAM_{name.upper()}`"
        assert variable in README, variable
        row = next(line for line in README.splitlines() if line.startswith(f"| {variable}"))
        default = "unset" if field.default is None else str(to_jsonable_python(field.default))
        assert f"`{default}`" in row, row


def test_every_shop_route_is_documented() -> None:
    routes = [("GET", path) for path in SHOP_VIEWS] + [("POST", path) for path in SHOP_POSTS]
    routes += [
        (method.upper(), path) for path, methods in DEFINITIONS.items() for method in methods
    ]
    for method, path in routes:
        documented = path.replace("{shop_id}", "{shop}").replace("{customer_id}", "{customer}")
        assert f"| `{method} {documented.split('?')[0]}" in README, path
