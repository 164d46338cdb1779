"""How the current wave of a rollout moves forward on its own; part of the rollout state machine.

`estate.domain.rollout` handles each event, then calls `settle` here, which drives the current wave
as far as it can go without new input: start deployments up to `max_parallel` (an environment that
errored transiently waits out its back-off first; none while a freeze covers its env type or the wave is
outside its change windows: the wave is *held* and says until when), apply `on_failure` once failures exceed the
tolerance, halt on an error that will not pass by itself, run exit gates one after the other (bake
timed with `now`, metric gates sampled round by round by the engine, judged here), promote
automatically, finalize after the last wave. Every step that starts something appends an action,
every change of phase or status a log `Transition`. Pure, like the rest of the machine: no I/O, no
clock, no randomness; waiting is a `WakeAt` action, never a sleep.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from estate.domain.deployments import DeploymentKind
from estate.domain.freezes import Hold, freeze_hold, window_hold
from estate.domain.gate_eval import Verdict
from estate.domain.ids import EnvRef
from estate.domain.plans import BakeGate, CompareGate, OnFailure, PrometheusGate, Wave, gate_kind
from estate.domain.rollout_events import (
    ROLLOUT,
    Action,
    Finalize,
    MarkDefective,
    SampleGate,
    StartDeployment,
    Subject,
    SubjectKind,
    Transition,
    WakeAt,
)
from estate.domain.rollout_state import (
    EnvState,
    EnvStatus,
    GateRecord,
    RolloutPhase,
    RolloutState,
    WavePhase,
    WaveState,
    approval_gates,
    exit_gate_indexes,
)

Phase = RolloutPhase

#: Rollout phases in which nothing is driven forward.
FROZEN = frozenset({Phase.PENDING, Phase.PAUSED, Phase.COMPLETED, Phase.ABORTED})

#: Rollout phases in which nothing moves until a human acts (an engine's work for them is done).
WAITING = frozenset(
    {Phase.PENDING, Phase.PAUSED, Phase.AWAITING_APPROVAL, Phase.AWAITING_PROMOTION, Phase.HALTED, Phase.FAILED}
)


def held(state: RolloutState) -> bool:
    """The current wave is held back (a freeze, outside its change windows) with nothing of it in flight."""
    wave = state.current_wave
    return bool(wave.hold) and wave.phase is WavePhase.DEPLOYING and not state.in_flight(wave.number)


_PHASE_OF_WAVE: Mapping[WavePhase, RolloutPhase] = MappingProxyType(
    {
        WavePhase.PENDING: Phase.RUNNING,
        WavePhase.AWAITING_APPROVAL: Phase.AWAITING_APPROVAL,
        WavePhase.DEPLOYING: Phase.RUNNING,
        WavePhase.VERIFYING: Phase.RUNNING,
        WavePhase.ROLLING_BACK: Phase.RUNNING,
        WavePhase.AWAITING_PROMOTION: Phase.AWAITING_PROMOTION,
        WavePhase.SUCCEEDED: Phase.COMPLETED,  # only the last wave stays current once it succeeded
        WavePhase.FAILED: Phase.HALTED,
        WavePhase.INCONCLUSIVE: Phase.HALTED,
        WavePhase.ERRORED: Phase.HALTED,
        WavePhase.ROLLED_BACK: Phase.FAILED,
    }
)

#: Transient errors an environment may have in a row before it halts its wave for a human.
MAX_TRANSIENT_ERRORS = 8


def backoff(errors: int) -> timedelta:
    """How long to wait before trying again after the `errors`-th transient error in a row: 5 s, doubling,
    at most 5 minutes (deterministic: the same history replays to the same schedule)."""
    return timedelta(seconds=min(5 * 2 ** (max(errors, 1) - 1), 300))


class Draft:
    """The decision being built: the state so far, the actions and the log, for one event."""

    def __init__(self, state: RolloutState, now: datetime, actor: str | None) -> None:
        self.state = state
        self.now = now
        self.actor = actor
        self.actions: list[Action] = []
        self.log: list[Transition] = []
        self.touched: set[EnvRef] = set()  # environments whose record was replaced

    def note(self, subject: Subject, before: str, after: str, reason: str = "") -> None:
        self.log.append(Transition(self.now, subject, before, after, reason, self.actor))

    def put_wave(self, wave: WaveState) -> None:
        waves = list(self.state.waves)
        waves[wave.number - 1] = wave
        self.state = replace(self.state, waves=tuple(waves))

    def wave_to(self, number: int, phase: WavePhase, reason: str = "", **changes: Any) -> None:
        wave = self.state.wave(number)
        if wave.phase != phase:
            self.note(Subject.of_wave(number), wave.phase, phase, reason)
            changes = {"hold": "", "hold_until": None, **changes}  # only a deploying wave is held
        self.put_wave(replace(wave, phase=phase, reason=reason, **changes))

    def env_to(self, env: EnvState, status: EnvStatus, why: str = "", **changes: Any) -> None:
        if env.status != status:
            self.note(Subject(SubjectKind.ENV, env=env.env), env.status, status, why)
        self.put_env(replace(env, status=status, **changes))

    def put_env(self, env: EnvState) -> None:
        state = self.state.with_env(env)
        if state is not self.state:
            self.touched.add(env.env)
            self.state = state


def approved(wave: WaveState) -> set[int]:
    return {a.gate_index for a in wave.approvals}


def settle(d: Draft, *, retry_gate: bool = False) -> None:
    """Drive the current wave until it has to wait; with `retry_gate`, ask again for an unanswered gate."""
    if d.state.phase in FROZEN:
        return
    while _step(d):
        pass
    if retry_gate:
        action = gate_action(d.state, d.state.current_wave)
        if action is not None and action not in d.actions:
            d.actions.append(action)


def _step(d: Draft) -> bool:
    """Move the current wave on by one transition; False when it has to wait for something."""
    wave = d.state.current_wave
    match wave.phase:
        case WavePhase.AWAITING_APPROVAL:
            return _drive_approval(d, wave)
        case WavePhase.DEPLOYING:
            return _drive_deploy(d, wave)
        case WavePhase.VERIFYING:
            return _drive_verify(d, wave)
        case WavePhase.ROLLING_BACK:
            return _drive_rollback(d, wave)
        case _:
            return False


def _drive_approval(d: Draft, wave: WaveState) -> bool:
    if any(i not in approved(wave) for i, _ in approval_gates(d.state.spec(wave.number))):
        return False
    d.wave_to(wave.number, WavePhase.DEPLOYING, "approved")
    return True


def _drive_deploy(d: Draft, wave: WaveState) -> bool:
    n, spec, envs = wave.number, d.state.spec(wave.number), d.state.envs
    total = len(wave.envs)
    failed = envs.count(n, EnvStatus.FAILED)  # errored environments never count
    if failed > spec.failure_tolerance.allowed(total):
        reason = f"{failed} of {total} environments failed (tolerance {spec.failure_tolerance})"
        _on_failure(d, n, reason)
        return True
    in_flight = d.state.in_flight(n)
    if envs.count(n, EnvStatus.ERRORED):  # start nothing more; once the wave is quiet, a human decides
        if in_flight:
            return False
        errored = [e for e in d.state.envs_of(n) if e.status is EnvStatus.ERRORED]
        d.wave_to(n, WavePhase.ERRORED, _errored_reason(errored))
        return True
    pending = envs.count(n, EnvStatus.PENDING)
    starting, hold = _startable(d, n, spec, max(max(spec.max_parallel, 1) - in_flight, 0), pending)
    _hold(d, n, hold)
    for env in starting:
        _start_deployment(d, env, DeploymentKind.DEPLOY)
    if pending or in_flight:
        return False
    d.wave_to(wave.number, WavePhase.VERIFYING, verify_started_at=d.now)
    _next_gate(d, wave.number)
    return True


def _startable(d: Draft, n: int, spec: Wave, slots: int, pending: int) -> tuple[list[EnvState], Hold | None]:
    """The environments of wave `n` to deploy now (at most `slots`), and what holds the others back: the wave's
    change windows, or freezes of their env types."""
    if not pending:
        return [], None
    closed = window_hold(spec.change_windows, d.now)
    if closed is not None:
        return [], closed
    envs, types = d.state.envs, d.state.wave(n).env_types
    holds: dict[str, Hold | None] = {t: freeze_hold(d.state.freezes, t, d.now) for t in types}
    if types and not any(holds.values()):
        return envs.next_up(n, d.now, slots), None  # no freeze covers this wave: no need to look at each
    if types and all(holds.values()):
        return [], next(h for h in holds.values() if h is not None)  # every environment of it is frozen
    free: list[EnvState] = []
    held: Hold | None = None
    for env in envs.next_up(n, d.now, pending):  # some are frozen, some not: look at each candidate
        if env.env_type not in holds:
            holds[env.env_type] = freeze_hold(d.state.freezes, env.env_type, d.now)
        frozen = holds[env.env_type]
        if frozen is None:
            free.append(env)
        elif held is None:
            held = frozen
        if len(free) >= slots and held is not None:
            break
    return free[:slots], held


def _hold(d: Draft, n: int, hold: Hold | None) -> None:
    """Record what holds wave `n` back (or that nothing does any more), and wake up when it may end."""
    wave = d.state.wave(n)
    text, until = (hold.reason, hold.until) if hold else ("", None)
    if (wave.hold, wave.hold_until) == (text, until):
        return
    if text and not wave.hold:
        d.note(Subject.of_wave(n), wave.phase, "held", text)
    elif wave.hold and not text:
        d.note(Subject.of_wave(n), "held", wave.phase, "no longer held")
    d.put_wave(replace(wave, hold=text, hold_until=until))
    wake = hold_wake(d.state, d.state.wave(n))
    if wake is not None:
        d.actions.append(wake)


def hold_wake(state: RolloutState, wave: WaveState) -> WakeAt | None:
    """The timer that ends a hold by itself (a freeze with an end, the next change window)."""
    if wave.hold_until is None or wave.phase is not WavePhase.DEPLOYING:
        return None
    return WakeAt(f"{state.id}:wave-{wave.number}:run-{wave.run}:hold-{wave.hold_until.isoformat()}", wave.hold_until)


def _errored_reason(errored: list[EnvState]) -> str:
    shown = "; ".join(f"{e.env}: {e.reason}" for e in errored[:3])
    more = f"; and {len(errored) - 3} more" if len(errored) > 3 else ""
    return f"{len(errored)} environment(s) errored (not a failure of the change): {shown}{more}"


def _drive_verify(d: Draft, wave: WaveState) -> bool:
    n, index = wave.number, wave.gate_index
    if index is None:
        return False
    gate = d.state.spec(n).gates[index]
    if isinstance(gate, BakeGate):
        return _drive_bake(d, wave, index, gate)
    record = wave.record(index)
    if record is None:
        return False
    if record.verdict is Verdict.PASSED:
        _next_gate(d, n)
    elif record.verdict is Verdict.FAILED:
        gate_failed(d, n, f"gate {index} failed", f"gate {index} ({gate_kind(gate)})")
    else:
        d.wave_to(n, WavePhase.INCONCLUSIVE, f"gate {index} was inconclusive")
    return True


def _drive_bake(d: Draft, wave: WaveState, index: int, gate: BakeGate) -> bool:
    if d.now < _bake_ends(wave, gate):
        return False
    record = GateRecord(index, Verdict.PASSED, d.now, f"baked {gate.seconds}s")
    d.put_wave(replace(wave, gates=(*wave.gates, record)))
    d.note(Subject.of_wave(wave.number, index), "baking", Verdict.PASSED, record.reason)
    _next_gate(d, wave.number)
    return True


def _drive_rollback(d: Draft, wave: WaveState) -> bool:
    n, spec = wave.number, d.state.spec(wave.number)
    in_flight = d.state.in_flight(n)
    slots = max(max(spec.max_parallel, 1) - in_flight, 0)
    starting = d.state.envs.next_up(n, d.now, slots, rollback=True)
    for env in starting:
        _start_deployment(d, env, DeploymentKind.ROLLBACK)
    if d.state.envs.queued(n) or in_flight or starting:
        return False
    stuck = [str(e.env) for e in d.state.envs_of(n) if e.changed]
    if stuck:
        d.wave_to(n, WavePhase.FAILED, f"rollback did not restore {', '.join(stuck)}")
    else:
        d.wave_to(n, WavePhase.ROLLED_BACK, wave.reason)
    return True


def _start_deployment(d: Draft, env: EnvState, kind: DeploymentKind) -> None:
    attempts = env.attempts + 1
    key = f"{d.state.id}:{env.env}:{kind}-{attempts}"
    deploy = kind is DeploymentKind.DEPLOY
    version = d.state.version if deploy else env.previous_version
    status = EnvStatus.DEPLOYING if deploy else EnvStatus.ROLLING_BACK
    d.env_to(
        env,
        status,
        version,
        attempts=attempts,
        key=key,
        kind=kind,
        target=version,
        deployment_id=None,
        changed=env.changed or deploy,
        reason="",
        retry_at=None,
        queued=False,
    )
    d.actions.append(StartDeployment(key, env.env, d.state.module, version, kind))


def retry_later(d: Draft, env: EnvState, reason: str, **done: Any) -> None:
    """`env`'s deployment errored transiently (`reason`): try it again after a back-off (a rollback goes back
    to the wave's rollback queue), or, after too many errors in a row, leave it errored for a human."""
    errors = env.errors + 1
    if errors > MAX_TRANSIENT_ERRORS:
        why = f"{reason} (gave up after {MAX_TRANSIENT_ERRORS} retries)"
        d.env_to(env, EnvStatus.ERRORED, why, **{**done, "reason": why, "errors": 0, "retry_at": None})
        return
    when = d.now + backoff(errors)
    why = f"{reason}; retry {errors} of {MAX_TRANSIENT_ERRORS} at {when:%H:%M:%S}"
    rollback = env.kind is DeploymentKind.ROLLBACK
    status = EnvStatus.ERRORED if rollback else EnvStatus.PENDING  # an errored rollback waits in the queue
    d.env_to(env, status, why, **{**done, "reason": why, "errors": errors, "retry_at": when})
    if rollback:
        queue_for_rollback(d, d.state.env(env.env) or env)
    d.actions.append(retry_wake(d.state, d.state.env(env.env) or env))


