"""The rollout workflow's activities: what touches the store, Prometheus and Terraform.

`RolloutActivities` run as local activities next to the workflow (short store writes and one Prometheus
round each): read the inbox and the freezes, prepare deployments, project the state into the store, sample
a gate, finalize. The store is written only through its own API (`RolloutSession.turn / finalize`, the
inbox and freezes read through `RolloutSession.commands` and `FreezeStore`). `RunnerActivities` run
on a runner pool's task queue: one Terraform run each, heartbeating, idempotent by deployment.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from temporalio import activity

from estate.domain import rollout_events as ev
from estate.domain.deployments import Deployment, DeploymentStatus
from estate.domain.rollout_state import RolloutState
from estate.domain.runner_rules import DEFAULT_POOL, resolve_pool
from estate.engine.config import GateSampler, Observer
from estate.engine.driver import alert_entry, command_entry, failed_round, sampling_round, transition_entry
from estate.errors import EstateError
from estate.runners.locks import EnvironmentBusy
from estate.runners.ports import Runner
from estate.store import Store
from estate.store.freezes import FreezeStore
from estate.store.rollouts import LogEntry, RolloutSession, StaleRevision
from estate.store.runner_pools import assign_pools, runner_rules
from estate.temporal import contract as c

log = logging.getLogger(__name__)


class RolloutActivities:
    """Local activities of the rollout workflow, on one store."""

    def __init__(
        self,
        store: Store,
        *,
        now: Callable[[], datetime],
        holder: str,
        sampler: GateSampler | None,
        observers: Sequence[Observer] = (),
        on_log: Callable[[str, str], None] = lambda rollout_id, line: None,
    ) -> None:
        self.store = store
        self.now = now
        self.holder = holder
        self.sampler = sampler
        self.observers = observers
        self.on_log = on_log
        self._sessions: dict[str, RolloutSession] = {}  # rollout -> session, whose revision is the next save's base
        self._lock = threading.Lock()

    def all(self) -> list[Callable[..., object]]:
        return [self.poll, self.prepare, self.project, self.sample, self.finalize]

    @activity.defn(name=c.POLL)
    def poll(self, request: c.PollRequest) -> c.Polled:
        """What the store's inbox holds for the rollout (alerts, commands queued there) and the freezes in force."""
        queued = self._session(request.rollout_id).commands()
        return c.Polled(
            tuple(c.Queued(i, item) for i, item in queued),
            FreezeStore(self.store).active(self.now()),
        )

    @activity.defn(name=c.PROJECT)
    def project(self, projection: c.Projection) -> None:
        """Save the workflow's state (the stored one with the delta applied), its log, the answers of the
        store-queued commands and the versions marked defective, in one transaction; then tell the observers."""
        touched = [e.env for e in projection.delta.envs]
        outcomes = {d.queued: d.refused or "ok" for d in projection.decided if d.queued is not None}
        for attempt in (1, 2):
            session = self._session(projection.rollout_id, fresh=attempt == 2)
            state = c.apply_delta(session.state(), projection.delta)
            entries = [self._decided_entry(state, d) for d in projection.decided]
            entries += [transition_entry(t) for t in projection.transitions]
            try:
                with session.turn() as tx:
                    for action in projection.defective:
                        if tx.mark_defective(action, projection.at):
                            entries.append(LogEntry("defective", f"marked {action.module} {action.version} defective"))
                    tx.save(state, entries, outcomes, projection.at, touched)
                break
            except StaleRevision:  # saved by someone else since this process last read it: read it again
                if attempt == 2:
                    raise
        for entry in entries:
            self.on_log(projection.rollout_id, entry.summary)
        for t in projection.transitions:
            for observe in self.observers:
                observe(state, t)

    @staticmethod
    def _decided_entry(state: RolloutState, decided: c.Decided) -> LogEntry:
        item = decided.command
        if isinstance(item, ev.AlertFired):
            env = state.env(item.env)
            return alert_entry(item, decided.refused, env.wave if env is not None else None)
        return command_entry(item, decided.refused)

    @activity.defn(name=c.PREPARE)
    def prepare(self, request: c.PrepareRequest) -> c.PreparedBatch:
        """The deployment of each action (found by key or created, pinned and linked), and its runner pool."""
        session = self._session(request.rollout_id)
        module = session.state().module
        with session.turn() as tx:  # deployments only: the state is saved by `project`
            found = tx.prepare(
                request.actions,
                self.store.resource_type(module),
                holder=self.holder,
                now=self.now(),
                create=request.create,
            )
        rules = runner_rules(self.store)
        envs = {e.ref: e for e in self.store.environments([a.env for a, dep in found if dep is not None])}
        pools = {
            dep.id: resolve_pool(rules, envs[a.env]) if a.env in envs else DEFAULT_POOL
            for a, dep in found
            if dep is not None
        }
        assign_pools(self.store, pools)
        return c.PreparedBatch(
            tuple(
                c.Prepared(a.key, a.env, None)
                if dep is None
                else c.Prepared(a.key, a.env, dep.id, dep.status, dep.reason or "", dep.retryable, pools[dep.id])
                for a, dep in found
            )
        )

    @activity.defn(name=c.SAMPLE)
    def sample(self, request: c.SampleRequest) -> c.Samples:
        """One sampling round of a metric gate (a compare gate also samples its baseline); failures come back as
        samples with an error."""
        action = request.action
        if self.sampler is None:
            return c.Samples(tuple(failed_round(request.wave_name, action, "no Prometheus gate sampler is configured")))
        return c.Samples(tuple(self.sampler.sample(sampling_round(self.store, request.wave_name, action))))

    @activity.defn(name=c.FINALIZE)
    def finalize(self, request: c.FinalizeRequest) -> None:
        for line in self._session(request.rollout_id).finalize(request.action):
            self.on_log(request.rollout_id, line)

    def _session(self, rollout_id: str, *, fresh: bool = False) -> RolloutSession:
        with self._lock:
            if fresh or rollout_id not in self._sessions:
                self._sessions[rollout_id] = RolloutSession(self.store, rollout_id)
            return self._sessions[rollout_id]


