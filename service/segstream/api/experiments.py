"""Managing a shop's experiments over HTTP: start, change (e.g. end), delete, list, read.

Experiments live on the segment-definitions topic like segment definitions (key
``<shop>|experiment:<id>``); these handlers read them, with their per-arm figures and
read-out, from the owning worker's tables and write to the topic, answering once the
worker applied the write (or 202 after :data:`~segstream.api.definitions.APPLY_WAIT_S`).
"""

from __future__ import annotations

import json
from typing import Any

from segstream.api import definitions
from segstream.api.definitions import ConflictError, Send, applied, pending
from segstream.api.edge import BadRequestError, NotFoundError, json_body, shown
from segstream.engine.view import ReadView
from segstream.experiments import (
    Experiment,
    changed_fixed,
    check_target,
    validate_experiment,
)
from segstream.experiments.live import MAX_EXPERIMENTS, ShopExperiments
from segstream.state.keyspace import experiment_name


def live(reader: ReadView, shop_id: str) -> ShopExperiments:
    """The shop's experiments as the tables hold them (read only)."""
    return reader.experiments(shop_id)


def listing(reader: ReadView, shop_id: str) -> dict[str, Any]:
    """Every experiment of the shop with its read-out."""
    experiments = live(reader, shop_id)
    return {
        "shop_id": shop_id,
        "experiments": [experiments.readout(e) for e in sorted(experiments.experiments)],
    }


def one(reader: ReadView, shop_id: str, experiment_id: str) -> dict[str, Any]:
    """One experiment's read-out, or NotFoundError."""
    experiments = live(reader, shop_id)
    if experiment_id not in experiments.experiments:
        raise NotFoundError(f"shop {shop_id!r} runs no experiment {experiment_id!r}")
    return experiments.readout(experiment_id)


async def create(
    reader: ReadView, send: Send, shop_id: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """Start a new experiment (409 if the shop runs it already, or runs as many as it may;
    422 naming the model or segment when its segment cannot have members)."""
    payload = _payload(body, shop_id)
    experiment_id = str(payload.get("experiment_id", ""))
    experiments = live(reader, shop_id)
    if experiment_id in experiments.experiments:
        raise ConflictError(f"shop {shop_id!r} runs {experiment_id!r} already: change it with PUT")
    if len(experiments.experiments) >= MAX_EXPERIMENTS:
        raise ConflictError(
            f"shop {shop_id!r} runs {MAX_EXPERIMENTS} experiments, the most it may: "
            "delete one first"
        )
    last = experiments.last_version(experiment_id)
    payload["version"] = last + 1
    check_target(validate_experiment(payload), definitions.live(reader, shop_id).rules)
    return await _write(reader, send, payload, last, 201)


async def replace(
    reader: ReadView, send: Send, shop_id: str, experiment_id: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """Change an experiment (an end date, a name) under its next version (404 if not
    running); members keep their arms, since the hash does not involve the version."""
    payload = _payload(body, shop_id)
    if payload.setdefault("experiment_id", experiment_id) != experiment_id:
        raise BadRequestError(
            f"the body names {shown(payload['experiment_id'])}, the path {experiment_id!r}"
        )
    experiments = live(reader, shop_id)
    if experiment_id not in experiments.experiments:
        raise NotFoundError(
            f"shop {shop_id!r} runs no experiment {experiment_id!r}: start it with POST"
        )
    payload["version"] = experiments.last_version(experiment_id) + 1
    refused = changed_fixed(experiments.experiments[experiment_id], validate_experiment(payload))
    if refused is not None:  # a valid body that conflicts with the running experiment
        raise ConflictError(str(refused))
    return await _write(reader, send, payload, experiments.last_version(experiment_id), 200)


async def _write(
    reader: ReadView, send: Send, payload: dict[str, Any], last: int, status: int
) -> tuple[int, dict[str, Any]]:
    """Send the next version; ``status`` once applied, 202 when not applied in time."""
    payload["version"] = last + 1
    experiment = validate_experiment(payload)
    name = experiment_name(experiment.experiment_id)
    await send(experiment.shop_id, name, json.dumps(experiment.to_json()).encode())
    done = await applied(lambda: _outcome(reader, experiment))
    if done is False:
        raise ConflictError(
            f"{experiment.experiment_id!r} was changed at the same time by another request; "
            "read it and retry"
        )
    answer = {"experiment": experiment.to_json()}
    if done is None:
        return 202, pending(answer)
    return status, {**answer, "status": "live"}


def _outcome(reader: ReadView, experiment: Experiment) -> bool | None:
    experiments = live(reader, experiment.shop_id)
    if experiments.last_version(experiment.experiment_id) < experiment.version:
        return None
    return experiments.experiments.get(experiment.experiment_id) == experiment


async def delete(
    reader: ReadView, send: Send, shop_id: str, experiment_id: str
) -> tuple[int, dict[str, Any]]:
    """Delete an experiment and its figures (members keep no arm in later changes)."""
    if experiment_id not in live(reader, shop_id).experiments:
        raise NotFoundError(f"shop {shop_id!r} runs no experiment {experiment_id!r}")
    await send(shop_id, experiment_name(experiment_id), None)
    answer = {"shop_id": shop_id, "experiment_id": experiment_id}

    def gone() -> bool | None:
        return True if experiment_id not in live(reader, shop_id).experiments else None

    done = await applied(gone)
    return (200, {**answer, "status": "deleted"}) if done else (202, pending(answer))


def _payload(body: bytes, shop_id: str) -> dict[str, Any]:
    parsed = json_body(body, "an experiment")
    if not isinstance(parsed, dict):
        raise BadRequestError("the body must be a JSON object (an experiment)")
    payload: dict[str, Any] = parsed
    if payload.setdefault("shop_id", shop_id) != shop_id:
        raise BadRequestError(
            f"the experiment is for shop {shown(payload['shop_id'])}, not {shop_id!r}"
            " (its shop_id must be the path's)"
        )
    if "version" in payload:
        raise BadRequestError("leave version out: the server assigns the next one")
    payload.setdefault("schema_version", 1)
    return payload