def retry_wake(state: RolloutState, env: EnvState) -> WakeAt:
    """The timer that ends `env`'s back-off."""
    assert env.retry_at is not None
    return WakeAt(f"{state.id}:{env.env}:retry-{env.errors}", env.retry_at)


def gate_failed(d: Draft, n: int, reason: str, what: str) -> None:
    """A gate of wave `n` said no (`what` failed, a gate or an alert): apply `on_failure`; with the plan's
    `mark_defective_on_failure`, the version this run deployed is marked defective as well."""
    _on_failure(d, n, reason)
    state = d.state
    if state.plan.mark_defective_on_failure:
        wave = state.wave(n)
        why = f"failed {what} of wave {n} ({state.spec(n).name}) in rollout {state.id}"
        key = f"{state.id}:wave-{n}:run-{wave.run}:defective"
        d.actions.append(MarkDefective(key, state.module, state.version, why))


def _on_failure(d: Draft, n: int, reason: str) -> None:
    if d.state.spec(n).on_failure is OnFailure.ROLLBACK:
        begin_rollback(d, n, reason)
    else:
        d.wave_to(n, WavePhase.FAILED, reason)


def begin_rollback(d: Draft, n: int, reason: str) -> None:
    """Roll wave `n` back: queue every environment this rollout changed there that is not in flight
    (in-flight deploys join the queue when they end). On a wave already rolling back, this queues
    again the environments whose rollback failed, and changes nothing else."""
    wave, envs = d.state.wave(n), d.state.envs_of(n)
    queue = [e for e in envs if e.changed and not e.status.in_flight]
    if wave.phase is not WavePhase.ROLLING_BACK:
        for env in envs:
            if env.status is EnvStatus.PENDING and not env.changed:
                d.env_to(env, EnvStatus.SKIPPED, "wave rolled back")
    for env in queue:
        queue_for_rollback(d, d.state.env(env.env) or env)
    if wave.phase is not WavePhase.ROLLING_BACK:
        d.wave_to(n, WavePhase.ROLLING_BACK, reason, gate_index=None)


