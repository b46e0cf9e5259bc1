"""Checks an answer of the remediator against its own OpenAPI document (/api/openapi.json)."""

from __future__ import annotations

from typing import Any

import jsonschema_rs

TEMPLATE = "/api/services/{target}"


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        path = node["$ref"].removeprefix("#/").split("/")
        node = doc
        for part in path:
            node = node[part]
    return node


def check_answer(
    doc: dict[str, Any],
    method: str,
    template: str,
    *,
    status: int,
    content_type: str,
    body: object,
) -> None:
    """Assert that the document lists `status` for the operation and that `body` fits it."""
    operation = doc["paths"][template][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template}: {status} is not documented"
    answer = _resolve(doc, responses[str(status)])
    media = content_type.split(";", maxsplit=1)[0].strip()
    content = answer.get("content", {})
    assert media in content, f"{method} {template} {status}: {media} not in {list(content)}"
    schema = {**content[media]["schema"], "components": doc["components"]}
    jsonschema_rs.Draft202012Validator(schema).validate(body)
