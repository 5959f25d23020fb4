"""Every value the first release stored is read by today's code as that release read it:
customer states, shop records (definitions, lifetime model, experiments, funnel), model
checkpoints (pickles: a class renamed or moved breaks them) and metric buckets. The bytes
and the release's own reading of them are in ``tests/fixtures/upgrade/v0.1.0.json``,
written once by :mod:`tests.fixtures.upgrade.generate` run with that release's code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from segstream.state.codec import decode
from segstream.state.model_store import loads
from segstream.stream.tables import CODECS
from tests.fixtures.upgrade.generate import path_of, views

RELEASES = ("v0.1.0",)


def _fixture(release: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(path_of(release).read_text(encoding="utf-8"))
    return found


def _stored(fixture: dict[str, Any]) -> dict[str, dict[str, bytes]]:
    return {
        name: {key: bytes.fromhex(raw) for key, raw in values.items()}
        for name, values in fixture["tables"].items()
    }


@pytest.mark.parametrize("release", RELEASES)
def test_the_fixture_holds_every_table_and_kind_of_record(release: str) -> None:
    fixture = _fixture(release)
    assert set(fixture["tables"]) == set(CODECS)
    shops = fixture["views"]["coffee-roaster-1"]
    assert shops["definitions"]["definitions"] and shops["experiments"]["figures"]
    assert shops["funnel"] and shops["lifetime"] and shops["cohorts"]
    assert {"churn_risk", "cluster"} <= set(fixture["views"]["models"]["coffee-roaster-1"])


@pytest.mark.parametrize("release", RELEASES)
def test_every_pickled_model_loads_with_todays_classes(release: str) -> None:
    for owner, raw in _stored(_fixture(release))["models"].items():
        for name, blob in _models(raw).items():
            try:
                loads(blob)
            except (AttributeError, ImportError) as error:
                pytest.fail(
                    f"{release}'s checkpoint {owner}/{name} names a class today's code lacks "
                    f"({error}): map its old place in model_store.MOVED, or keep the class"
                )


def _models(raw: bytes) -> dict[str, bytes]:
    """A checkpoint record's pickles by model name (format 2, or format 1's bare map)."""
    record = decode(raw)
    models: dict[str, bytes] = record["models"] if record.get("format") == 2 else record
    return models


@pytest.mark.parametrize("release", RELEASES)
def test_todays_code_reads_what_the_release_read(release: str) -> None:
    fixture = _fixture(release)
    today = json.loads(json.dumps(views(_stored(fixture))))
    then = fixture["views"]
    for part in sorted(set(then) | set(today)):
        assert today.get(part) == then.get(part), part