class RunnerActivities:
    """The Terraform runs of one runner pool: `run_deployment` on the pool's task queue."""

    def __init__(self, runner: Runner, pool: str, store: Store, *, beat_seconds: float = 5.0) -> None:
        self.runner = runner
        self.pool = pool
        self.store = store
        self.beat_seconds = beat_seconds
        self._threads = ThreadPoolExecutor(thread_name_prefix=f"estate-run-{pool}")

    @activity.defn(name=c.RUN_DEPLOYMENT)
    def run_deployment(self, request: c.RunRequest) -> c.RunOutcome:
        """Run the deployment to its end, heartbeating. A worker that shuts down past its grace hands the run
        back (interrupted: the workflow redoes it as a new deployment, which another worker of the pool picks
        up); an error that may pass by itself is raised, so that Temporal retries."""
        if request.pool != self.pool:  # the queue says otherwise: record where it really runs
            assign_pools(self.store, {request.deployment_id: self.pool})
        running = self._threads.submit(self.runner.run, request.deployment_id)
        stopping = False
        while True:
            try:
                dep: Deployment = running.result(timeout=self.beat_seconds)
                break
            except TimeoutError:
                pass
            except (EnvironmentBusy, EstateError) as exc:
                if isinstance(exc, EnvironmentBusy) or exc.transient:
                    raise  # may pass by itself (a dead runner's lock, a database restarting): Temporal retries
                return c.RunOutcome(DeploymentStatus.ERRORED, exc.message)
            # Temporal cancels the run at the worker's graceful-shutdown deadline (or when the workflow asks).
            if not stopping and activity.is_cancelled():
                stopping = True
                self._stop(request.deployment_id)
            with contextlib.suppress(Exception):  # a lost heartbeat is retried by the next one
                activity.heartbeat(request.key)
        return c.RunOutcome(dep.status, dep.reason or "", dep.retryable)

    def _stop(self, deployment_id: int) -> None:
        hand_back = getattr(self.runner, "hand_back", None)
        if hand_back is None or not hand_back(deployment_id):
            self.runner.cancel(deployment_id)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
