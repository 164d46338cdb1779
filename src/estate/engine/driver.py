"""One rollout's driver: decide, persist, then act; feed what happened back as observations.

A driver holds its rollout's lease. Each `turn` takes the commands queued by anyone, the deployments
that finished, the gate samples taken, the timers that fired, the alerts Alertmanager delivered to its inbox
and the freezes in force (read with the inbox), feeds them to the pure state machine,
persists the new state, its log and the commands' outcomes in one transaction, and only then starts the
decided actions. A turn never blocks: Terraform runs on the host's deployment pool, Prometheus queries on
its sampling pool, and waiting is a timer. Every action is keyed and idempotent, so after a crash
`outstanding(state)` is simply performed again: nothing is lost and nothing runs twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from datetime import datetime
from typing import Any

from estate.domain import rollout_events as ev
from estate.domain.cohort import select_baseline
from estate.domain.deployments import Deployment, DeploymentStatus
from estate.domain.gate_eval import Sample, SamplingRound, subjects
from estate.domain.ids import EnvRef
from estate.domain.model import Environment
from estate.domain.plans import CompareGate
from estate.domain.rollout import Decision, decide, decide_observations, outstanding, wakes
from estate.domain.rollout_events import SubjectKind
from estate.domain.rollout_progress import WAITING, held
from estate.domain.rollout_state import RolloutPhase, RolloutState
from estate.engine.config import EngineConfig
from estate.errors import ConflictError, EstateError
from estate.runners.pool import LocalPool
from estate.store import Store
from estate.store.freezes import FreezeStore
from estate.store.rollouts import LogEntry, RolloutSession

log = logging.getLogger(__name__)


class LeaseHeld(ConflictError):
    """Another live engine drives this rollout."""

    def __init__(self, rollout_id: str, holder: str) -> None:
        super().__init__(f"rollout {rollout_id} is driven by {holder}", hint="commands reach it through the inbox")
        self.holder = holder


class RolloutDriver:
    """Drives one rollout, a turn at a time, on pools shared with the other rollouts of its host."""

    def __init__(self, config: EngineConfig, rollout_id: str, pool: LocalPool, sampling: Executor) -> None:
        self.cfg = config
        self.id = rollout_id
        self.session = RolloutSession(config.store, rollout_id)
        self.pool = pool
        self.sampling = sampling
        self.deployments: dict[Future[Deployment], ev.StartDeployment] = {}
        self.samples: dict[Future[list[Sample]], ev.SampleGate] = {}
        self.timers: dict[str, tuple[datetime, ev.SampleGate | None]] = {}  # key -> (when, sampling or a tick)
        self.inbox: list[ev.Observation] = []
        self.redo: list[ev.StartDeployment] = []  # interrupted runs to redo as new deployments
        self._resource_type: str | None = None
        self._renewed_at: datetime | None = None
        self._inbox_read_at: datetime | None = None
        self._prepared: dict[str, Deployment | None] = {}  # action key -> deployment, made in this turn's save
        self._on_done: Callable[[Future[Any]], object] = lambda future: None
        self.state: RolloutState | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, now: datetime, on_done: Callable[[Future[Any]], object]) -> RolloutState:
        """Take the lease (LeaseHeld if another live engine has it) and redo what a crash may have cut short;
        `on_done` is called (on a pool thread) whenever a deployment or a sample of this rollout finishes."""
        holder = self.session.acquire(self.cfg.holder, now, self.cfg.lease_ttl)
        if holder is not None:
            raise LeaseHeld(self.id, holder)
        self._renewed_at = now
        self._on_done = on_done
        self.state = self.session.state()
        self._perform(self.state, outstanding(self.state), now)
        return self.state

    def close(self) -> None:
        """Give the lease back (in-flight deployments finish on the pool; a successor adopts them)."""
        try:
            self.session.release(self.cfg.holder)
        except EstateError:
            log.warning("could not release the lease of rollout %s", self.id, exc_info=True)

    @property
    def busy(self) -> bool:
        """Work in flight or due: deployments, samples, timers, or observations not yet decided."""
        return bool(self.deployments or self.samples or self.timers or self.inbox or self.redo)

    @property
    def settled(self) -> bool:
        """Nothing will happen until a human acts (or the rollout is over), or until a freeze lifts or a change
        window opens (a held wave with nothing in flight: a CLI that drives it returns and says until when)."""
        state = self.state
        if state is None or self.deployments or self.samples or self.inbox or self.redo:
            return False
        if state.phase in WAITING or state.phase.is_terminal:
            return not self.timers
        return held(state)

    @property
    def over(self) -> bool:
        return self.state is not None and self.state.phase.is_terminal and not self.busy

    def next_timer(self) -> datetime | None:
        return min((when for when, _ in self.timers.values()), default=None)

    def in_flight(self) -> list[Future[Any]]:
        return [*self.deployments, *self.samples]

    # -- one turn ------------------------------------------------------------------------------

    def turn(self, now: datetime, *, poked: bool = True) -> RolloutState:
        """Decide on everything that arrived, persist, act. Never blocks on Terraform or Prometheus. The inbox
        is read when `poked` (a command was queued in this process) or every `poll_seconds`."""
        self._renew(now)
        commands: list[tuple[int, ev.Queued]] = []
        if poked or self._inbox_read_at is None or (now - self._inbox_read_at).total_seconds() >= self.cfg.poll_seconds:
            commands = self.session.commands()
            self._inbox_read_at = now
            self._read_freezes(now)
        events: list[ev.Observation] = [*self.inbox, *self._finished(), *self._due(now)]
        self.inbox = []
        turn = self._decide(commands, events, now)
        redo, self.redo = self.redo, []
        running = {a.key for a in self.deployments.values()}
        starts = [a for a in [*redo, *turn.actions] if isinstance(a, ev.StartDeployment) and a.key not in running]
        if commands or events or starts:
            self._persist(turn, starts, now)
        self._perform(turn.state, [*redo, *turn.actions], now)
        self._forget_stale_timers(turn.state)
        self.state = turn.state
        return turn.state

    def _read_freezes(self, now: datetime) -> None:
        """Tell the machine when the freezes in force differ from what it last heard."""
        freezes = FreezeStore(self.cfg.store).active(now)
        if freezes != self.session.state().freezes:
            self.inbox.append(ev.FreezesChanged(freezes))

    def _decide(
        self, commands: Sequence[tuple[int, ev.Queued]], events: Sequence[ev.Observation], now: datetime
    ) -> _Turn:
        turn = _Turn(self.session.state())
        for command_id, command in commands:
            if isinstance(command, ev.AlertFired):
                turn.alert(command_id, command, decide_observations(turn.state, [command], now))
                continue
            decision = decide(turn.state, command, now)
            turn.outcomes[command_id] = decision.refused or "ok"
            turn.entries.append(command_entry(command, decision.refused))
            turn.absorb(decision)
        if events:
            turn.absorb(decide_observations(turn.state, events, now))
        return turn

    def _persist(self, turn: _Turn, starts: list[ev.StartDeployment], now: datetime) -> None:
        """One transaction: create the deployments the turn starts, record their ids in the state (the
        `DeploymentStarted` the machine would otherwise hear next turn) and save it. Then tell the log's
        listeners."""
        with self.session.turn() as tx:
            for action in turn.actions:
                if isinstance(action, ev.MarkDefective) and tx.mark_defective(action, now):
                    turn.entries.append(LogEntry("defective", f"marked {action.module} {action.version} defective"))
            if starts:
                found = tx.prepare(starts, self._resource(turn.state), **self._prepare_options(turn.state, now))
                self._prepared = {a.key: d for a, d in found}
                started = [
                    ev.DeploymentStarted(a.key, a.env, str(d.id))
                    for a, d in found
                    if d is not None and (e := turn.state.env(a.env)) is not None and e.deployment_id != str(d.id)
                ]
                if started:
                    turn.absorb(decide_observations(turn.state, started, now))
            tx.save(turn.state, turn.entries, turn.outcomes, now, turn.touched)
        for entry in turn.entries:
            self.cfg.on_log(self.id, entry.summary)
        for t in turn.transitions:
            for observe in self.cfg.observers:
                observe(turn.state, t)

    def _resource(self, state: RolloutState) -> str:
        if self._resource_type is None:
            self._resource_type = self.cfg.store.resource_type(state.module)
        return self._resource_type

    def _prepare_options(self, state: RolloutState, now: datetime) -> dict[str, Any]:
        # After an abort nothing new starts: an action the crash cut short before its deployment existed
        # is reported as never started instead of being performed now.
        return {"holder": self.cfg.holder, "now": now, "create": state.phase is not RolloutPhase.ABORTED}

    def _perform(self, state: RolloutState, actions: Sequence[ev.Action], now: datetime) -> None:
        self._start_deployments(state, [a for a in actions if isinstance(a, ev.StartDeployment)], now)
        for action in actions:
            if isinstance(action, ev.SampleGate):
                self.timers.setdefault(action.key, (action.not_before, action))
            elif isinstance(action, ev.WakeAt):
                self.timers.setdefault(action.key, (action.when, None))
            elif isinstance(action, ev.Finalize):
                for line in self.session.finalize(action):
                    self.cfg.on_log(self.id, line)
        self._due_samples(now)

    def _start_deployments(self, state: RolloutState, actions: list[ev.StartDeployment], now: datetime) -> None:
        running = {a.key for a in self.deployments.values()}
        actions = [a for a in actions if a.key not in running]
        if not actions:
            return
        prepared, self._prepared = self._prepared, {}
        found = [(a, prepared[a.key]) for a in actions if a.key in prepared]
        rest = [a for a in actions if a.key not in prepared]
        if rest:
            with self.session.turn() as tx:  # deployments of a crashed run's actions, nothing to save
                found += tx.prepare(rest, self._resource(state), **self._prepare_options(state, now))
        for action, dep in found:
            if dep is None:
                self.inbox.append(
                    ev.DeploymentFinished(
                        action.key, action.env, "", DeploymentStatus.CANCELLED, "not started: aborted"
                    )
                )
                continue
            env = state.env(action.env)
            if env is None or env.deployment_id != str(dep.id):
                self.inbox.append(ev.DeploymentStarted(action.key, action.env, str(dep.id)))
            if dep.status.is_terminal:
                self.inbox.append(_finished(action, dep))
            else:
                future = self.pool.submit(dep.id)
                self.deployments[future] = action
                future.add_done_callback(self._on_done)

    def _finished(self) -> list[ev.Observation]:
        events: list[ev.Observation] = []
        for future in [f for f in self.deployments if f.done()]:
            action = self.deployments.pop(future)
            error = future.exception()
            if error is not None:  # the runner could not even record an outcome: never a failure
                retryable = isinstance(error, EstateError) and error.transient
                reason = error.message if isinstance(error, EstateError) else f"internal error: {error}"
                events.append(
                    ev.DeploymentFinished(action.key, action.env, "", DeploymentStatus.ERRORED, reason, retryable)
                )
            elif future.result().status is DeploymentStatus.INTERRUPTED:
                self.redo.append(action)  # the run proves nothing: redo it as a new deployment
            else:
                events.append(_finished(action, future.result()))
        for job in [f for f in self.samples if f.done()]:
            sampling = self.samples.pop(job)
            error = job.exception()
            samples = job.result() if error is None else self._failed_round(sampling, f"sampling failed: {error}")
            events.append(
                ev.GateSampled(sampling.key, sampling.wave, sampling.gate_index, sampling.round, tuple(samples))
            )
        return events

    def _forget_stale_timers(self, state: RolloutState) -> None:
        """Drop the timers the state no longer waits on (a hold lifted early, a gate left by a rollback), so a
        rollout that needs a human, or is over, is not kept busy by them."""
        if self.timers:
            wanted = {a.key for a in wakes(state)}
            for key in [k for k in self.timers if k not in wanted]:
                del self.timers[key]

    def _due(self, now: datetime) -> list[ev.Observation]:
        """Ticks for the timers that fired (sampling timers start their round instead)."""
        due = [key for key, (when, sampling) in self.timers.items() if when <= now and sampling is None]
        for key in due:
            del self.timers[key]
        self._due_samples(now)
        return [ev.Tick()] if due else []

    def _due_samples(self, now: datetime) -> None:
        for key, (when, action) in list(self.timers.items()):
            if action is None or when > now or any(a.key == key for a in self.samples.values()):
                continue
            del self.timers[key]
            job: Future[list[Sample]]
            if self.cfg.sampler is None:
                job = Future()
                job.set_result(self._failed_round(action, "no Prometheus gate sampler is configured"))
            else:
                job = self.sampling.submit(self.cfg.sampler.sample, self._round(action))
            self.samples[job] = action
            job.add_done_callback(self._on_done)

    def _round(self, action: ev.SampleGate) -> SamplingRound:
        return sampling_round(self.cfg.store, self.session.state().spec(action.wave).name, action)

    def _failed_round(self, action: ev.SampleGate, error: str) -> list[Sample]:
        return failed_round(self.session.state().spec(action.wave).name, action, error)

    def _renew(self, now: datetime) -> None:
        if self._renewed_at is None or now - self._renewed_at > self.cfg.lease_ttl / 3:
            holder = self.session.acquire(self.cfg.holder, now, self.cfg.lease_ttl)
            if holder is not None:
                raise LeaseHeld(self.id, holder)
            self._renewed_at = now


class _Turn:
    """What one turn decided: the state it ends in, the actions, the log, the commands' outcomes and the
    environments the decisions touched."""

    def __init__(self, state: RolloutState) -> None:
        self.state = state
        self.actions: list[ev.Action] = []
        self.entries: list[LogEntry] = []
        self.transitions: list[ev.Transition] = []
        self.outcomes: dict[int, str] = {}
        self.touched: set[EnvRef] = set()

    def alert(self, inbox_id: int, alert: ev.AlertFired, decision: Decision) -> None:
        """An alert from the inbox, decided: its outcome, a log line and what the machine made of it."""
        outcome = decision.refused or "ok"
        self.outcomes[inbox_id] = outcome
        env = decision.state.env(alert.env)
        self.entries.append(alert_entry(alert, decision.refused, env.wave if env is not None else None))
        self.absorb(decision)

    def absorb(self, decision: Decision) -> None:
        self.state = decision.state
        self.actions.extend(decision.actions)
        self.transitions.extend(decision.log)
        self.touched |= decision.touched
        self.entries.extend(transition_entry(t) for t in decision.log)


def command_entry(command: ev.Command, refused: str | None) -> LogEntry:
    """The log line of a command the state machine accepted or refused."""
    summary = describe(command) + (f": {refused}" if refused else "")
    return LogEntry("refused" if refused else "command", summary, command.actor, {"command": type(command).__name__})


def alert_entry(alert: ev.AlertFired, refused: str | None, wave: int | None) -> LogEntry:
    """The log line of an alert from the inbox (for an environment of `wave`): accepted (stop the line) or
    ignored, and why."""
    note = f": {refused}" if refused else ""
    payload = {
        "alert": alert.alert.name,
        "env": str(alert.env),
        "wave": wave,
        "outcome": "ignored" if refused else "accepted",
        "reason": refused or "",
    }
    return LogEntry("alert", f"{alert.actor}: alert {alert.alert} for {alert.env}{note}", alert.actor, payload)


def transition_entry(t: ev.Transition) -> LogEntry:
    """The log line of a transition: a change of the rollout's phase, or of a wave, gate, env or target."""
    subject = t.subject
    payload = {
        "subject": str(subject),
        "kind": str(subject.kind),
        "wave": subject.wave,
        "gate": subject.gate,
        "env": str(subject.env) if subject.env else None,
        "before": t.before,
        "after": t.after,
        "reason": t.reason,
    }
    return LogEntry("phase" if subject.kind is SubjectKind.ROLLOUT else "transition", str(t), t.actor, payload)


