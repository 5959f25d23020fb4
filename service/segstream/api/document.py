"""The parts of ``deploy/openapi.json`` that the code owns, made from the code.

The document cannot reference a file outside itself, yet what a request may hold is decided
by the contract ``schemas/v1/segment_definition.json`` and by registries in the code: the
field catalogue (:func:`~segstream.segments.defined.catalogue`), the segment models and the
names each assigns (``segment_names``), the built-in templates. Written by hand, the
document drifted from them and called requests valid that the service refuses. These
component schemas are generated instead:

- ``SegmentRule.<name>``: every ``$defs`` entry of the definition contract, verbatim but
  for its references, and ``SegmentRule.catalogue``: the fields a condition may name, by
  type, with the values each type takes (a segment field: only its model's names);
- ``TemplateUse``: one alternative per template, with its parameters;
- ``ExperimentTarget``: the models an experiment may run on and the segments of each;
- ``EventTimestamp``: the contracts' timestamp profile (``envelope.json``);
- the model registry's lists: ``ModelName``, the models of ``Segments`` and of
  ``SegmentSizes``, the known models of the unknown-model example (a model's ``summary``,
  ``segment_description`` and ``segment_names``), so adding a model is adding its module;
- the console's file names (:data:`segstream.api.console.ASSETS`), which ``/console/{asset}``
  serves and nothing else.

``python -m segstream.api.document`` rewrites them in ``deploy/openapi.json``;
``tests/unit/api/test_openapi.py`` fails while the document differs from :func:`rewritten`.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from segstream.api import export
from segstream.api.console import ASSETS
from segstream.segments import available_models
from segstream.segments.defined.fields import OPEN_PREFIX, FieldType, catalogue
from segstream.segments.defined.rules import OPS_BY_TYPE, SEGMENT_FIELDS
from segstream.segments.defined.templates import TEMPLATES

PACKAGE = Path(__file__).resolve().parents[1]
SPEC_PATH = PACKAGE / "api" / "openapi.json"
"""The OpenAPI document, in the package (in a checkout: a link to deploy/openapi.json)."""
CONTRACT_PATH = PACKAGE / "schemas" / "v1" / "segment_definition.json"
ENVELOPE_PATH = PACKAGE / "schemas" / "v1" / "envelope.json"
RULE = "SegmentRule."
"""Prefix of the component names of the definition contract's ``$defs``."""
CONSOLE_ASSET = "/console/{asset}"
"""The route of the console's files, whose names the document lists."""
SCALAR_MAX_CHARS = 256
"""Longest string value of a condition (the contract's ``scalar``)."""


