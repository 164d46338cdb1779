"""Guardrails: freezes (admin), and the Alertmanager webhook (`operator` where its alerts would act), which
authenticates like every request: `Authorization: Bearer <token>`, or basic auth whose password is the token."""

from __future__ import annotations

from fastapi import APIRouter

from estate.api.deps import Estate, Who
from estate.api.problems import ERRORS
from estate.api.requests import AlertIn, AlertmanagerIn, FreezeIn, UnfreezeIn
from estate.app.views.guardrails import AlertReceiptView, FreezeView
from estate.domain.alerts import Alert, AlertStatus

router = APIRouter(responses=ERRORS)


@router.get("/freezes", tags=["freezes"])
def freezes(estate: Estate) -> list[FreezeView]:
    """The freezes in force now, oldest first."""
    return estate.freezes.list()


@router.post("/freezes", tags=["freezes"], status_code=201)
def freeze(body: FreezeIn, estate: Estate, who: Who) -> FreezeView:
    """Freeze an env type (or every environment) until `until` or until lifted (admin): no new deployment starts
    there; in-flight ones finish; rollbacks still run."""
    return estate.freezes.freeze(who, reason=body.reason, env_type=body.env_type, until=body.until)


@router.post("/freezes:lift", tags=["freezes"])
def unfreeze(body: UnfreezeIn, estate: Estate, who: Who) -> list[FreezeView]:
    """Lift freeze `id`, or the freezes of `env_type`, or (neither given) the estate-wide ones (admin)."""
    return estate.freezes.unfreeze(who, env_type=body.env_type, freeze_id=body.id)


@router.post("/hooks/alertmanager", tags=["hooks"])
def alertmanager(body: AlertmanagerIn, estate: Estate, who: Who) -> AlertReceiptView:
    """Alertmanager's webhook (payload version 4): each firing alert whose labels name an environment of an active
    rollout (and that its plan's `alert_selector` takes) stops the line; resolved alerts change nothing."""
    return estate.alerts.receive(who, [_alert(a) for a in body.alerts], receiver=body.receiver)


def _alert(a: AlertIn) -> Alert:
    return Alert(
        name=a.labels.get("alertname", ""),
        status=AlertStatus(a.status),
        labels=a.labels,
        starts_at=a.starts_at,
        generator_url=a.generator_url,
        fingerprint=a.fingerprint,
    )
