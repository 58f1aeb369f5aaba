"""The error answers every route can give, added to the OpenAPI document from the routes' shape.

Documented once here, not route by route, so that a new route cannot forget them: a route with
a security requirement answers 401 (no key) and 403 (wrong key); one that takes a body 400 (not
JSON) and 413 (over ``max_body_bytes``); one with parameters or a body 422; one that needs the
model 503 until a model is loaded. Schemathesis checks every answer against this document
(tests/integration/test_schema_fuzz.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import (
    get_openapi,
    validation_error_definition,
    validation_error_response_definition,
)
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from api.deps import get_recommender


class ErrorOut(BaseModel):
    """Every error but 422: one human-readable line, naming the field or limit at fault."""

    detail: str = Field(examples=["invalid API key"])


_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
_VALIDATION_REF = {"$ref": "#/components/schemas/HTTPValidationError"}


def _error(description: str, schema: dict[str, str] = _ERROR_REF) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = _error("no API key (X-API-Key header)")
_FORBIDDEN = _error("the API key is not one of the configured keys")
_MALFORMED = _error("the body is not JSON")
_TOO_LARGE = _error("request body over the size limit (or too many items in it)")
_INVALID = _error("a parameter or body field is invalid; `loc` names it", _VALIDATION_REF)
_NO_MODEL = _error("no model loaded yet; retry after Retry-After seconds")


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _needs_model(app: FastAPI) -> set[tuple[str, str]]:
    """(path, method) of every route whose dependencies include the serving model."""
    return {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, APIRoute) and get_recommender in set(_calls(route.dependant))
        for method in route.methods or ()
    }


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
    components["ErrorOut"] = ErrorOut.model_json_schema()
    needs_model = _needs_model(app)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            extra: dict[str, dict[str, Any]] = {}
            if operation.get("security"):
                extra |= {"401": _UNAUTHORIZED, "403": _FORBIDDEN}
            if "requestBody" in operation:
                extra |= {"400": _MALFORMED, "413": _TOO_LARGE}
            if operation.get("parameters") or "requestBody" in operation:
                extra["422"] = _INVALID
                components.setdefault("HTTPValidationError", _validation_schema(components))
            if (path, method) in needs_model:
                extra["503"] = _NO_MODEL
            for status, answer in extra.items():
                responses.setdefault(status, answer)
    app.openapi_schema = schema
    return schema


def _validation_schema(components: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's own 422 body schema, for a route whose parameters it does not declare itself."""
    components.setdefault("ValidationError", validation_error_definition)
    return dict(validation_error_response_definition)