def queue_for_rollback(d: Draft, env: EnvState) -> None:
    """`env` of a wave rolling back finished deploying: queue it (the queue keeps the wave's order)."""
    d.put_env(replace(env, queued=True))


def _next_gate(d: Draft, n: int) -> None:
    """Ask for the first exit gate without a result, or pass the wave when there is none left."""
    wave, spec = d.state.wave(n), d.state.spec(n)
    remaining = [i for i in exit_gate_indexes(spec) if wave.record(i) is None]
    if not remaining:
        _gates_passed(d, n)
        return
    wave = replace(wave, gate_index=remaining[0], gate_started_at=d.now, rounds=0, samples=())
    d.put_wave(wave)
    action = gate_action(d.state, wave)
    if action is not None:
        d.actions.append(action)


def _gates_passed(d: Draft, n: int) -> None:
    if n == len(d.state.waves):
        succeed(d, n, "last wave passed its gates")
    elif d.state.spec(n).auto_promote:
        succeed(d, n, "auto-promoted")
    else:
        d.wave_to(n, WavePhase.AWAITING_PROMOTION, "gates passed")


def succeed(d: Draft, n: int, reason: str) -> None:
    """Wave `n` is done: enter the next one, or finalize after the last."""
    d.wave_to(n, WavePhase.SUCCEEDED, reason)
    if n == len(d.state.waves):
        d.actions.append(finalize_action(d.state))
    else:
        enter(d, n + 1)


