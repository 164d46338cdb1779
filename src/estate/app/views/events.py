"""Views of the event feed (`GET /api/v1/events`), readiness and what `/metrics` exports."""

from __future__ import annotations

from datetime import datetime

from estate.app.views import View


class EventView(View):
    """One transition (or command answer), as the event stream sends it; `id` orders and resumes the stream."""

    id: int
    at: datetime
    kind: str  # rollout | target | wave | gate | env | command | alert | deployment
    rollout_id: str | None = None
    deployment_id: int | None = None
    wave: int | None = None
    gate: int | None = None
    env: str | None = None
    before: str = ""  # for a command: its name; for an alert: its name
    after: str = ""  # for a command: accepted | refused; for an alert: what it did (failed_wave, paused...)
    reason: str = ""
    actor: str | None = None
    summary: str = ""


class CheckView(View):
    name: str  # store | migrations | engine
    ok: bool
    detail: str = ""


class ReadinessView(View):
    ready: bool
    checks: list[CheckView]
