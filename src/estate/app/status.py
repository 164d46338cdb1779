"""What `estate rollout status` shows: the rollout view, built from the rollout's outline (its own record and
its waves, with counts per status), one page of its environments and its log; never from the whole state,
so a rollout of 100,000 environments answers as fast as one of ten."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from estate.app.freezes import freeze_view
from estate.app.views.rollouts import (
    AlertView,
    CohortView,
    ComparisonView,
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
from estate.domain.alerts import FiredAlert
from estate.domain.gate_eval import CohortSummary, Comparison
from estate.domain.ids import EnvRef
from estate.domain.links import grafana_explore_url, prometheus_graph_url
from estate.domain.plans import ApprovalGate, BakeGate, Gate, PrometheusGate, RolloutPlan, describe_gate, gate_kind
from estate.domain.rollout_state import EnvState, EnvStatus, GateRecord, RolloutPhase, RolloutState, WaveState
from estate.domain.usage import module_usage
from estate.errors import InputError
from estate.store import Store
from estate.store.freezes import FreezeStore
from estate.store.rollouts import EnvFilter, RolloutStore
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
            baseline=s.baseline,
        )
        for s in record.judgement.subjects
    ]
    comparison = record.judgement.comparison
    return GateDetails(
        reason=record.reason, subjects=subjects, comparison=_comparison(comparison) if comparison else None
    )


def _cohort(c: CohortSummary) -> CohortView:
    return CohortView(envs=c.envs, samples=c.samples, median=c.median, mean=c.mean)


def _comparison(c: Comparison) -> ComparisonView:
    return ComparisonView(
        new=_cohort(c.new),
        baseline=_cohort(c.baseline),
        better=c.better,
        tolerance=c.tolerance,
        confidence=c.confidence,
        statistic=c.statistic,
        p_value=c.p_value,
        effect_size=c.effect_size,
        median_change=c.median_change,
        relative_change=c.relative_change,
    )


def _alert(a: FiredAlert) -> AlertView:
    return AlertView(
        name=a.alert.name,
        env=str(a.env),
        labels=dict(a.alert.labels),
        starts_at=a.alert.starts_at,
        generator_url=a.alert.generator_url,
        received_at=a.received_at,
        effect=str(a.effect),
        run=a.run,
    )


def _gates(state: RolloutState, wave: WaveState, boards: Dashboards) -> list[GateView]:
    out = []
    for index, gate in enumerate(state.spec(wave.number).gates):
        record = wave.record(index)
        approvals = [a for a in wave.approvals if a.gate_index == index]
        result = str(record.verdict) if record else ("approved" if approvals else None)
        out.append(
            GateView(
                index=index,
                kind=gate_kind(gate),
                spec=describe_gate(gate),
                result=result,
                at=record.at if record else (approvals[-1].at if approvals else None),
                details=_details(record, wave, gate, boards) if record else None,
                approved_by=[a.actor for a in approvals],
                min=gate.min if isinstance(gate, PrometheusGate) else None,
                max=gate.max if isinstance(gate, PrometheusGate) else None,
                four_eyes=isinstance(gate, ApprovalGate) and gate.four_eyes,
            )
        )
    return out


def _wave(
    state: RolloutState, wave: WaveState, boards: Dashboards, counts: dict[str, int], envs: list[RolloutEnvView]
) -> WaveView:
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
        counts=counts,
        envs=envs,
        hold=wave.hold,
        hold_until=wave.hold_until,
        change_windows=[str(w) for w in spec.change_windows],
        alerts=[_alert(a) for a in wave.alerts],
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


def _page(
    rollouts: RolloutStore, rollout_id: str, plan: RolloutPlan, query: EnvQuery
) -> tuple[dict[int, list[RolloutEnvView]], str | None]:
    """The environments `query` selects, per wave, and the cursor of the next page (None: this is the last)."""
    if query.summary:
        return {}, None
    try:
        status = None if query.state is None else EnvStatus(query.state)
        after = None if query.after is None else EnvRef.parse(query.after)
    except ValueError as exc:
        known = ", ".join(s.value for s in EnvStatus)
        raise InputError(f"bad environment query: {exc}", hint=f"states: {known}; cursors: PROJECT/ENV") from None
    wave = None if query.wave is None else plan.wave_number(query.wave)
    where = EnvFilter(wave, status, query.project, query.env_type, query.labels)
    page, more = rollouts.envs(rollout_id, where, after=after, limit=query.limit)
    # A deployment sent to a runner pool that no worker has taken yet waits for a runner: never failed.
    waiting = waiting_for_runner(
        rollouts.store, [int(e.deployment_id) for e in page if e.status.in_flight and e.deployment_id]
    )
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
    outline = rollouts.outline(rollout_id)
    record, state = outline.record, outline.state
    listed, next_cursor = _page(rollouts, rollout_id, state.plan, query)
    log = rollouts.events(rollout_id, last=history)
    audit = rollouts.events(rollout_id, kinds=("created", "command", "refused"))
    phase_change = rollouts.events(rollout_id, kinds=("phase",), last=1)
    # Finding them reads every environment of the estate: the summary and the pages after the first skip it.
    listing = not query.summary and query.after is None
    outside = store.usage_slice(state.module, outside_rollout=rollout_id) if listing else None
    since = phase_change[0]["at"] if phase_change else (state.started_at or state.created_at)
    waiting = _WAITING_FOR.get(state.phase, "").format(id=state.id)
    if state.phase is RolloutPhase.RUNNING and state.current_wave.hold:
        wave = state.current_wave
        until = f" (by itself at {wave.hold_until:%Y-%m-%d %H:%M:%S} UTC)" if wave.hold_until else ""
        waiting = f"wave {wave.number} to be released{until}: {wave.hold}"
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
        waiting_for=waiting or None,
        since=since,
        engine=rollouts.driver(rollout_id, now),
        waves=[
            _wave(state, w, boards, dict(outline.counts.get(w.number, {})), listed.get(w.number, []))
            for w in state.waves
        ],
        not_covered=sorted(str(b.env.ref) for b in module_usage(outside, state.module)) if outside else [],
        audit=[_line(e) for e in audit],
        events=[_line(e) for e in log],
        preflight=record.preflight,
        next_cursor=next_cursor,
        freezes=[freeze_view(f) for f in FreezeStore(store).active(now)],
    )


def _line(entry: dict[str, object]) -> LogLineView:
    return LogLineView.model_validate({k: entry[k] for k in ("at", "kind", "summary", "actor")})