def enter(d: Draft, n: int, only_failed: bool = False) -> None:
    """Make wave `n` current and start a fresh run of it (approval first when it has approval gates)."""
    wave = d.state.wave(n)
    for env in d.state.envs_of(n):
        if only_failed and env.status is EnvStatus.SUCCEEDED:
            d.put_env(replace(env, queued=False))
        elif not _fresh(env):
            d.env_to(env, EnvStatus.PENDING, reason="", retry_at=None, errors=0, queued=False)
    d.state = replace(d.state, current=n)
    fresh: dict[str, Any] = {
        "run": wave.run + 1,
        "verify_started_at": None,
        "gate_index": None,
        "gate_started_at": None,
        "rounds": 0,
        "samples": (),
        "gates": (),
        "approvals": (),
        "overridden_by": None,
        "hold": "",
        "hold_until": None,
    }
    d.put_wave(replace(wave, **fresh))
    if not wave.envs:
        succeed(d, n, "no environments")
    elif approval_gates(d.state.spec(n)):
        d.wave_to(n, WavePhase.AWAITING_APPROVAL)
    else:
        d.wave_to(n, WavePhase.DEPLOYING)


def _fresh(env: EnvState) -> bool:
    """Pending as a new wave run leaves it (checked first: entering a large wave rewrites nothing)."""
    return env.status is EnvStatus.PENDING and not (env.reason or env.retry_at or env.errors or env.queued)


