"""One rollout's driver: decide, persist, then act; feed what happened back as observations.

A driver holds its rollout's lease. Each `turn` takes the commands queued by anyone, the deployments
that finished, the gate samples taken and the timers that fired, feeds them to the pure state machine,
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
from estate.domain.deployments import Deployment, DeploymentStatus
from estate.domain.gate_eval import Sample, subjects
from estate.domain.rollout import Decision, decide, decide_observations, outstanding
from estate.domain.rollout_events import SubjectKind
from estate.domain.rollout_progress import WAITING
from estate.domain.rollout_state import RolloutPhase, RolloutState
from estate.engine.config import EngineConfig
from estate.errors import ConflictError, EstateError
from estate.runners.pool import LocalPool
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
        """Nothing will happen until a human acts (or the rollout is over)."""
        state = self.state
        return state is not None and not self.busy and (state.phase in WAITING or state.phase.is_terminal)

    @property
    def over(self) -> bool:
        return self.state is not None and self.state.phase.is_terminal and not self.busy

    def next_timer(self) -> datetime | None:
        return min((when for when, _ in self.timers.values()), default=None)

    def in_flight(self) -> list[Future[Any]]:
        return [*self.deployments, *self.samples]

    # -- one turn ------------------------------------------------------------------------------

    def turn(self, now: datetime) -> RolloutState:
        """Decide on everything that arrived, persist, act. Never blocks on Terraform or Prometheus."""
        self._renew(now)
        commands = self.session.commands()
        events: list[ev.Observation] = [*self.inbox, *self._finished(), *self._due(now)]
        self.inbox = []
        state, actions = self._decide(commands, events, now)
        redo, self.redo = self.redo, []
        self._perform(state, [*redo, *actions], now)
        self.state = state
        return state

    def _decide(
        self, commands: Sequence[tuple[int, ev.Command]], events: Sequence[ev.Observation], now: datetime
    ) -> tuple[RolloutState, list[ev.Action]]:
        state = self.session.state()
        actions: list[ev.Action] = []
        entries: list[LogEntry] = []
        transitions: list[ev.Transition] = []
        outcomes: dict[int, str] = {}
        for command_id, command in commands:
            decision = decide(state, command, now)
            outcomes[command_id] = decision.refused or "ok"
            entries.append(command_entry(command, decision.refused))
            state = _absorb(decision, actions, entries, transitions)
        if events:
            state = _absorb(decide_observations(state, events, now), actions, entries, transitions)
        if commands or events:
            self.session.save(state, entries, outcomes, now)
            for entry in entries:
                self.cfg.on_log(self.id, entry.summary)
            for t in transitions:
                for observe in self.cfg.observers:
                    observe(state, t)
        return state, actions

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
        if self._resource_type is None:
            self._resource_type = self.cfg.store.resource_type(state.module)
        # After an abort nothing new starts: an action the crash cut short before its deployment existed
        # is reported as never started instead of being performed now.
        aborted = state.phase is RolloutPhase.ABORTED
        found = self.session.prepare(actions, self._resource_type, holder=self.cfg.holder, now=now, create=not aborted)
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
            envs = self.cfg.store.environments(action.envs)
            job: Future[list[Sample]]
            if self.cfg.sampler is None:
                job = Future()
                job.set_result(self._failed_round(action, "no Prometheus gate sampler is configured"))
            else:
                wave_name = self.session.state().spec(action.wave).name
                job = self.sampling.submit(self.cfg.sampler.sample, action.gate, wave_name, envs, action.round)
            self.samples[job] = action
            job.add_done_callback(self._on_done)

    def _failed_round(self, action: ev.SampleGate, error: str) -> list[Sample]:
        """A round nobody could take: an error sample per subject, which can never pass the gate."""
        wave_name = self.session.state().spec(action.wave).name
        expected = subjects(action.gate, wave_name, [str(e) for e in action.envs])
        return [Sample(subject, action.round, "", error=error) for subject in expected]

    def _renew(self, now: datetime) -> None:
        if self._renewed_at is None or now - self._renewed_at > self.cfg.lease_ttl / 3:
            holder = self.session.acquire(self.cfg.holder, now, self.cfg.lease_ttl)
            if holder is not None:
                raise LeaseHeld(self.id, holder)
            self._renewed_at = now


def _absorb(
    decision: Decision, actions: list[ev.Action], entries: list[LogEntry], transitions: list[ev.Transition]
) -> RolloutState:
    actions.extend(decision.actions)
    transitions.extend(decision.log)
    entries.extend(transition_entry(t) for t in decision.log)
    return decision.state


def command_entry(command: ev.Command, refused: str | None) -> LogEntry:
    """The log line of a command the state machine accepted or refused."""
    summary = describe(command) + (f": {refused}" if refused else "")
    return LogEntry("refused" if refused else "command", summary, command.actor, {"command": type(command).__name__})


def transition_entry(t: ev.Transition) -> LogEntry:
    """The log line of a transition: a change of the rollout's phase, or of a wave, gate, env or target."""
    payload = {"subject": str(t.subject), "before": t.before, "after": t.after, "reason": t.reason}
    return LogEntry("phase" if t.subject.kind is SubjectKind.ROLLOUT else "transition", str(t), t.actor, payload)


def _finished(action: ev.StartDeployment, dep: Deployment) -> ev.DeploymentFinished:
    return ev.DeploymentFinished(action.key, action.env, str(dep.id), dep.status, dep.reason or "", dep.retryable)


def describe(command: ev.Command) -> str:
    """`alex: rollback wave=1`: a command as the log shows it."""
    fields = {k: v for k, v in vars(command).items() if k not in ("actor", "roles") and v not in (None, False)}
    args = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{command.actor}: {type(command).__name__.lower()}" + (f" {args}" if args else "")
