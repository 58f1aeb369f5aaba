"""The error answers every route can give, added to the OpenAPI document from the routes' shape.

Documented once here, not route by route, so that a new route cannot forget them: a route with
a security requirement answers 401 (no key) and 403 (wrong key); one that takes a body 400 (not
JSON) and 413 (over ``max_body_bytes``); one with parameters or a body 422; and every error
declared without a body has :class:`~api.schemas.ErrorOut`'s. A body schema a route wrote itself
brings its definitions along. Schemathesis checks every answer
against this document (tests/integration/test_schema_fuzz.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import (
    get_openapi,
    validation_error_definition,
    validation_error_response_definition,
)

from api.schemas import ErrorOut

_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
_VALIDATION_REF = {"$ref": "#/components/schemas/HTTPValidationError"}


def _error(description: str, schema: dict[str, str] = _ERROR_REF) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = _error("no API key (X-API-Key header)")
_FORBIDDEN = _error("the API key is not one of the configured keys")
_MALFORMED = _error("the body is not JSON")
_TOO_LARGE = _error("request body over the size limit (or too many items in it)")
_INVALID = _error("a parameter or body field is invalid; `loc` names it", _VALIDATION_REF)


def document_errors(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with the shared error answers; built once, then cached."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorOut", ErrorOut.model_json_schema())
    for operations in schema["paths"].values():
        for operation in operations.values():
            _hoist_body_definitions(operation, components)
            responses = operation.setdefault("responses", {})
            extra: dict[str, dict[str, Any]] = {}
            if operation.get("security"):
                extra |= {"401": _UNAUTHORIZED, "403": _FORBIDDEN}
            if "requestBody" in operation:
                extra |= {"400": _MALFORMED, "413": _TOO_LARGE}
            if operation.get("parameters") or "requestBody" in operation:
                extra["422"] = _INVALID
                components.setdefault("HTTPValidationError", _validation_schema(components))
            for status, answer in extra.items():
                responses.setdefault(status, answer)
            for status, answer in list(responses.items()):
                # An error declared with a description only (404 unknown item, 503 store
                # unreachable) has the body every HTTPException gets: say so, so it is checked.
                if status[0] in "45" and "content" not in answer:
                    body = {"application/json": {"schema": _ERROR_REF}}
                    responses[status] = {**answer, "content": body}
    app.openapi_schema = schema
    return schema


def _hoist_body_definitions(operation: dict[str, Any], components: dict[str, Any]) -> None:
    """Move the ``$defs`` of a body schema written by a route itself (one that reads its own
    body, like POST /v1/events) to the components, where its references point."""
    for media in operation.get("requestBody", {}).get("content", {}).values():
        for name, definition in media.get("schema", {}).pop("$defs", {}).items():
            components.setdefault(name, definition)


def _validation_schema(components: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's own 422 body schema, for a route whose parameters it does not declare itself."""
    components.setdefault("ValidationError", validation_error_definition)
    return dict(validation_error_response_definition)
