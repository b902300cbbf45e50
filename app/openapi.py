"""The OpenAPI 3.1 document, generated from the pydantic schemas, and the offline Swagger UI page.

Swagger UI's assets come from the swagger-ui-bundle package, served by the app itself: /docs needs
no internet. That bundle (4.15) renders OpenAPI 3.0 only, so /docs reads a 3.0 translation of the
same document; /openapi.json stays 3.1.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from swagger_ui_bundle import swagger_ui_path

from app.rules import MODEL_NAME_MAX_LENGTH, MODEL_NAME_PATTERN

if TYPE_CHECKING:
    from app.http import Endpoint

SWAGGER_UI_DIR = str(swagger_ui_path)
# The API's version, as the document and V2's server metadata state it.
API_VERSION = "1.0.0"
# What the registry accepts as a model name (rules.MODEL_NAME_PATTERN), as both dialects document it.
MODEL_NAME: dict[str, Any] = {
    "type": "string",
    "pattern": f"^{MODEL_NAME_PATTERN.pattern}$",
    "maxLength": MODEL_NAME_MAX_LENGTH,
}
# The answer's header naming the variant that answered, when the request named a route (app/http.py's ROUTE_VARIANT).
ROUTE_VARIANT_HEADER: dict[str, Any] = {
    "X-Route-Variant": {
        "description": "When a route was asked: the variant (model file, without .pkl) that answered.",
        "schema": MODEL_NAME,
    }
}
# A body's type, for its JSON schema: a pydantic model or a TypedDict.
Schema = type[Any]
# An error answer: the body's schema, and when it happens.
ErrorDoc = tuple[Schema, str]
BEARER = "bearerAuth"


def ref(model: Schema) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def json_content(schema: dict[str, Any], description: str, example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def operation(
    tag: str, summary: str, answer: Schema, errors: Mapping[int, ErrorDoc] | None = None, **extra: Any
) -> dict[str, Any]:
    """An OpenAPI operation: the success body, and each error with its body and cause."""
    responses = {"200": json_content(ref(answer), "Success")}
    for status, (body, cause) in (errors or {}).items():
        responses[str(status)] = json_content(ref(body), cause)
    return {"tags": [tag], "summary": summary, "responses": responses, **extra}


def routed(spec: dict[str, Any]) -> dict[str, Any]:
    """The operation of a path that takes a route's name: its success names the variant that answered."""
    spec["responses"]["200"]["headers"] = ROUTE_VARIANT_HEADER
    return spec


def request_body(model: Schema, example: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, **json_content(ref(model), model.__doc__ or "", example)}


def query_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def path_parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def openapi_document(endpoints: Sequence[Endpoint], schemas: Sequence[Schema]) -> dict[str, Any]:
    """The document of exactly the endpoints served: each path and method comes from the route table."""
    _, definitions = TypeAdapter.json_schemas(
        [(schema.__name__, "validation", TypeAdapter(schema)) for schema in schemas],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        if endpoint.operation:
            paths.setdefault(endpoint.documented_path, {})[endpoint.method.lower()] = endpoint.operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Penguin species inference API",
            "version": API_VERSION,
            "description": "Serves every model file in MODELS_DIR, reloaded when the file changes.",
        },
        "paths": paths,
        "components": {"schemas": definitions["$defs"]},
    }


def with_bearer_scheme(document: dict[str, Any], public_paths: Collection[str]) -> dict[str, Any]:
    """The document of a server with API_TOKEN: every operation but the public ones needs the bearer token."""
    secured = copy.deepcopy(document)
    secured["components"]["securitySchemes"] = {BEARER: {"type": "http", "scheme": "bearer"}}
    for path, operations in secured["paths"].items():
        if path in public_paths:
            continue
        for item in operations.values():
            item["security"] = [{BEARER: []}]
            item["responses"]["401"] = {
                "description": "No `Authorization: Bearer <API_TOKEN>` header, or a wrong token."
            }
    return secured


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
    if node == {"not": {"type": "null"}}:
        # 3.0 has no null type to exclude: the display loses "not null", the 3.1 document keeps it.
        return {}
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
