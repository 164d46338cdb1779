"""Alertmanager stop-the-line: a notification's firing alerts reach the rollouts that hold their environments.

The webhook is an authenticated API client (a subject holding `operator` where the alerts would act). Each
firing alert names an environment through its labels (`settings.alertmanager`); every active rollout with that
environment whose plan's `alert_selector` takes the alert gets it in its inbox, where the engine hands it to
the state machine within two turns: an environment of the current wave fails the wave (its `on_failure`
applies), one of a wave already deployed pauses the rollout. Resolved alerts change nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from estate.app.access import AccessControl
from estate.app.audit import AuditTrail
from estate.app.caller import Caller
from estate.app.views.guardrails import AlertDeliveryView, AlertIgnoredView, AlertReceiptView
from estate.domain import rollout_events as ev
from estate.domain.access import Action
from estate.domain.alerts import Alert, AlertRouting, AlertStatus, selected
from estate.domain.ids import EnvRef
from estate.store import Store
from estate.store.rollouts import RolloutStore


class Alerts:
    """Receive Alertmanager notifications."""

    def __init__(
        self,
        store: Store,
        audit: AuditTrail,
        access: AccessControl,
        now: Callable[[], datetime],
        poke: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.rollouts = RolloutStore(store)
        self.audit = audit
        self.access = access
        self.now = now
        self.poke = poke  # hosted: wake the engine host, so the inbox is read at once

    def receive(self, caller: Caller, alerts: Sequence[Alert], *, receiver: str = "") -> AlertReceiptView:
        """Queue each firing alert for every active rollout it concerns; say what went where and what did not."""
        firing = [a for a in alerts if a.status is AlertStatus.FIRING]
        details = {"alerts": len(alerts), "firing": len(firing)}
        with self.audit.attempt(caller, "alertmanager notification", f"receiver:{receiver}", details) as attempt:
            routing = self._routing()
            ignored: list[AlertIgnoredView] = []
            routed: list[tuple[Alert, EnvRef]] = []
            for alert in firing:
                env = routing.env_of(alert.labels)
                if env is None:
                    labels = f"{routing.ref_label}, or {routing.project_label} and {routing.env_label}"
                    ignored.append(
                        AlertIgnoredView(alert=alert.name, env=None, reason=f"no environment label ({labels})")
                    )
                else:
                    routed.append((alert, env))
            holders = self.rollouts.active_with({env for _, env in routed})
            deliveries: list[tuple[str, Alert, EnvRef]] = []
            for alert, env in routed:
                found = [r for r, refs in holders.items() if env in refs]
                if not found:
                    ignored.append(
                        AlertIgnoredView(alert=alert.name, env=str(env), reason="no active rollout holds it")
                    )
                for rollout_id in found:
                    plan = self.rollouts.outline(rollout_id).state.plan
                    if selected(plan.alert_selector, alert.labels):
                        deliveries.append((rollout_id, alert, env))
                    else:
                        selector = ", ".join(str(m) for m in plan.alert_selector)
                        reason = f"rollout {rollout_id}'s plan {plan.id} selects alerts with {selector}"
                        ignored.append(AlertIgnoredView(alert=alert.name, env=str(env), reason=reason))
            self.access.require(caller, Action.OPERATE, sorted({env for _, _, env in deliveries}))
            now = self.now()
            for rollout_id, alert, env in deliveries:
                self.rollouts.enqueue(rollout_id, ev.AlertFired(alert, env, caller.subject), now)
            attempt.details["delivered"] = [f"{r}:{a.name}:{e}" for r, a, e in deliveries]
        if deliveries:
            self.poke()
        return AlertReceiptView(
            received=len(alerts),
            firing=len(firing),
            delivered=[
                AlertDeliveryView(rollout=r, env=str(e), alert=a.name, labels=dict(a.labels)) for r, a, e in deliveries
            ],
            ignored=ignored,
        )

    def _routing(self) -> AlertRouting:
        found = dict(self.store.settings().get("alertmanager") or {})
        default = AlertRouting()
        return AlertRouting(
            project_label=found.get("project_label") or default.project_label,
            env_label=found.get("env_label") or default.env_label,
            ref_label=found.get("estate_env_label") or default.ref_label,
        )
