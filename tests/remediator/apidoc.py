"""Checks an answer of the remediator against its own OpenAPI document (/api/openapi.json)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jsonschema_rs

from remediator.keys import OPENAPI

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

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


async def call(
    client: TestClient, method: str, endpoint: str, headers: dict[str, str], target: str = "redis"
) -> tuple[int, Any]:
    """Call /api/services/TARGET/ENDPOINT (a query string may follow) and check the answer
    against the remediator's OpenAPI document; a 401 must name the Bearer scheme."""
    response = await client.request(method, f"/api/services/{target}/{endpoint}", headers=headers)
    body = await response.json()
    check_answer(
        client.app[OPENAPI],
        method,
        f"{TEMPLATE}/{endpoint.partition('?')[0]}",
        status=response.status,
        content_type=response.headers["Content-Type"],
        body=body,
    )
    if response.status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return response.status, body
