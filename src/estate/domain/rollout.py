"""The rollout state machine. Pure: `decide(state, event, now) -> Decision`, and nothing else happens here.

The machine's entry point, its transition table and its event handlers are this module; how the
current wave moves forward on its own is `rollout_progress`, the data it reads is `rollout_state`,
the events, actions and log entries are `rollout_events`. It does no I/O, reads no clock (`now`
comes in), draws no random numbers and makes no IDs (deployment IDs come in with observations;
action keys derive from the state), so the same events replay to the same states and actions, in
the engine or in a Temporal workflow.

How it works:

1. A command is checked against `ALLOWED` (which commands fit which rollout phase). A command that
   does not fit is refused with a reason and the state is unchanged. A command whose effect already
   holds (pause twice, abort twice, retarget to the same version) is accepted and changes nothing.
2. The event's handler records what it says (a deployment finished, a gate passed, a wave approved).
3. Unless the rollout is pending, paused or over, `settle` then drives the current wave as far as
   it can go: start deployments up to `max_parallel`, apply `on_failure` once failures exceed the
   tolerance, run exit gates one after the other, promote automatically, finalize. Every step that
   starts something emits an action; every change of phase or status emits a log `Transition`.
4. The rollout phase is derived from the current wave (unless paused or ended) and logged if changed.

The engine persists `Decision.state` and `Decision.log` first and performs `Decision.actions` after;
every action carries a deterministic key, and `outstanding(state)` lists what a resumed engine must
(re)do. See docs/decisions/0003-pure-rollout-state-machine.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from estate.domain.alerts import AlertEffect, FiredAlert
from estate.domain.cohort import evaluate_compare
from estate.domain.deployments import DeploymentKind, DeploymentStatus
from estate.domain.gate_eval import evaluate, more_rounds, subjects
from estate.domain.ids import EnvRef
from estate.domain.plans import ApprovalGate, CompareGate, OnFailure, PrometheusGate
from estate.domain.rollout_events import (
    COMMANDS,
    TARGET,
    Abort,
    Action,
    AlertFired,
    Approve,
    Command,
    DeploymentFinished,
    DeploymentStarted,
    Event,
    FreezesChanged,
    GateSampled,
    Observation,
    Pause,
    Promote,
    Rerun,
    Resume,
    Retarget,
    Rollback,
    SampleGate,
    Start,
    StartDeployment,
    Subject,
    Tick,
    Transition,
)
from estate.domain.rollout_progress import (
    FROZEN,
    Draft,
    approved,
    begin_rollback,
    enter,
    finalize_action,
    gate_action,
    gate_failed,
    hold_wake,
    queue_for_rollback,
    reset_after,
    retry_later,
    retry_wake,
    settle,
    succeed,
    sync_phase,
)
from estate.domain.rollout_state import (
    Approval,
    EnvStatus,
    GateRecord,
    RolloutPhase,
    RolloutState,
    WavePhase,
    approval_gates,
)

Phase = RolloutPhase

#: Which commands fit which rollout phase; every other (phase, command) pair is refused.
ALLOWED: Mapping[RolloutPhase, frozenset[type[Command]]] = MappingProxyType(
    {
        Phase.PENDING: frozenset({Start, Abort, Retarget}),
        Phase.RUNNING: frozenset({Pause, Resume, Abort, Rollback, Retarget}),
        Phase.PAUSED: frozenset({Pause, Resume, Abort, Rollback, Retarget}),
        Phase.AWAITING_APPROVAL: frozenset({Approve, Pause, Resume, Abort, Rollback, Retarget, Rerun}),
        Phase.AWAITING_PROMOTION: frozenset({Promote, Pause, Resume, Abort, Rollback, Retarget, Rerun}),
        Phase.HALTED: frozenset({Approve, Abort, Rollback, Retarget, Rerun}),
        Phase.FAILED: frozenset({Abort, Rollback, Retarget, Rerun}),
        Phase.COMPLETED: frozenset(),
        Phase.ABORTED: frozenset({Abort}),
    }
)

_HINTS: Mapping[RolloutPhase, str] = MappingProxyType(
    {
        Phase.PENDING: "start it first",
        Phase.RUNNING: "wait for the current wave, or pause, roll back or abort it",
        Phase.PAUSED: "resume it first; rollback and abort also work while paused",
        Phase.AWAITING_APPROVAL: "approve the current wave first",
        Phase.AWAITING_PROMOTION: "promote, roll back or rerun the current wave",
        Phase.HALTED: "accept the wave with approve --override, or roll it back, rerun it or abort",
        Phase.FAILED: "retarget and rerun the wave, or abort",
        Phase.COMPLETED: "the rollout is over",
        Phase.ABORTED: "the rollout is over",
    }
)

_RERUNNABLE = frozenset(
    {
        WavePhase.AWAITING_PROMOTION,
        WavePhase.SUCCEEDED,
        WavePhase.FAILED,
        WavePhase.INCONCLUSIVE,
        WavePhase.ERRORED,
        WavePhase.ROLLED_BACK,
    }
)


@dataclass(frozen=True)
class Decision:
    """The outcome of one event: the new state, what to do, what to log, or why it was refused.

    For an observation, `refused` means it was ignored as stale (a deployment or gate evaluation the
    state no longer waits for). `touched` names the environments whose record may differ from the old
    state's: all a store has to write besides the rollout's own small record."""

    state: RolloutState
    actions: tuple[Action, ...] = ()
    log: tuple[Transition, ...] = ()
    refused: str | None = None
    touched: frozenset[EnvRef] = frozenset()


def decide(state: RolloutState, event: Event, now: datetime) -> Decision:
    """Apply one command or observation at time `now`."""
    if isinstance(event, COMMANDS) and type(event) not in ALLOWED[state.phase]:
        return Decision(state, refused=_unfit(state, event))
    draft = Draft(state, now, getattr(event, "actor", None))
    refusal = _HANDLERS[type(event)](draft, event)
    if refusal is not None:
        return Decision(state, refused=refusal)
    if isinstance(event, COMMANDS) and _unchanged(draft, state):  # the command's effect already holds
        return Decision(state)
    settle(draft, retry_gate=isinstance(event, Tick))
    sync_phase(draft, state.phase)
    return Decision(draft.state, tuple(draft.actions), tuple(draft.log), touched=frozenset(draft.touched))


def _unchanged(draft: Draft, state: RolloutState) -> bool:
    """`draft.state == state`, comparing only the environments the draft touched."""
    new = draft.state
    return replace(new, envs=state.envs) == state and all(new.env(r) == state.env(r) for r in draft.touched)


def decide_observations(state: RolloutState, events: Sequence[Observation], now: datetime) -> Decision:
    """Apply a batch of observations, then drive the rollout once.

    What an engine does with every result that arrived since its last turn: one settle instead of one per
    event. Results that arrive together are judged together, so a failure among them stops new starts
    before a slot they freed is refilled. Stale observations are skipped; `refused` lists why, one a line.
    """
    draft = Draft(state, now, None)
    refusals: list[str] = []
    for event in events:
        before = (draft.state, len(draft.actions), len(draft.log))
        refusal = _HANDLERS[type(event)](draft, event)
        if refusal is not None:
            draft.state = before[0]
            del draft.actions[before[1] :], draft.log[before[2] :]
            refusals.append(refusal)
    settle(draft, retry_gate=any(isinstance(e, Tick) for e in events))
    sync_phase(draft, state.phase)
    refused = "\n".join(refusals) or None
    return Decision(draft.state, tuple(draft.actions), tuple(draft.log), refused, frozenset(draft.touched))


def outstanding(state: RolloutState) -> tuple[Action, ...]:
    """What the state waits on: the actions a resumed engine performs again (each is idempotent)."""
    actions: list[Action] = [
        StartDeployment(e.key, e.env, state.module, e.target, e.kind)
        for e in state.envs
        if e.key is not None and e.target is not None and e.kind is not None
    ]
    if state.phase not in FROZEN:  # a paused rollout samples nothing and releases nothing until it resumes
        actions += _driven(state)
    actions += _backoffs(state)
    if state.phase is Phase.COMPLETED:
        actions.append(finalize_action(state))
    return tuple(actions)


def wakes(state: RolloutState) -> tuple[Action, ...]:
    """The timers the state waits on, whatever its phase: its exit gate's next sampling round or the end of a
    bake, the end of a hold, back-offs after transient errors. An engine keeps no other timer."""
    return (*_driven(state), *_backoffs(state))


def _driven(state: RolloutState) -> list[Action]:
    wave = state.current_wave
    return [a for a in (gate_action(state, wave), hold_wake(state, wave)) if a is not None]


def _backoffs(state: RolloutState) -> list[Action]:
    return [retry_wake(state, e) for e in state.envs.waiting() if e.wave == state.current and e.key is None]


def acts_on(state: RolloutState, command: Command) -> tuple[EnvRef, ...]:
    """The environments a command would act on, as access control judges it: promote the next wave, roll back
    or rerun the wave named (default: the current one), approve, pause, resume or abort the current wave, start
    or retarget the whole rollout."""
    if isinstance(command, Start | Retarget):
        return tuple(e.env for e in state.envs)
    if isinstance(command, Promote):
        return state.wave(min(state.current + 1, len(state.waves))).envs
    if isinstance(command, Rollback | Rerun) and command.wave is not None and 1 <= command.wave <= len(state.waves):
        return state.wave(command.wave).envs
    return state.current_wave.envs


def _unfit(state: RolloutState, command: Command) -> str:
    wave = state.current_wave
    return (
        f"cannot {type(command).__name__.lower()} rollout {state.id}: it is {state.phase}"
        f" (wave {wave.number} {wave.phase}); {_HINTS[state.phase]}"
    )


# -- commands ------------------------------------------------------------------------------------


def _start(d: Draft, event: Start) -> str | None:
    d.state = replace(d.state, phase=Phase.RUNNING, started_at=d.now)
    enter(d, 1)
    return None


def _promote(d: Draft, event: Promote) -> str | None:
    succeed(d, d.state.current, "promoted")
    return None


def _approve(d: Draft, event: Approve) -> str | None:
    if d.state.phase is Phase.HALTED:
        return _override(d, event)
    state, wave = d.state, d.state.current_wave
    pending = [(i, g) for i, g in approval_gates(state.spec(wave.number)) if i not in approved(wave)]
    eligible = [(i, g) for i, g in pending if _may_approve(state, event, g.role, g.four_eyes)]
    if not eligible:
        return _why_not_approver(state, event, wave.number, pending)
    new = tuple(Approval(i, event.actor, d.now) for i, _ in eligible)
    d.put_wave(replace(wave, approvals=wave.approvals + new))
    for i, gate in eligible:
        d.note(Subject.of_wave(wave.number, i), "awaiting_approval", "approved", f"role {gate.role}")
    return None


def _override(d: Draft, event: Approve) -> str | None:
    state, wave = d.state, d.state.current_wave
    n, envs = wave.number, state.envs_of(wave.number)
    if not event.override:
        return (
            f"wave {n} is {wave.phase} ({wave.reason}); approve --override accepts it as it is,"
            " or roll it back, rerun it or abort"
        )
    if state.in_flight(n):
        return f"wave {n} has {state.in_flight(n)} deployments in flight; wait for them to finish"
    if any(
        e.status is EnvStatus.ROLLED_BACK or (e.status is EnvStatus.FAILED and e.kind is DeploymentKind.ROLLBACK)
        for e in envs
    ):
        return f"wave {n} was partly rolled back; roll it back again or rerun it instead of accepting it"
    gates = approval_gates(state.spec(n))
    if gates and not any(_may_approve(state, event, g.role, g.four_eyes) for _, g in gates):
        return _why_not_approver(state, event, n, gates)
    for env in envs:
        if env.status is EnvStatus.PENDING:
            d.env_to(env, EnvStatus.SKIPPED, "wave accepted by override")
    d.put_wave(replace(wave, overridden_by=event.actor))
    if n == len(state.waves):
        succeed(d, n, "accepted by override")
    else:
        d.wave_to(n, WavePhase.AWAITING_PROMOTION, "accepted by override")
    return None


def _pause(d: Draft, event: Pause) -> str | None:
    if d.state.phase is not Phase.PAUSED:
        d.state = replace(d.state, phase=Phase.PAUSED, reason=f"paused by {event.actor}")
    return None


def _resume(d: Draft, event: Resume) -> str | None:
    if d.state.phase is Phase.PAUSED:
        d.state = replace(d.state, phase=Phase.RUNNING, reason="")
    return None


def _abort(d: Draft, event: Abort) -> str | None:
    if d.state.phase is Phase.ABORTED:
        return None
    for env in d.state.envs_of(d.state.current):
        if env.status is EnvStatus.PENDING and d.state.phase is not Phase.PENDING:
            d.env_to(env, EnvStatus.SKIPPED, "rollout aborted")
    d.state = replace(d.state, phase=Phase.ABORTED)
    return None


def _retarget(d: Draft, event: Retarget) -> str | None:
    if event.version != d.state.version:
        d.note(TARGET, d.state.version, event.version)
        d.state = replace(d.state, version=event.version, retargeted_by=event.actor)
    return None


def _rollback(d: Draft, event: Rollback) -> str | None:
    state = d.state
    n = state.current if event.wave is None else event.wave
    refusal = _check_wave_number(state, n, "rolled back")
    if refusal is None and n < state.current and state.in_flight(state.current):
        refusal = (
            f"wave {state.current} has {state.in_flight(state.current)} deployments in flight;"
            f" wait for them to finish before rolling back wave {n}"
        )
    if refusal is not None:
        return refusal
    if state.phase is Phase.PAUSED:
        d.state = replace(d.state, phase=Phase.RUNNING)  # a rollback is an order to act now
    if n == state.current and state.current_wave.phase is WavePhase.ROLLED_BACK:
        return None
    reset_after(d, n, f"wave {n} rolled back")
    begin_rollback(d, n, "rollback requested")
    return None


def _rerun(d: Draft, event: Rerun) -> str | None:
    state = d.state
    n = state.current if event.wave is None else event.wave
    refusal = _check_wave_number(state, n, "rerun")
    if refusal is not None:
        return refusal
    wave, envs = state.wave(n), state.envs_of(n)
    if wave.phase not in _RERUNNABLE:
        return f"wave {n} is {wave.phase}; only a wave that passed, failed, was inconclusive or rolled back reruns"
    if not envs:
        return f"wave {n} has no environments"
    if state.in_flight(state.current):
        return f"wave {state.current} has {state.in_flight(state.current)} deployments in flight; wait for them"
    if event.only_failed and all(e.status is EnvStatus.SUCCEEDED for e in envs):
        return f"no environment of wave {n} failed; rerun without --only-failed to redeploy them all"
    reset_after(d, n, f"wave {n} rerun")
    enter(d, n, only_failed=event.only_failed)
    return None


def _check_wave_number(state: RolloutState, n: int, verb: str) -> str | None:
    if not 1 <= n <= len(state.waves):
        return f"there is no wave {n}: the plan has {len(state.waves)} waves"
    if n > state.current:
        return f"wave {n} cannot be {verb}: it has not started (the current wave is {state.current})"
    return None


def _may_approve(state: RolloutState, event: Approve, role: str, four_eyes: bool) -> bool:
    return role in event.roles and not (four_eyes and _chose_what_is_deployed(state, event.actor))


def _chose_what_is_deployed(state: RolloutState, actor: str) -> str | None:
    """Why four-eyes excludes `actor`: they started the rollout, or last retargeted it; None otherwise."""
    if actor == state.started_by:
        return "who started the rollout"
    if actor == state.retargeted_by:
        return f"who last retargeted it (to {state.version})"
    return None


def _why_not_approver(state: RolloutState, event: Approve, n: int, gates: Sequence[tuple[int, ApprovalGate]]) -> str:
    roles = sorted({g.role for _, g in gates})
    excluded = _chose_what_is_deployed(state, event.actor)
    if any(g.role in event.roles and g.four_eyes for _, g in gates) and excluded:
        return (
            f"four-eyes: wave {n} must be approved by someone other than {event.actor}, {excluded}: "
            "whoever chose what is deployed cannot approve it"
        )
    if not gates:
        return f"wave {n} has no approval gate waiting"
    return f"{event.actor} does not hold a role that approves wave {n} ({', '.join(roles)})"


# -- observations --------------------------------------------------------------------------------


def _deployment_started(d: Draft, event: DeploymentStarted) -> str | None:
    env = d.state.env(event.env)
    if env is None or env.key != event.key:
        return f"stale: no deployment {event.key} is in flight for {event.env}"
    if env.deployment_id != event.deployment_id:
        d.put_env(replace(env, deployment_id=event.deployment_id))
    return None


def _deployment_finished(d: Draft, event: DeploymentFinished) -> str | None:
    env = d.state.env(event.env)
    if env is None or env.key is None or env.key != event.key:
        return f"stale: no deployment {event.key} is in flight for {event.env}"
    done: dict[str, Any] = {"key": None, "deployment_id": event.deployment_id, "errors": 0}
    rollback = env.kind is DeploymentKind.ROLLBACK
    rolling_back = d.state.wave(env.wave).phase is WavePhase.ROLLING_BACK
    if event.status not in (DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED):
        # Errored (or cancelled): nothing judged the change, so it is never a failure and never triggers
        # a rollback; a transient error is retried after a back-off, any other waits for a human.
        why = f"{'rollback ' if rollback else ''}{event.status}: {event.reason}"
        if event.retryable and (rollback or not rolling_back):
            retry_later(d, env, why, **{**done, "errors": env.errors})
            return None
        d.env_to(env, EnvStatus.ERRORED, why, reason=why, retry_at=None, **done)
    elif rollback and event.succeeded:
        d.env_to(env, EnvStatus.ROLLED_BACK, version=env.previous_version, changed=False, reason="", **done)
    elif rollback:
        why = f"rollback failed: {event.reason}"
        d.env_to(env, EnvStatus.FAILED, why, reason=why, **done)
    elif event.succeeded:
        d.env_to(env, EnvStatus.SUCCEEDED, version=env.target, reason=event.reason, finished_at=d.now, **done)
    else:
        d.env_to(env, EnvStatus.FAILED, event.reason, reason=event.reason, **done)
    if rolling_back and not rollback:  # a deploy that ended while its wave rolls back is rolled back too
        queue_for_rollback(d, d.state.env(event.env) or env)
    return None


def _gate_sampled(d: Draft, event: GateSampled) -> str | None:
    state = d.state
    if not 1 <= event.wave <= len(state.waves) or state.phase.is_terminal:
        return f"stale: rollout {state.id} waits for no gate {event.key}"
    wave = state.wave(event.wave)
    action = gate_action(state, wave)
    if not isinstance(action, SampleGate) or action.key != event.key:
        return f"stale: wave {event.wave} is not waiting for gate sample {event.key}"
    wave = replace(wave, rounds=wave.rounds + 1, samples=wave.samples + event.samples)
    gate = state.spec(wave.number).gates[action.gate_index]
    assert isinstance(gate, PrometheusGate | CompareGate)
    expected = subjects(gate, state.spec(wave.number).name, [str(e) for e in action.envs])
    if more_rounds(gate, wave.rounds, wave.samples, expected):
        d.put_wave(wave)
        d.actions.append(gate_action(d.state, wave) or action)
        return None
    if isinstance(gate, CompareGate):
        judgement = evaluate_compare(gate, wave.samples, expected)
    else:
        judgement = evaluate(gate, wave.samples, expected)
    record = GateRecord(action.gate_index, judgement.verdict, d.now, judgement.reason, judgement)
    d.put_wave(replace(wave, samples=(), gates=(*wave.gates, record)))
    d.note(Subject.of_wave(wave.number, action.gate_index), "evaluating", judgement.verdict)
    return None


def _freezes_changed(d: Draft, event: FreezesChanged) -> str | None:
    if event.freezes != d.state.freezes:
        d.state = replace(d.state, freezes=event.freezes)
    return None


#: Phases of the current wave in which an alert for one of its environments stops the line (a gate failure).
_STOPPABLE = frozenset(
    {WavePhase.AWAITING_APPROVAL, WavePhase.DEPLOYING, WavePhase.VERIFYING, WavePhase.AWAITING_PROMOTION}
)


def _alert_fired(d: Draft, event: AlertFired) -> str | None:
    """An alert firing for an environment of the current wave fails that wave (its `on_failure` applies); for
    an environment this rollout already changed in another wave, it pauses the rollout. Each firing acts once
    (Alertmanager repeats its notifications); a resolved alert never reaches here."""
    state, alert = d.state, event.alert
    env = state.env(event.env)
    if state.phase.is_terminal:
        return f"rollout {state.id} is over: alert {alert.name} ignored"
    if env is None:
        return f"{event.env} is not in rollout {state.id}: alert {alert.name} ignored"
    if any(a.alert.key == alert.key for w in state.waves for a in w.alerts):
        return None  # the same firing, notified again: it already acted
    n, current = env.wave, state.current_wave
    why = f"alert {alert.name} firing for {env.env}"
    if n == current.number:  # a wave that already stopped (halted, rolling back) only keeps the evidence
        effect = AlertEffect.FAILED_WAVE if current.phase in _STOPPABLE else AlertEffect.RECORDED
    elif n > current.number and not env.changed:
        return f"{env.env} is in wave {n}, which rollout {state.id} has not deployed: alert {alert.name} ignored"
    elif state.phase in _PAUSABLE and current.phase is not WavePhase.ROLLING_BACK:
        effect = AlertEffect.PAUSED
    else:
        effect = AlertEffect.RECORDED
    wave = state.wave(n)
    d.put_wave(replace(wave, alerts=(*wave.alerts, FiredAlert(alert, env.env, d.now, effect, wave.run))))
    if effect is AlertEffect.FAILED_WAVE:
        if state.phase is Phase.PAUSED and state.spec(n).on_failure is OnFailure.ROLLBACK:
            d.state = replace(d.state, phase=Phase.RUNNING, reason="")  # rolling back is an order to act now
        gate_failed(d, n, why, f"alert {alert.name}")
    elif effect is AlertEffect.PAUSED:
        d.state = replace(d.state, phase=Phase.PAUSED, reason=f"{why} (wave {n}, already deployed): paused")
    return None


_PAUSABLE = frozenset({Phase.RUNNING, Phase.AWAITING_APPROVAL, Phase.AWAITING_PROMOTION})


def _tick(d: Draft, event: Tick) -> str | None:
    return None


_HANDLERS: Mapping[type[Any], Callable[[Draft, Any], str | None]] = MappingProxyType(
    {
        Start: _start,
        Promote: _promote,
        Approve: _approve,
        Pause: _pause,
        Resume: _resume,
        Abort: _abort,
        Rollback: _rollback,
        Retarget: _retarget,
        Rerun: _rerun,
        DeploymentStarted: _deployment_started,
        DeploymentFinished: _deployment_finished,
        GateSampled: _gate_sampled,
        Tick: _tick,
        FreezesChanged: _freezes_changed,
        AlertFired: _alert_fired,
    }
)
