"""The console's files: what the package ships, what the page loads, and what the worker
serves (the page and a fixed list of files, a documented JSON 404 for any other name).

The browser test (``tests/integration/test_console.py``) shows the page drawing a real
worker's data; these check, without a browser, that the page can only load the worker's own
files: no URL of another host anywhere in them, the vendored Chart.js is the version noted
with its licence, and every file the page names is served.
"""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from typing import Any

import pytest
from referencing import Registry

from segstream.api import console
from tests.unit.api.test_openapi import (
    Worker,
    coffee_roaster,
    load_spec,
    schema_errors,
    spec_registry,
)

FILES = resources.files("segstream.api") / "console_assets"
ASSET = "/console/{asset}"
REMOTE = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
"""A URL of another host (the vendored library's comments may name its home page)."""


@pytest.fixture(scope="module")
def worker() -> Any:
    with asyncio.Runner() as runner:
        pipeline, _ = coffee_roaster()
        yield Worker.serving(pipeline, runner)


def test_the_page_loads_exactly_the_served_files() -> None:
    page = FILES.joinpath(console.PAGE).read_text()
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(loaded) == sorted(["data:,", *(f"console/{name}" for name in console.ASSETS)])
    assert "<script>" not in page and " style=" not in page, "the policy allows no inline code"


@pytest.mark.parametrize("name", [console.PAGE, "console.js", "console.css"])
def test_our_files_name_no_other_host(name: str) -> None:
    assert not REMOTE.findall(FILES.joinpath(name).read_text()), name


def test_the_vendored_chart_library_is_the_noted_version_with_its_licence() -> None:
    library = FILES.joinpath("chart.umd.min.js").read_text()
    (version,) = re.findall(r"^ \* Chart\.js v(\d+\.\d+\.\d+)$", library[:200], re.MULTILINE)
    assert f"**Chart.js {version}**" in FILES.joinpath("VENDORED.md").read_text()
    assert "sourceMappingURL" not in library, "the map is not shipped: a browser would ask"
    assert FILES.joinpath("chart.js-LICENSE.md").read_text().startswith("The MIT License")


def test_the_page_and_each_file_are_served_with_the_policy(worker: Worker) -> None:
    page = worker.get("/console", None, token=None)
    assert (page.status, page.content_type) == (200, "text/html; charset=utf-8")
    assert page.body == FILES.joinpath(console.PAGE).read_text()
    for name, kind in console.ASSETS.items():
        served = worker.get(ASSET, None, token=None, asset=name)
        assert (served.status, served.content_type) == (200, kind), name
        assert served.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert page.headers == {"Content-Type": page.content_type, **console.SECURITY_HEADERS}


@pytest.mark.parametrize(
    "name", ["VENDORED.md", "chart.js-LICENSE.md", "index.html", "..", "../console.py", ""]
)
def test_any_other_name_is_the_documented_404(worker: Worker, name: str) -> None:
    spec = load_spec()
    registry: Registry = spec_registry(spec)
    refused = worker.get(ASSET, None, token=None, asset=name)
    assert refused.status == 404 and refused.body["error"] == "not_found"
    assert not schema_errors(spec, registry, ASSET, 404, refused.body)


def test_the_document_lists_the_served_files() -> None:
    (parameter,) = load_spec()["paths"][ASSET]["get"]["parameters"]
    assert parameter["schema"]["enum"] == sorted(console.ASSETS)