def sampling_round(store: Store, wave_name: str, action: ev.SampleGate) -> SamplingRound:
    """What the sampler needs: the environments as stored now, and a compare gate's baseline cohort."""
    envs = store.environments(action.envs)
    baseline: tuple[Environment, ...] = ()
    if isinstance(action.gate, CompareGate) and action.candidates:
        baseline = select_baseline(action.gate, envs, store.environments(action.candidates))
    return SamplingRound(
        action.gate,
        wave_name,
        action.round,
        tuple(envs),
        baseline,
        action.module,
        action.version,
        dict(action.windows),
    )


def failed_round(wave_name: str, action: ev.SampleGate, error: str) -> list[Sample]:
    """A round nobody could take: an error sample per subject, which can never pass the gate."""
    expected = subjects(action.gate, wave_name, [str(e) for e in action.envs])
    return [Sample(subject, action.round, "", error=error) for subject in expected]


def _finished(action: ev.StartDeployment, dep: Deployment) -> ev.DeploymentFinished:
    return ev.DeploymentFinished(action.key, action.env, str(dep.id), dep.status, dep.reason or "", dep.retryable)


def describe(command: ev.Command) -> str:
    """`alex: rollback wave=1`: a command as the log shows it."""
    fields = {k: v for k, v in vars(command).items() if k not in ("actor", "roles") and v not in (None, False)}
    args = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{command.actor}: {type(command).__name__.lower()}" + (f" {args}" if args else "")
