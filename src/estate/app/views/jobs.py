"""Views of background jobs and of errors as data (what a job or an HTTP problem says about a failure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from estate.app.views import View
from estate.app.views.deployments import BatchView, DriftReport
from estate.app.views.rollouts import PreviewView, RetargetView, StartView


class FieldProblem(View):
    """One finding in the input: where (file, line, column, field path) and what is wrong."""

    message: str
    path: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None


class ErrorView(View):
    """An error of Estate's tree as data; `category` is the class entry points map to an exit code or status."""

    category: str  # ConfigError | InputError | NotFoundError | ConflictError | ComponentError | Refused | ...
    message: str
    hint: str | None = None
    problems: list[FieldProblem] = []


class JobItem(View):
    item: str  # e.g. an environment
    outcome: str  # e.g. succeeded, failed, drifted


class JobProgressView(View):
    label: str = ""
    total: int = 0
    done: list[JobItem] = []  # in the order they finished


JobResult = PreviewView | StartView | RetargetView | BatchView | DriftReport


class JobView(View):
    """Long work running in the background: poll it until `status` is terminal, then read `result` (or `error`)."""

    id: int
    kind: str  # deploy | rollback | drift | preview | start | retarget
    status: str  # queued | running | succeeded | failed | interrupted
    actor: str
    request: dict[str, Any]
    progress: JobProgressView
    result: JobResult | None = None
    error: ErrorView | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
