"""What `estate rollout status` shows: a JSON-stable view of a rollout built from its state and log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from estate.domain.links import grafana_explore_url, prometheus_graph_url
from estate.domain.plans import ApprovalGate, BakeGate, Gate, PrometheusGate
from estate.domain.rollout_state import RolloutPhase, RolloutState, WaveState
from estate.domain.usage import module_usage
from estate.store import Store
from estate.store import rollouts as repo
from estate.store.codec import decode_as, gc_paused

_WAITING_FOR = {
    RolloutPhase.PENDING: "the engine to start wave 1",
    RolloutPhase.PAUSED: "`resume` (paused)",
    RolloutPhase.AWAITING_APPROVAL: "an approver: `estate rollout approve {id}`",
    RolloutPhase.AWAITING_PROMOTION: "`estate rollout promote {id}` to start the next wave",
    RolloutPhase.HALTED: "a human: `approve --override`, `rollback` or `abort`",
    RolloutPhase.FAILED: "a fix: `retarget` a patched version and `rerun`, or `abort`",
}


def gate_text(gate: Gate) -> str:
    if isinstance(gate, BakeGate):
        return f"bake {gate.seconds}s"
    if isinstance(gate, ApprovalGate):
        return f"approval by {gate.role}" + (" (four eyes)" if gate.four_eyes else "")
    assert isinstance(gate, PrometheusGate)
    bounds = " ".join(f"{k} {v:g}" for k, v in (("min", gate.min), ("max", gate.max)) if v is not None)
    return f"prometheus {gate.query!r} {bounds} x{gate.count}/{gate.interval_seconds}s"


@dataclass(frozen=True)
class Dashboards:
    """Where a person looks at a gate's query: Prometheus' graph page and Grafana Explore (either optional)."""

    prometheus_url: str | None = None
    grafana_url: str | None = None

    def links(self, query: str, start: datetime, end: datetime) -> dict[str, str]:
        found = {}
        if self.prometheus_url:
            found["prometheus"] = prometheus_graph_url(self.prometheus_url, query, start, end)
        if self.grafana_url:
            found["grafana"] = grafana_explore_url(self.grafana_url, query, start, end)
        return found


def _with_links(details: dict[str, Any], wave: WaveState, at: datetime, boards: Dashboards) -> dict[str, Any]:
    """Each observed query gets links over the wave's verification window (a minute of context either side)."""
    start = (wave.verify_started_at or at) - timedelta(minutes=1)
    end = at + timedelta(minutes=1)
    subjects = [
        {**s, "links": boards.links(s["query"], start, end)} if s.get("query") else s
        for s in details.get("subjects") or []
    ]
    return {**details, "subjects": subjects} if subjects else details


def _gates(state: RolloutState, wave: WaveState, boards: Dashboards) -> list[dict[str, Any]]:
    out = []
    for index, gate in enumerate(state.spec(wave.number).gates):
        record = wave.record(index)
        approvals = [a for a in wave.approvals if a.gate_index == index]
        entry: dict[str, Any] = {
            "index": index,
            "kind": type(gate).__name__.removesuffix("Gate").lower(),
            "spec": gate_text(gate),
            "result": str(record.result) if record else ("approved" if approvals else None),
            "at": record.at if record else (approvals[-1].at if approvals else None),
        }
        if record is not None:
            entry["details"] = _with_links(dict(record.details), wave, record.at, boards)
        if approvals:
            entry["approved_by"] = [a.actor for a in approvals]
        out.append(entry)
    return out


def _wave(state: RolloutState, wave: WaveState, boards: Dashboards) -> dict[str, Any]:
    spec = state.spec(wave.number)
    return {
        "number": wave.number,
        "name": spec.name,
        "phase": str(wave.phase),
        "reason": wave.reason,
        "max_parallel": spec.max_parallel,
        "failure_tolerance": str(spec.failure_tolerance),
        "on_failure": str(spec.on_failure),
        "auto_promote": spec.auto_promote,
        "overridden_by": wave.overridden_by,
        "verify_started_at": wave.verify_started_at,
        "gates": _gates(state, wave, boards),
        "envs": [
            {
                "env": str(e.env),
                "status": str(e.status),
                "version": e.version,
                "previous_version": e.previous_version,
                "changed": e.changed,
                "deployment_id": e.deployment_id,
                "reason": e.reason,
            }
            for e in state.envs_of(wave.number)
        ],
    }


def rollout_view(
    store: Store, rollout_id: str, now: datetime, *, history: int = 20, boards: Dashboards | None = None
) -> dict[str, Any]:
    """Everything about one rollout a person or a tool needs to decide the next step."""
    with gc_paused():
        return _view(store, rollout_id, now, history, boards or Dashboards())


def _view(store: Store, rollout_id: str, now: datetime, history: int, boards: Dashboards) -> dict[str, Any]:
    with store.engine.connect() as conn:
        record = repo.load_rollout(conn, rollout_id)
        log = repo.events(conn, rollout_id, last=history)
        audit = repo.events(conn, rollout_id, kinds=("created", "command", "refused"))
        phase_change = repo.events(conn, rollout_id, kinds=("phase",), last=1)
        holder = repo.lease_holder(conn, f"rollout:{rollout_id}", now)
    state = decode_as(RolloutState, record.state)
    members = {str(e.env) for e in state.envs}
    users = {str(b.env.ref) for b in module_usage(store.usage_slice(state.module), state.module)}
    not_covered = sorted(users - members)
    since = phase_change[0]["at"] if phase_change else (state.started_at or state.created_at)
    waiting = _WAITING_FOR.get(state.phase, "")
    return {
        "id": state.id,
        "module": state.module,
        "version": state.version,
        "plan": state.plan.id,
        "phase": str(state.phase),
        "reason": state.reason,
        "started_by": state.started_by,
        "created_at": state.created_at,
        "current_wave": state.current,
        "waiting_for": waiting.format(id=state.id) if waiting else None,
        "since": since,
        "engine": holder,
        "waves": [_wave(state, w, boards) for w in state.waves],
        "not_covered": not_covered,
        "audit": [{"at": e["at"], "actor": e["actor"], "kind": e["kind"], "summary": e["summary"]} for e in audit],
        "events": [{"at": e["at"], "kind": e["kind"], "summary": e["summary"]} for e in log],
        "preflight": record.preflight,
    }