def reset_after(d: Draft, n: int, reason: str) -> None:
    """Waves after `n` up to the current one go back to pending; wave `n` becomes current."""
    for later in range(n + 1, d.state.current + 1):
        d.wave_to(later, WavePhase.PENDING, reason)
    d.state = replace(d.state, current=n)


def sync_phase(d: Draft, before: RolloutPhase) -> None:
    state = d.state
    phase = state.phase if state.phase in FROZEN else _PHASE_OF_WAVE[state.current_wave.phase]
    reason = state.current_wave.reason if phase in (Phase.HALTED, Phase.FAILED) else ""
    if phase is Phase.PAUSED:
        reason = state.reason  # who paused it, or the alert that did
    if phase != before:
        d.note(ROLLOUT, before, phase, reason)
    d.state = replace(state, phase=phase, reason=reason)


# -- keys and actions ----------------------------------------------------------------------------


def gate_action(state: RolloutState, wave: WaveState) -> Action | None:
    """What an unanswered exit gate of `wave` waits on: its next sampling round, or the end of a bake."""
    index = wave.gate_index
    if wave.phase is not WavePhase.VERIFYING or index is None or wave.record(index) is not None:
        return None
    gate = state.spec(wave.number).gates[index]
    key = f"{state.id}:wave-{wave.number}:run-{wave.run}:gate-{index}"
    if isinstance(gate, BakeGate):
        return WakeAt(f"{key}:wake", _bake_ends(wave, gate))
    if isinstance(gate, PrometheusGate | CompareGate):
        done = [e for e in state.envs_of(wave.number) if e.status is EnvStatus.SUCCEEDED]
        started = wave.gate_started_at or state.created_at
        not_before = started + timedelta(seconds=gate.interval_seconds * wave.rounds)
        landed = [e.finished_at for e in done if e.finished_at is not None]
        if landed:  # a window never reaches back before a deployment finished: at least a second after the last
            not_before = max(not_before, max(landed) + timedelta(seconds=1))
        fallback = wave.verify_started_at or not_before
        windows = tuple((e.env, int((not_before - (e.finished_at or fallback)).total_seconds())) for e in done)
        candidates: tuple[EnvRef, ...] = ()
        if isinstance(gate, CompareGate):
            candidates = tuple(e.env for e in state.envs if e.wave != wave.number and not e.changed)
        return SampleGate(
            f"{key}:round-{wave.rounds}",
            wave.number,
            index,
            wave.rounds,
            gate,
            tuple(e.env for e in done),
            not_before,
            candidates=candidates,
            windows=windows,
            module=state.module,
            version=state.version,
        )
    return None


def _bake_ends(wave: WaveState, gate: BakeGate) -> datetime:
    if wave.verify_started_at is None:
        raise RuntimeError(f"wave {wave.number} is verifying without a verification start time")
    return wave.verify_started_at + timedelta(seconds=gate.seconds)


def finalize_action(state: RolloutState) -> Finalize:
    return Finalize(f"{state.id}:finalize:{state.version}", state.module, state.version)
