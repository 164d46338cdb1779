"""RFC 9457 problem details: every error the API returns, mapped once from Estate's exception tree (the
mirror of the CLI's exit codes), and FastAPI's and Starlette's own errors re-shaped into the same document.

    Unauthenticated                     401   (with `WWW-Authenticate: Bearer`); 429 after repeated failures
    Forbidden                           403   (names the role and scope that were needed)
    ConfigError, OperationFailed        422   (ConfigError lists each finding: file, line, column, field path)
    NotFoundError                       404
    ConflictError, Refused              409   (contradicts stored state; busy; refused by the state machine)
    other InputError                    400
    ComponentError                      503   (a component is down; `Retry-After` when trying again may help)
    malformed JSON                      400;  a body that breaks the schema: 422, naming each field
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from estate.app import failures
from estate.app.views.jobs import FieldProblem
from estate.errors import (
    ComponentError,
    ConfigError,
    ConflictError,
    EstateError,
    Forbidden,
    InputError,
    NotFoundError,
    OperationFailed,
    Refused,
    Throttled,
    Unauthenticated,
)

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:estate:problem:"

#: category -> (HTTP status, title)
STATUS: dict[type[EstateError], tuple[int, str]] = {
    Throttled: (429, "Too many failed attempts"),
    Unauthenticated: (401, "Unauthenticated"),
    Forbidden: (403, "Forbidden"),
    ConfigError: (422, "Invalid estate configuration"),
    NotFoundError: (404, "Not found"),
    ConflictError: (409, "Conflict"),
    InputError: (400, "Bad input"),
    ComponentError: (503, "Component unavailable"),
    Refused: (409, "Refused"),
    OperationFailed: (422, "Operation failed"),
    EstateError: (500, "Operation failed"),
}


class ProblemView(BaseModel):
    """An error, as RFC 9457 describes it; `hint` says what to do, `errors` where the input is wrong."""

    type: str = "about:blank"  # urn:estate:problem:<category> for Estate's own errors
    title: str
    status: int
    detail: str = ""
    hint: str | None = None
    errors: list[FieldProblem] = []


def problem_type(category: str) -> str:
    return TYPE_PREFIX + category


def category_of(problem_type_uri: str) -> str | None:
    """The error category a problem's `type` names, None for `about:blank` and other foreign types."""
    return problem_type_uri.removeprefix(TYPE_PREFIX) if problem_type_uri.startswith(TYPE_PREFIX) else None


def response(problem: ProblemView, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(mode="json"), status_code=problem.status, media_type=MEDIA_TYPE, headers=headers
    )


def from_error(error: EstateError) -> ProblemView:
    category = failures.category(error)
    status, title = STATUS[category]
    view = failures.describe(error)
    return ProblemView(
        type=problem_type(view.category),
        title=title,
        status=status,
        detail=view.message,
        hint=view.hint,
        errors=view.problems,
    )


def _field_path(loc: tuple[Any, ...]) -> str:
    """`('body', 'envs', 0)` -> `body.envs[0]`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


async def _estate_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EstateError)
    problem = from_error(exc)
    if problem.status >= 500 and not isinstance(exc, ComponentError):
        log.error("request failed: %s", exc.message)
    headers = {"Retry-After": "5"} if isinstance(exc, ComponentError) and exc.transient else None
    if isinstance(exc, Throttled):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": 'Bearer realm="estate"'}
    return response(problem, headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = "; ".join(str(e.get("ctx", {}).get("error") or e.get("msg")) for e in errors)
        return response(ProblemView(title="Malformed JSON", status=400, detail=f"the body is not valid JSON: {detail}"))
    found = [
        FieldProblem(message=str(e.get("msg", "invalid")).removeprefix("Value error, "), path=_field_path(e["loc"]))
        for e in errors
    ]
    detail = "; ".join(f"{p.path}: {p.message}" for p in found)
    return response(ProblemView(title="Invalid request", status=422, detail=detail, errors=found))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    problem = ProblemView(title=_title(exc.status_code), status=exc.status_code, detail=str(exc.detail))
    return response(problem, dict(exc.headers) if exc.headers else None)  # keep `Allow` on a 405


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error", exc_info=exc)
    return response(ProblemView(title="Internal error", status=500, detail=f"internal error: {type(exc).__name__}"))


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install(api: FastAPI) -> None:
    """Route every error through this module."""
    api.add_exception_handler(EstateError, _estate_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(Exception, _unexpected)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status documented as a problem document (see `add_schemas`)."""
    schema = {"$ref": "#/components/schemas/ProblemView"}
    return {s: {"description": _title(s), "content": {MEDIA_TYPE: {"schema": schema}}} for s in statuses}


#: What any route of the API may answer besides its success.
ERRORS = documented(400, 401, 403, 404, 409, 413, 422, 429, 503)


def add_schemas(openapi: dict[str, Any], *models: type[BaseModel]) -> dict[str, Any]:
    """Put models the routes name by reference (ProblemView, the data of event streams) into the document's
    components, with what they use."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    wanted: list[type[BaseModel]] = [ProblemView, *models]
    for model in wanted:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return openapi
