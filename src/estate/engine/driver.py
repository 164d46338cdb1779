"""The rollout engine: decide, persist, then act; feed what happened back as observations.

One engine drives a rollout at a time (a lease row). Each loop turn takes the commands queued by any
terminal, the deployments that finished, the gate results and the timers that fired, feeds them to the
pure state machine, persists the new state and its log in one transaction, and only then performs the
decided actions. Every action is keyed and idempotent, so after a crash `outstanding(state)` is simply
performed again: nothing is lost and nothing runs twice.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from estate.domain import rollout_events as ev
from estate.domain.deployments import Deployment
from estate.domain.rollout import Decision, decide, decide_observations, outstanding
from estate.domain.rollout_state import GateResult, RolloutPhase, RolloutState
from estate.engine import actions as act
from estate.engine.gates import GateRunner
from estate.engine.persistence import LogLine, RolloutRepo
from estate.runners.pool import LocalPool
from estate.runners.ports import Runner
from estate.store import Store

LEASE_TTL = timedelta(seconds=30)
POLL_SECONDS = 0.25
# Phases where nothing moves until a human acts; a CLI command returns there.
WAITING = frozenset(
    {
        RolloutPhase.PENDING,
        RolloutPhase.PAUSED,
        RolloutPhase.AWAITING_APPROVAL,
        RolloutPhase.AWAITING_PROMOTION,
        RolloutPhase.HALTED,
        RolloutPhase.FAILED,
    }
)


def engine_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseHeld(Exception):
    """Another live engine drives this rollout."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@dataclass
class EngineConfig:
    """What the engine needs from outside: the store, a runner, the clock, and how to report progress."""

    store: Store
    runner: Runner
    now: Callable[[], datetime]
    max_parallel: int = 4
    gates: GateRunner | None = None
    on_log: Callable[[str, str], None] = lambda rollout_id, line: None
    observers: Sequence[Callable[[RolloutState, ev.Transition], None]] = ()  # e.g. Grafana annotations
    holder: str = field(default_factory=engine_identity)
    sleep_cap: float = POLL_SECONDS
    sleep: Callable[[float], None] = time.sleep  # idle waits; tests pass one that moves a fake clock


