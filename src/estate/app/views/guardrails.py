"""Views of the guardrails around deployments: freezes, and what an Alertmanager notification reached."""

from __future__ import annotations

from datetime import datetime

from estate.app.views import View


class FreezeView(View):
    """A freeze in force: no new deployment starts in its scope until `until` or until lifted."""

    id: int
    scope: str  # "estate" (every environment) or "env_type:<id>"
    env_type: str | None
    reason: str
    until: datetime | None
    created_by: str
    created_at: datetime
    text: str  # as status lines show it


class AlertDeliveryView(View):
    """A firing alert queued for a rollout (its engine decides what it does within two turns)."""

    rollout: str
    env: str
    alert: str
    labels: dict[str, str]


class AlertIgnoredView(View):
    alert: str
    env: str | None
    reason: str


class AlertReceiptView(View):
    """What Estate did with one Alertmanager notification."""

    received: int
    firing: int
    delivered: list[AlertDeliveryView]
    ignored: list[AlertIgnoredView]