def _rewrite_refs(node: Any) -> Any:
    """``node`` with ``#/$defs/x`` references pointing at ``SegmentRule.x`` components."""
    if isinstance(node, dict):
        return {
            key: (
                f"#/components/schemas/{RULE}{value.removeprefix('#/$defs/')}"
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                else _rewrite_refs(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def rule_schemas() -> dict[str, Any]:
    """The contract's ``$defs`` as components, the catalogue beside them, and its
    ``condition`` held to the catalogue."""
    contract = json.loads(CONTRACT_PATH.read_text())
    schemas = {f"{RULE}{name}": _rewrite_refs(d) for name, d in contract["$defs"].items()}
    schemas[f"{RULE}catalogue"] = catalogue_schema()
    condition = schemas[f"{RULE}condition"]
    condition["allOf"] = [*condition["allOf"], {"$ref": f"#/components/schemas/{RULE}catalogue"}]
    return schemas


def _branch(fields: dict[str, Any], kind: FieldType, value: dict[str, Any]) -> dict[str, Any]:
    """Conditions on ``fields`` of type ``kind``: its ops, and values of ``value``'s type
    (one, or a list: ``in`` and ``between`` take arrays; the contract shapes each op)."""
    return {
        "properties": {
            "field": fields,
            "op": {"enum": list(OPS_BY_TYPE[kind])},
            "value": {"anyOf": [value, {"type": "array", "items": value}]},
        }
    }


def catalogue_schema() -> dict[str, Any]:
    """What the validator checks beyond the contract's condition: the field is in the
    catalogue (or an open ``attributes.<key>``), the op fits the field's type, the value
    has that type, and a segment field is compared with names its model assigns."""
    fields = catalogue()
    values: dict[FieldType, dict[str, Any]] = {
        "number": {"type": "number"},
        "string": {"type": "string", "maxLength": SCALAR_MAX_CHARS},
        "boolean": {"type": "boolean"},
        "set": {"type": "string", "maxLength": SCALAR_MAX_CHARS},
    }
    branches = []
    for kind, value in values.items():
        names = sorted(
            name
            for name, field in fields.items()
            if field.type == kind and not name.startswith(SEGMENT_FIELDS)
        )
        branches.append(_branch({"enum": names}, kind, value))
    models = available_models()
    for name in sorted(n for n in fields if n.startswith(SEGMENT_FIELDS)):
        model = models[name.removeprefix(SEGMENT_FIELDS)]
        segments = {"type": "string", **model.segment_names}
        branches.append(_branch({"const": name}, "string", segments))
    prefix = OPEN_PREFIX.replace(".", "[.]")
    open_key = {"type": "string", "pattern": f"^{prefix}[a-z][a-z0-9_]{{0,63}}$"}
    branches.append(
        {"properties": {"field": {"allOf": [open_key, {"not": {"enum": sorted(fields)}}]}}}
    )
    return {
        "description": (
            "A condition's field, op and value as the field catalogue allows them"
            " (service/segstream/segments/defined/fields.py, catalogue(): FIELDS, one"
            " segments.<model> per segment model, PREDICTIONS; generated by"
            " service/segstream/api/document.py): the field's type decides the ops (number: eq, ne,"
            " lt, lte, gt, gte, in, between, exists; string: eq, ne, in, exists; boolean:"
            " eq, ne, exists; set: contains, exists) and the value's type; segments.<model>"
            " takes only the names the model assigns; any other attributes.<key> takes any"
            " op and value."
        ),
        "anyOf": branches,
    }


def template_use_schema() -> dict[str, Any]:
    """``TemplateUse``: a built-in template's id and its parameters, one alternative per
    template."""
    common = {
        "segment_id": {"$ref": "#/components/schemas/SegmentDefinition/properties/segment_id"},
        "name": {"$ref": "#/components/schemas/SegmentDefinition/properties/name"},
        "description": {"$ref": "#/components/schemas/SegmentDefinition/properties/description"},
        "version": {"$ref": "#/components/schemas/SegmentDefinition/properties/version"},
        "shop_id": {"$ref": "#/components/schemas/SegmentDefinition/properties/shop_id"},
        "schema_version": {
            "$ref": "#/components/schemas/SegmentDefinition/properties/schema_version"
        },
    }
    alternatives = []
    for template_id, template in TEMPLATES.items():
        parameters = {
            key: (
                {"type": "number", "description": p.description}
                if p.type == "number"
                else {
                    "type": "string",
                    "maxLength": SCALAR_MAX_CHARS,
                    "description": p.description,
                }
            )
            for key, p in template.parameters.items()
        }
        required = sorted(key for key, p in template.parameters.items() if p.default is None)
        alternative: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "required": ["template", *(["parameters"] if required else [])],
            "properties": {
                "template": {"const": template_id, "description": template.name},
                "parameters": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": required,
                    "properties": parameters,
                },
                **copy.deepcopy(common),
            },
        }
        alternatives.append(alternative)
    return {
        "title": "A segment defined from a template",
        "description": (
            "Defines a segment with a built-in template's rule (GET /templates), its"
            " parameters filled in (generated from"
            " service/segstream/segments/defined/templates.py)."
            " segment_id, name and description default to the template's; version, shop_id"
            " and schema_version are as for SegmentDefinitionInput."
        ),
        "oneOf": alternatives,
    }


def experiment_target_schema() -> dict[str, Any]:
    """``ExperimentTarget``: a built-in model and one of its segments, or a defined
    segment (``defined:<id>``, whose segment is ``<id>``: checked by the service)."""
    models = available_models()
    branches = [
        {
            "properties": {
                "model": {"const": name},
                "segment": {"type": "string", **model.segment_names},
            }
        }
        for name, model in models.items()
    ]
    branches.append(
        {
            "properties": {
                "model": {"type": "string", "pattern": "^defined:[a-z0-9][a-z0-9_-]{0,63}$"},
                "segment": {"$ref": "#/components/schemas/SegmentId"},
            }
        }
    )
    return {
        "description": (
            "Which segment the experiment runs on (generated from the model registry,"
            " service/segstream/segments): a built-in model and a segment it assigns, or"
            " defined:<segment_id> with that segment_id as the segment, for a segment the"
            " shop defines. Anything else is 422 naming the model or the segment."
        ),
        "anyOf": branches,
    }


def event_timestamp_schema() -> dict[str, Any]:
    """``EventTimestamp``: the contracts' timestamp profile (``envelope.json``), which an
    experiment's ``starts_at`` and ``ends_at`` are validated against."""
    envelope = json.loads(ENVELOPE_PATH.read_text())
    return copy.deepcopy(envelope["$defs"]["timestamp"])


def model_name_schema() -> dict[str, Any]:
    """``ModelName``: every model of the registry, each summed up."""
    models = available_models()
    summaries = "; ".join(f"{name}: {model.summary}" for name, model in models.items())
    return {
        "description": f"A segment model. {summaries}.",
        "type": "string",
        "enum": list(models),
    }


def segment_properties() -> dict[str, Any]:
    """``Segments.properties``: per model, what its segment says and the names it takes."""
    return {
        name: {"description": model.segment_description, "type": "string", **model.segment_names}
        for name, model in available_models().items()
    }


def size_properties() -> dict[str, Any]:
    """``SegmentSizes.models.properties``: per model, customers per segment."""
    return {
        name: {
            "type": "object",
            "description": f"Customers per {name} segment.",
            "propertyNames": {"$ref": f"#/components/schemas/Segments/properties/{name}"},
            "additionalProperties": {"type": "integer", "minimum": 1},
        }
        for name in available_models()
    }


UNKNOWN_MODEL = ("/shops/{shop_id}/segments/{model}/{segment}", "get", "404", "unknown_model")
"""Where the document shows the answer to an unknown model (path, method, status, example)."""


def components() -> dict[str, Any]:
    """Every generated component schema, by name."""
    return {
        "EventTimestamp": event_timestamp_schema(),
        **rule_schemas(),
        "TemplateUse": template_use_schema(),
        "ExperimentTarget": experiment_target_schema(),
        "ModelName": model_name_schema(),
    }


def rewritten(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the generated components and the model registry's lists in place."""
    updated = copy.deepcopy(spec)
    schemas = updated["components"]["schemas"]
    schemas.update(components())
    schemas["Segments"]["properties"] = segment_properties()
    schemas["SegmentSizes"]["properties"]["models"]["properties"] = size_properties()
    path, method, status, name = UNKNOWN_MODEL
    response = updated["paths"][path][method]["responses"][status]
    example = response["content"]["application/json"]["examples"][name]["value"]
    example["detail"] = f"unknown model 'no-model'; known: {', '.join(available_models())}"
    (asset,) = updated["paths"][CONSOLE_ASSET]["get"]["parameters"]
    asset["schema"]["enum"] = sorted(ASSETS)
    updated["components"]["parameters"]["CsvFields"] = csv_fields_parameter()
    return updated


def csv_fields_parameter() -> dict[str, Any]:
    """The ``fields`` of a CSV export: the columns :mod:`segstream.api.export` knows."""
    names = "|".join(export.columns())
    return {
        "name": "fields",
        "in": "query",
        "required": False,
        "description": (
            "The columns, comma-separated, after customer_id (always first): "
            + ", ".join(export.columns())
            + ". Default: "
            + ",".join(export.DEFAULT_FIELDS)
            + ". `since` is when the customer entered the segment; the lifetime columns are"
            " empty before the shop has a lifetime fit or the customer a purchase."
        ),
        "schema": {"type": "string", "pattern": f"^({names})(,({names}))*$"},
        "example": "marketing_opt_in,since,total_spend,p_alive",
    }


def main() -> int:
    """Rewrite the generated components of ``deploy/openapi.json`` in place."""
    spec = json.loads(SPEC_PATH.read_text())
    SPEC_PATH.write_text(json.dumps(rewritten(spec), indent=2, ensure_ascii=False) + "\n")
    print(f"document: wrote {len(components())} generated components to {SPEC_PATH.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
