"""The body of a segment definition as clients write it, made a whole definition document.

``POST /definitions``, ``PUT /definitions/{segment_id}`` and ``POST /definitions/preview``
take the same bodies (``SegmentDefinitionInput`` or ``TemplateUse`` in
``deploy/openapi.json``): a template is expanded, ``shop_id`` defaults to the path's and
``schema_version`` to 1. What the server assigns (the version) is the caller's business.
"""

from __future__ import annotations

from typing import Any

from segstream.api.edge import BadRequestError, json_body, shown
from segstream.segments.defined.templates import expand


def definition_payload(body: bytes, shop_id: str) -> dict[str, Any]:
    """The definition document ``body`` states for the path's shop (not validated yet:
    :func:`~segstream.segments.defined.validate_definition` does that), or
    :class:`BadRequestError` for a body that is not a JSON object or names another shop."""
    parsed = json_body(body, "a segment definition")
    if not isinstance(parsed, dict):
        raise BadRequestError("the body must be a JSON object (a segment definition)")
    payload: dict[str, Any] = parsed
    if "template" in payload:
        payload = _from_template(payload, shop_id)
    if payload.setdefault("shop_id", shop_id) != shop_id:
        raise BadRequestError(
            f"the definition is for shop {shown(payload['shop_id'])}, not {shop_id!r}"
            " (its shop_id must be the path's)"
        )
    payload.setdefault("schema_version", 1)
    return payload


def _from_template(payload: dict[str, Any], shop_id: str) -> dict[str, Any]:
    """A definition from ``{"template", "parameters"?, "segment_id"?, "name"?,
    "description"?, "version"?}`` (the template's own id, name and description by
    default)."""
    template, parameters = payload.pop("template"), payload.pop("parameters", {})
    if not isinstance(template, str) or not isinstance(parameters, dict):
        raise BadRequestError("'template' is a template id and 'parameters' an object")
    if "rule" in payload:
        raise BadRequestError("a definition has a template or a rule, not both")
    segment_id = payload.get("segment_id")
    expanded = expand(
        template, parameters, shop_id, segment_id if isinstance(segment_id, str) else None
    )
    return {**expanded, **payload}