class RolloutEngine:
    """Drives one rollout until it waits for a human (or ends, or forever with `follow`)."""

    def __init__(self, config: EngineConfig, rollout_id: str) -> None:
        self.cfg = config
        self.id = rollout_id
        self.repo = RolloutRepo(config.store, rollout_id)
        self.deployments: dict[Future[Deployment], ev.StartDeployment] = {}
        self.gate_jobs: dict[Future[ev.GateEvaluated], ev.EvaluateGate] = {}
        self.timers: dict[str, datetime] = {}
        self.inbox: list[ev.Observation] = []
        self._resource_type: str | None = None
        self._lease_renewed_at: datetime | None = None

    def run(self, *, follow: bool = False) -> RolloutState:
        """Drive until the rollout waits for a human or ends (`follow`: until it ends)."""
        now = self.cfg.now()
        holder = self.repo.acquire(self.cfg.holder, now, LEASE_TTL)
        if holder is not None:
            raise LeaseHeld(holder)
        self._lease_renewed_at = now
        pool = LocalPool(self.cfg.runner, self.cfg.max_parallel)
        gate_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="estate-gate")
        try:
            state = self.repo.state()
            self._perform(state, outstanding(state), pool, gate_pool)  # redo what a crash may have cut short
            while True:
                state = self._turn(pool, gate_pool)
                if state.phase.is_terminal and not self._busy():
                    return state
                if not follow and state.phase in WAITING and not self._busy():
                    return state
                self._wait()
        finally:
            gate_pool.shutdown(wait=False, cancel_futures=True)
            pool.shutdown()
            self.repo.release(self.cfg.holder)

    def _busy(self) -> bool:
        return bool(self.deployments or self.gate_jobs or self.timers or self.inbox)

    def _turn(self, pool: LocalPool, gate_pool: ThreadPoolExecutor) -> RolloutState:
        now = self.cfg.now()
        self._renew(now)
        commands = self.repo.commands()
        events: list[ev.Observation] = self.inbox + self._finished() + self._due(now)
        self.inbox = []
        state, decided = self._decide(commands, events, now)
        self._perform(state, decided, pool, gate_pool)
        return state

    def _decide(
        self, commands: Sequence[tuple[int, ev.Command]], events: Sequence[ev.Observation], now: datetime
    ) -> tuple[RolloutState, list[ev.Action]]:
        state = self.repo.state()
        actions: list[ev.Action] = []
        log: list[LogLine] = []
        transitions: list[ev.Transition] = []
        outcomes: dict[int, str] = {}
        for command_id, command in commands:
            decision = decide(state, command, now)
            outcomes[command_id] = decision.refused or "ok"
            kind = "refused" if decision.refused else "command"
            summary = _describe(command) + (f": {decision.refused}" if decision.refused else "")
            log.append((kind, command.actor, summary, {"command": type(command).__name__}))
            state = _absorb(decision, actions, log, transitions)
        if events:
            state = _absorb(decide_observations(state, events, now), actions, log, transitions)
        if commands or events:
            self.repo.save(state, log, outcomes, now)
            for _, _, summary, _ in log:
                self.cfg.on_log(self.id, summary)
            for t in transitions:
                for observe in self.cfg.observers:
                    observe(state, t)
        return state, actions

    def _perform(
        self, state: RolloutState, actions: Sequence[ev.Action], pool: LocalPool, gate_pool: ThreadPoolExecutor
    ) -> None:
        self._start_deployments(state, [a for a in actions if isinstance(a, ev.StartDeployment)], pool)
        for action in actions:
            if isinstance(action, ev.EvaluateGate):
                self._start_gate(state, action, gate_pool)
            elif isinstance(action, ev.WakeAt):
                self.timers[action.key] = action.when
            elif isinstance(action, ev.Finalize):
                for line in self.repo.finalize(action):
                    self.cfg.on_log(self.id, line)

    def _start_deployments(self, state: RolloutState, actions: list[ev.StartDeployment], pool: LocalPool) -> None:
        running = {a.key for a in self.deployments.values()}
        actions = [a for a in actions if a.key not in running]
        if not actions:
            return
        if self._resource_type is None:
            self._resource_type = act.resource_type_of(self.cfg.store.load_estate(), state.module)
        # After an abort nothing new starts: an action the crash cut short before its deployment existed
        # is reported as never started instead of being performed now.
        aborted = state.phase is RolloutPhase.ABORTED
        found = act.ensure_deployments(
            self.cfg.store, self.cfg.runner, self.id, actions, self._resource_type, create=not aborted
        )
        for action, dep in found:
            if dep is None:
                self.inbox.append(ev.DeploymentFinished(action.key, action.env, "", False, "not started: aborted"))
                continue
            env = state.env(action.env)
            if env is None or env.deployment_id != str(dep.id):
                self.inbox.append(ev.DeploymentStarted(action.key, action.env, str(dep.id)))
            if dep.status.is_terminal:
                self.inbox.append(_finished(action, dep))
            else:
                self.deployments[pool.submit(dep.id)] = action

    def _start_gate(self, state: RolloutState, action: ev.EvaluateGate, gate_pool: ThreadPoolExecutor) -> None:
        if any(a.key == action.key for a in self.gate_jobs.values()):
            return
        if self.cfg.gates is None:
            self.inbox.append(
                ev.GateEvaluated(
                    action.key,
                    action.wave,
                    action.gate_index,
                    GateResult.INCONCLUSIVE,
                    {"reason": "no gate runner configured"},
                )
            )
            return
        gates = self.cfg.gates
        self.gate_jobs[gate_pool.submit(gates.evaluate, state, action)] = action

    def _finished(self) -> list[ev.Observation]:
        events: list[ev.Observation] = []
        for future in [f for f in self.deployments if f.done()]:
            action = self.deployments.pop(future)
            error = future.exception()
            if error is not None:
                events.append(ev.DeploymentFinished(action.key, action.env, "", False, str(error)))
            else:
                events.append(_finished(action, future.result()))
        for job in [f for f in self.gate_jobs if f.done()]:
            gate = self.gate_jobs.pop(job)
            error = job.exception()
            if error is not None:  # a bug in sampling must not pass a gate: report it as inconclusive
                events.append(
                    ev.GateEvaluated(
                        gate.key,
                        gate.wave,
                        gate.gate_index,
                        GateResult.INCONCLUSIVE,
                        {"reason": f"gate evaluation failed: {error}"},
                    )
                )
            else:
                events.append(job.result())
        return events

    def _due(self, now: datetime) -> list[ev.Observation]:
        due = [key for key, when in self.timers.items() if when <= now]
        for key in due:
            del self.timers[key]
        return [ev.Tick()] if due else []

    def _wait(self) -> None:
        timeout = self.cfg.sleep_cap
        if self.timers:
            until = (min(self.timers.values()) - self.cfg.now()).total_seconds()
            timeout = max(0.0, min(timeout, until))
        pending: list[Future[Any]] = [*self.deployments, *self.gate_jobs]
        if self.inbox:
            return
        if pending:
            wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        else:
            self.cfg.sleep(timeout)

    def _renew(self, now: datetime) -> None:
        if self._lease_renewed_at is None or now - self._lease_renewed_at > LEASE_TTL / 3:
            holder = self.repo.acquire(self.cfg.holder, now, LEASE_TTL)
            if holder is not None:
                raise LeaseHeld(holder)
            self._lease_renewed_at = now


def _absorb(
    decision: Decision, actions: list[ev.Action], log: list[LogLine], transitions: list[ev.Transition]
) -> RolloutState:
    actions.extend(decision.actions)
    transitions.extend(decision.log)
    for t in decision.log:
        payload = {"subject": t.subject, "before": t.before, "after": t.after, "reason": t.reason}
        log.append(("phase" if t.subject == "rollout" else "transition", t.actor, str(t), payload))
    return decision.state


def _finished(action: ev.StartDeployment, dep: Deployment) -> ev.DeploymentFinished:
    succeeded = dep.status.value == "succeeded"
    return ev.DeploymentFinished(action.key, action.env, str(dep.id), succeeded, dep.reason or "")


def _describe(command: ev.Command) -> str:
    fields = {k: v for k, v in vars(command).items() if k not in ("actor", "roles") and v not in (None, False)}
    args = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{command.actor}: {type(command).__name__.lower()}" + (f" {args}" if args else "")
