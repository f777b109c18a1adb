"""The OpenAPI document: FastAPI's, with the model-specific request and response schemas patched in.

Requests are validated by hand, not by pydantic, so the request schema is written here as JSON
Schema directly; it states exactly what the validator accepts: numbers for numeric columns,
strings for categorical ones, null for a missing value in any column. The document is cached
once the model is loaded; before that it is FastAPI's generic one.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.state import ServiceState
from contract.dates import ISO_8601, part_names
from contract.features import Feature
from contract.metadata import Metadata

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str, example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def _error_response(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


def feature_schema(feature: Feature, max_abs: float) -> dict[str, Any]:
    """What one column accepts; null is a missing value, which the model's preprocessing imputes."""
    if feature.numeric:
        return {
            "title": feature.name,
            "type": ["number", "null"],
            "minimum": -max_abs,
            "maximum": max_abs,
        }
    if feature.kind == "date":
        return {
            "title": feature.name,
            "type": ["string", "null"],
            "pattern": rf"^\s*{ISO_8601.pattern}\s*$",
            "examples": ["2024-03-01", "2024-03-01T13:45:00Z"],
            "description": "ISO 8601 date or date-time; the model takes "
            + ", ".join(part_names(feature.name))
            + " (days since 1970-01-01 in UTC, month, weekday)",
        }
    # Not an enum: a category the training data never had is accepted (and counted in /metrics).
    return {
        "title": feature.name,
        "type": ["string", "null"],
        "examples": list(feature.categories or ()),
        "description": "categorical; known levels: " + ", ".join(feature.categories or ()),
    }


def _prediction_schema(metadata: Metadata) -> dict[str, Any]:
    if not metadata.is_classifier:
        return {
            "title": "Prediction",
            "type": "object",
            "properties": {"value": {"type": "number", "description": f"predicted {metadata.target}"}},
            "required": ["value"],
        }
    classes = list(metadata.classes)
    return {
        "title": "Prediction",
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": classes},
            "probabilities": {
                "type": "object",
                "properties": {c: {"type": "number", "minimum": 0, "maximum": 1} for c in classes},
                "required": classes,
                "additionalProperties": False,
            },
        },
        "required": ["label", "probabilities"],
    }


def components(metadata: Metadata, max_rows: int, max_abs: float) -> dict[str, Any]:
    """Schemas for the request, the response and the error envelope."""
    features = [f.name for f in metadata.features]
    example = metadata.example
    n = len(features)
    return {
        "NamedInstance": {
            "title": "NamedInstance",
            "description": "One row as an object with every feature by name (null for a missing value).",
            "type": "object",
            "properties": {f.name: feature_schema(f, max_abs) for f in metadata.features},
            "required": features,
            "additionalProperties": False,
            "example": example,
        },
        "PositionalInstance": {
            "title": "PositionalInstance",
            "description": f"One row as {n} values in feature order: {', '.join(features)}.",
            "type": "array",
            "prefixItems": [feature_schema(f, max_abs) for f in metadata.features],
            "items": False,
            "minItems": n,
            "maxItems": n,
            "example": [example[name] for name in features],
        },
        "PredictRequest": {
            "title": "PredictRequest",
            "type": "object",
            "properties": {
                "instances": {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/NamedInstance"},
                            {"$ref": "#/components/schemas/PositionalInstance"},
                        ]
                    },
                    "minItems": 1,
                    "maxItems": max_rows,
                }
            },
            "required": ["instances"],
            "additionalProperties": False,
        },
        "Prediction": _prediction_schema(metadata),
        "PredictResponse": {
            "title": "PredictResponse",
            "type": "object",
            "properties": {
                "model_version": {"type": "string", "description": "md5 of the served model file"},
                "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
            },
            "required": ["model_version", "predictions"],
        },
        "Error": {
            "title": "Error",
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "integer"},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "request_id": {"type": ["string", "null"]},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "row": {"type": ["integer", "null"], "description": "0-based row index"},
                                    "field": {"type": ["string", "null"]},
                                    "message": {"type": "string"},
                                },
                                "required": ["row", "field", "message"],
                            },
                        },
                    },
                    "required": ["status", "code", "message", "errors"],
                }
            },
            "required": ["error"],
        },
        "Status": {
            "title": "Status",
            "type": "object",
            "properties": {"status": {"type": "string"}, "model_version": {"type": "string"}},
            "required": ["status"],
        },
    }


def operations(features: list[str], example: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Request bodies and responses per (path, method), merged over what FastAPI generates."""
    status = {"$ref": "#/components/schemas/Status"}
    return {
        ("/predict", "post"): {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/PredictRequest"},
                        "examples": {
                            "named": {
                                "summary": "one row by feature name",
                                "value": {"instances": [example]},
                            },
                            "positional": {
                                "summary": "one row as values in feature order",
                                "value": {"instances": [[example[name] for name in features]]},
                            },
                        },
                    }
                },
            },
            "responses": {
                "200": _json(
                    {"$ref": "#/components/schemas/PredictResponse"},
                    "Label and class probabilities (classifiers) or value (regressors) per row",
                ),
                "400": _error_response("Malformed JSON"),
                "413": _error_response("Body larger than the configured limit"),
                "415": _error_response("Content-Type is not application/json"),
                "422": _error_response("Invalid instances: each problem names its row and field"),
            },
        },
        ("/healthz", "get"): {"responses": {"200": _json(status, "The process is alive")}},
        ("/readyz", "get"): {
            "responses": {
                "200": _json(status, "The model is loaded and verified"),
                "503": _json(status, "Not ready (starting or shutting down)"),
            }
        },
        ("/model", "get"): {
            "responses": {
                "200": _json({"type": "object"}, "Version, params, metrics, features and lock hashes")
            }
        },
        ("/metrics", "get"): {
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            }
        },
    }


def patch_openapi(
    document: dict[str, Any], metadata: Metadata, max_rows: int, max_abs: float
) -> dict[str, Any]:
    """Replace FastAPI's generic bodies and responses with the model-specific ones."""
    document.setdefault("components", {}).setdefault("schemas", {}).update(
        components(metadata, max_rows, max_abs)
    )
    features = [f.name for f in metadata.features]
    for (path, method), spec in operations(features, metadata.example).items():
        operation = document["paths"].get(path, {}).get(method)
        if operation is not None:
            operation.update(spec)
    return document


def install_openapi(app: FastAPI, state: ServiceState) -> None:
    """Make `app.openapi()` serve the patched document once `state` holds the model."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        if state.model is None:
            return document  # not cached: the model-specific parts come once the model is loaded
        model = state.model
        app.openapi_schema = patch_openapi(
            document, model.metadata, state.settings.max_rows, model.parser.max_abs
        )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
