"""Errors as data and back: a failure of Estate's exception tree travels as an `ErrorView` (in a job, in an
HTTP problem) and becomes the same exception again on the other side, so a client reports it with the same
message, hint and exit code as the embedded CLI."""

from __future__ import annotations

from estate.app.views.jobs import ErrorView, FieldProblem
from estate.errors import (
    ComponentError,
    ConfigError,
    ConflictError,
    EstateError,
    Forbidden,
    InputError,
    NotFoundError,
    OperationFailed,
    Problem,
    Refused,
    Throttled,
    Unauthenticated,
)

#: The classes an error travels as, most specific first: each error goes as the first one it is.
CATEGORIES: tuple[type[EstateError], ...] = (
    Throttled,
    Unauthenticated,
    Forbidden,
    ConfigError,
    NotFoundError,
    ConflictError,
    InputError,
    ComponentError,
    Refused,
    OperationFailed,
    EstateError,
)
_BY_NAME = {c.__name__: c for c in CATEGORIES}


def category(error: EstateError) -> type[EstateError]:
    return next(c for c in CATEGORIES if isinstance(error, c))


def describe(error: EstateError) -> ErrorView:
    problems = getattr(error, "problems", None) or []
    return ErrorView(
        category=category(error).__name__,
        message=error.message,
        hint=error.hint,
        problems=[
            FieldProblem(message=p.message, path=p.path, file=p.file, line=p.line, column=p.column) for p in problems
        ],
    )


def restore(view: ErrorView) -> EstateError:
    """The exception `view` describes: its category's class, with the message and hint as they were."""
    cls = _BY_NAME.get(view.category, EstateError)
    error = cls.__new__(cls)
    EstateError.__init__(error, view.message, hint=view.hint)
    if cls is ConfigError:
        error.problems = [Problem(p.message, p.path, p.file, p.line, p.column) for p in view.problems]  # type: ignore[attr-defined]
    return error
