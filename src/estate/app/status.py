"""What `estate rollout status` shows: the rollout view, built from its state and log."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from estate.app.views.rollouts import (
    EnvQuery,
    GateDetails,
    GateView,
    LogLineView,
    RolloutEnvView,
    RolloutView,
    SampleView,
    SubjectEvidence,
    WaveView,
)
from estate.domain.links import grafana_explore_url, prometheus_graph_url
from estate.domain.plans import BakeGate, Gate, describe_gate
from estate.domain.rollout_state import EnvState, GateRecord, RolloutPhase, RolloutState, WaveState
from estate.domain.usage import module_usage
from estate.store import Store
from estate.store.codec import gc_paused
from estate.store.rollouts import RolloutStore
from estate.store.runner_pools import waiting_for_runner

_WAITING_FOR = {
    RolloutPhase.PENDING: "the engine to start wave 1",
    RolloutPhase.PAUSED: "`resume` (paused)",
    RolloutPhase.AWAITING_APPROVAL: "an approver: `estate rollout approve {id}`",
    RolloutPhase.AWAITING_PROMOTION: "`estate rollout promote {id}` to start the next wave",
    RolloutPhase.HALTED: "a human: `approve --override`, `rerun`, `rollback` or `abort`",
    RolloutPhase.FAILED: "a fix: `retarget` a patched version and `rerun`, or `abort`",
}


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


def _details(record: GateRecord, wave: WaveState, gate: Gate, boards: Dashboards) -> GateDetails:
    """The evidence under a gate; each observed query links over the wave's verification window (a minute of
    context either side)."""
    baked = gate.seconds if isinstance(gate, BakeGate) else None
    if record.judgement is None:
        return GateDetails(reason=record.reason, baked_seconds=baked)
    start = (wave.verify_started_at or record.at) - timedelta(minutes=1)
    end = record.at + timedelta(minutes=1)
    subjects = [
        SubjectEvidence(
            subject=s.subject,
            query=s.query,
            verdict=str(s.verdict),
            reason=s.reason,
            samples=[
                SampleView(round=x.round, status=str(x.status), values=list(x.values), detail=x.detail)
                for x in s.samples
            ],
            failures=s.failures,
            links=boards.links(s.query, start, end) if s.query else {},
        )
        for s in record.judgement.subjects
    ]
    return GateDetails(reason=record.reason, subjects=subjects)


def _gates(state: RolloutState, wave: WaveState, boards: Dashboards) -> list[GateView]:
    out = []
    for index, gate in enumerate(state.spec(wave.number).gates):
        record = wave.record(index)
        approvals = [a for a in wave.approvals if a.gate_index == index]
        result = str(record.verdict) if record else ("approved" if approvals else None)
        out.append(
            GateView(
                index=index,
                kind=type(gate).__name__.removesuffix("Gate").lower(),
                spec=describe_gate(gate),
                result=result,
                at=record.at if record else (approvals[-1].at if approvals else None),
                details=_details(record, wave, gate, boards) if record else None,
                approved_by=[a.actor for a in approvals],
            )
        )
    return out


def _wave(state: RolloutState, wave: WaveState, boards: Dashboards, envs: list[RolloutEnvView]) -> WaveView:
    spec = state.spec(wave.number)
    return WaveView(
        number=wave.number,
        name=spec.name,
        phase=str(wave.phase),
        reason=wave.reason,
        max_parallel=spec.max_parallel,
        failure_tolerance=str(spec.failure_tolerance),
        on_failure=str(spec.on_failure),
        auto_promote=spec.auto_promote,
        overridden_by=wave.overridden_by,
        verify_started_at=wave.verify_started_at,
        gates=_gates(state, wave, boards),
        counts=dict(Counter(str(e.status) for e in state.envs_of(wave.number))),
        envs=envs,
    )


def _env(e: EnvState, waiting: dict[int, str]) -> RolloutEnvView:
    pool = waiting.get(int(e.deployment_id)) if e.status.in_flight and e.deployment_id else None
    return RolloutEnvView(
        waiting_for_runner=pool,
        env=str(e.env),
        status=str(e.status),
        version=e.version,
        previous_version=e.previous_version,
        changed=e.changed,
        deployment_id=e.deployment_id,
        reason=e.reason,
        retry_at=e.retry_at,
    )


def _page(store: Store, state: RolloutState, query: EnvQuery) -> tuple[dict[int, list[RolloutEnvView]], str | None]:
    """The environments `query` selects, per wave, and the cursor of the next page (None: this is the last)."""
    if query.summary:
        return {}, None
    wave = None if query.wave is None else state.plan.wave_number(query.wave)
    selected = [
        e for e in state.envs if (wave is None or e.wave == wave) and (query.state is None or e.status == query.state)
    ]
    if query.after is not None:
        position = next((i for i, e in enumerate(selected) if str(e.env) == query.after), None)
        selected = selected[position + 1 :] if position is not None else []
    more = query.limit is not None and len(selected) > query.limit
    page = selected[: query.limit] if query.limit is not None else selected
    # A deployment sent to a runner pool that no worker has taken yet waits for a runner: never failed.
    waiting = waiting_for_runner(store, [int(e.deployment_id) for e in page if e.status.in_flight and e.deployment_id])
    by_wave: dict[int, list[RolloutEnvView]] = {}
    for e in page:
        by_wave.setdefault(e.wave, []).append(_env(e, waiting))
    return by_wave, str(page[-1].env) if more and page else None


def rollout_view(
    store: Store,
    rollout_id: str,
    now: datetime,
    *,
    history: int = 20,
    boards: Dashboards | None = None,
    query: EnvQuery | None = None,
) -> RolloutView:
    """Everything about one rollout a person or a tool needs to decide the next step; `query` picks which
    environments are listed (every wave always shows its counts per status)."""
    rollouts = RolloutStore(store)
    boards = boards or Dashboards()
    query = query or EnvQuery()
    with gc_paused():
        record = rollouts.record(rollout_id)
        state = rollouts.state(rollout_id)
        log = rollouts.events(rollout_id, last=history)
        audit = rollouts.events(rollout_id, kinds=("created", "command", "refused"))
        phase_change = rollouts.events(rollout_id, kinds=("phase",), last=1)
        members = {str(e.env) for e in state.envs}
        users = {str(b.env.ref) for b in module_usage(store.usage_slice(state.module), state.module)}
        since = phase_change[0]["at"] if phase_change else (state.started_at or state.created_at)
        waiting = _WAITING_FOR.get(state.phase, "")
        listed, next_cursor = _page(store, state, query)
        return RolloutView(
            id=state.id,
            module=state.module,
            version=state.version,
            plan=state.plan.id,
            phase=str(state.phase),
            reason=state.reason,
            started_by=state.started_by,
            created_at=state.created_at,
            current_wave=state.current,
            waiting_for=waiting.format(id=state.id) if waiting else None,
            since=since,
            engine=rollouts.driver(rollout_id, now),
            waves=[_wave(state, w, boards, listed.get(w.number, [])) for w in state.waves],
            not_covered=sorted(users - members),
            audit=[_line(e) for e in audit],
            events=[_line(e) for e in log],
            preflight=record.preflight,
            next_cursor=next_cursor,
        )


def _line(entry: dict[str, object]) -> LogLineView:
    return LogLineView.model_validate({k: entry[k] for k in ("at", "kind", "summary", "actor")})
