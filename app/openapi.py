"""The OpenAPI 3.1 document, generated from the pydantic schemas, and the offline Swagger UI page.

Swagger UI's assets come from the swagger-ui-bundle package, served by the app itself: /docs needs
no internet. That bundle (4.15) renders OpenAPI 3.0 only, so /docs reads a 3.0 translation of the
same document; /openapi.json stays 3.1.
"""

from __future__ import annotations

import copy
import html
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from swagger_ui_bundle import swagger_ui_path

from app.schemas import (
    EXAMPLE_RECORD,
    CompareRequest,
    CompareResponse,
    ErrorDetail,
    Health,
    ModelInfo,
    ModelList,
    PredictRequest,
    PredictResponse,
    ValidationErrorDetail,
    Welcome,
)

SWAGGER_UI_DIR = str(swagger_ui_path)
SCHEMAS: list[type[BaseModel]] = [
    PredictRequest,
    CompareRequest,
    PredictResponse,
    CompareResponse,
    ModelInfo,
    ModelList,
    Welcome,
    Health,
    ErrorDetail,
    ValidationErrorDetail,
]
ERRORS = {
    400: "The model name is not a plain file name, or it links outside MODELS_DIR.",
    404: "No such model in MODELS_DIR; the detail lists the available ones.",
    413: "More records than MAX_RECORDS.",
    422: "The body is not valid JSON or a record does not validate.",
    500: "The model file cannot be loaded; the detail names the file and the reason.",
    503: "MODELS_DIR is not readable.",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str, example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def _responses(model: type[BaseModel], *errors: int) -> dict[str, Any]:
    answers = {"200": _json(_ref(model), "Success")}
    for status in errors:
        body = ValidationErrorDetail if status == 422 else ErrorDetail
        answers[str(status)] = _json(_ref(body), ERRORS[status])
    return answers


def _operation(summary: str, model: type[BaseModel], *errors: int, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": _responses(model, *errors), **extra}


def _body(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, **_json(_ref(model), model.__doc__ or "", example)}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def openapi_document() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(model, "validation") for model in SCHEMAS], ref_template="#/components/schemas/{model}"
    )
    model_query = _query("model", "Model file name, with or without `.pkl`; wins over the body.", {"type": "string"})
    models_query = _query(
        "models",
        "Repeat it (`?models=svc&models=random_forest`) or separate names with commas; wins over the body.",
        {"type": "array", "items": {"type": "string"}},
    )
    name_path = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    compare_example = {"records": [EXAMPLE_RECORD], "models": ["svc", "random_forest"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Penguin species inference API",
            "version": "1.0.0",
            "description": "Serves every model file in MODELS_DIR, reloaded when the file changes.",
        },
        "paths": {
            "/": {"get": _operation("Welcome message and the list of endpoints", Welcome)},
            "/health": {"get": _operation("Whether MODELS_DIR is readable, and how many models it holds", Health, 503)},
            "/models": {"get": _operation("The model files in MODELS_DIR now", ModelList, 503)},
            "/models/{name}": {
                "get": _operation("One model's metadata", ModelInfo, 400, 404, 500, 503, parameters=[name_path])
            },
            "/predict": {
                "post": _operation(
                    "Species and probabilities from one model",
                    PredictResponse,
                    *ERRORS,
                    parameters=[model_query],
                    requestBody=_body(PredictRequest, {"records": [EXAMPLE_RECORD]}),
                )
            },
            "/predict/compare": {
                "post": _operation(
                    "The same records through several models, side by side",
                    CompareResponse,
                    *ERRORS,
                    parameters=[models_query],
                    requestBody=_body(CompareRequest, compare_example),
                )
            },
        },
        "components": {"schemas": definitions["$defs"]},
    }


def downgrade_to_3_0(document: dict[str, Any]) -> dict[str, Any]:
    """The same document in the OpenAPI 3.0 dialect, for the bundled Swagger UI."""
    converted: dict[str, Any] = _schema_3_0(copy.deepcopy(document))
    converted["openapi"] = "3.0.3"
    return converted


def _schema_3_0(node: Any) -> Any:
    if isinstance(node, list):
        return [_schema_3_0(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _schema_3_0(value) for key, value in node.items()}
    variants = node.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants:
        # 3.1's anyOf [X, null] is 3.0's X with nullable: true.
        rest = [variant for variant in variants if variant != {"type": "null"}]
        node.pop("anyOf")
        node.update(rest[0] if len(rest) == 1 and "$ref" not in rest[0] else {"anyOf": rest})
        node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound in ("Minimum", "Maximum"):
        # 3.1 says exclusiveMinimum: 0; 3.0 says minimum: 0 with exclusiveMinimum: true.
        value = node.get(f"exclusive{bound}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            node[bound.lower()], node[f"exclusive{bound}"] = value, True
    if isinstance(node.get("examples"), list) and "type" in node:
        node["example"] = node.pop("examples")[0]
    return node


def docs_page(root_path: str) -> str:
    static = html.escape(f"{root_path}/docs/static", quote=True)
    spec = html.escape(f"{root_path}/docs/openapi-3.0.json", quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Penguin species inference API - Swagger UI</title>
  <link rel="stylesheet" href="{static}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{static}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{static}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "{spec}", dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""
