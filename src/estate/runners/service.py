"""Deployments, for real: the API the CLI and the rollout engine use (implements `ports.Runner`).

    service = DeploymentService(store, settings, now=utcnow)
    service.recover()                                   # once at start: runs whose process died -> interrupted
    dep_id = service.create(EnvRef("checkout", "eph-1"), DeploymentKind.DEPLOY, triggered_by="rollout:r1",
                            rollout_id="r1")            # queued, with the resolved graph snapshot
    outcome = service.run(dep_id)                       # blocking; a Deployment in a terminal status
    rb_id = service.rollback_to(env, earlier_id, triggered_by="alex")
    with LocalPool(service) as pool:                    # bounded by runner.max_parallel
        futures = [pool.submit(i) for i in ids]

`create` snapshots the graph from the store's current estate (rollout pins are env-scoped rules, so
a pinned `postgres@2.0.0` is in it) and names this process as the one that will run it. `run` is
idempotent: a finished deployment returns its record unchanged, a queued one runs, one left
`planning`/`applying` by a dead process is marked `interrupted`. Status is persisted before each step
starts. Every outcome is *returned* as a record: `failed` when Terraform ran and the change failed (a
failed plan or apply, a timeout), `errored` when something technical prevented the attempt (the
binary is missing; the environment is busy with another deployment, which is `retryable`; a bug).
Only bad calls raise (NotFoundError).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from estate.domain.deployments import Deployment, DeploymentKind, DeploymentStatus
from estate.domain.graph import ResolvedGraph, resolve_graph
from estate.domain.ids import EnvRef
from estate.errors import ComponentError, ConflictError, EstateError, InputError
from estate.runners import render
from estate.runners.config import RunnerConfig
from estate.runners.events import Collector, Raw, TerraformEvent, estate_event, step_event
from estate.runners.locks import EnvironmentBusy, EnvironmentLocks, FileLocks, clear_stale_state_lock
from estate.runners.process import CancelToken, ProcessResult
from estate.runners.recorder import EventRecorder
from estate.runners.secrets import check_key, seal
from estate.runners.toolchain import Toolchain, find_toolchain
from estate.runners.workspace import Workspace
from estate.settings import Settings
from estate.store.deployments import DeploymentRepository, NewDeployment
from estate.store.holders import process_identity
from estate.store.repository import Store

log = logging.getLogger(__name__)

DeploymentOutcome = Deployment  # what `run` returns: the final record
STATE_LOCKED = "Error acquiring the state lock"
STALE_PLAN = "Saved plan is stale"  # Terraform's (and OpenTofu's) refusal of a plan the state moved past
EventListener = Callable[[int, TerraformEvent], None]


class DeploymentService:
    """Creates, runs, cancels and recovers deployments with the configured Terraform/OpenTofu."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        now: Callable[[], datetime],
        config: RunnerConfig | None = None,
        listener: EventListener | None = None,
        holder: str | None = None,
        locks: EnvironmentLocks | None = None,
    ) -> None:
        self.repo = DeploymentRepository(store)
        self.settings = settings
        self.now = now
        self.listener = listener
        self.holder = holder or process_identity()
        self._config = config
        self._toolchain: Toolchain | None = None
        self._lock = threading.Lock()
        self._running: dict[int, CancelToken] = {}
        self._handed_back: set[int] = set()  # runs to stop and leave to another runner (interrupted)
        self._locks = locks

    @property
    def config(self) -> RunnerConfig:
        if self._config is None:
            self._config = RunnerConfig.build(self.settings, self.repo.load_estate().settings)
        return self._config

    @property
    def locks(self) -> EnvironmentLocks:
        """Per-environment locks: files under $ESTATE_HOME unless shared ones were given."""
        if self._locks is None:
            self._locks = FileLocks(self.config.lock_path)
        return self._locks

    def toolchain(self) -> Toolchain:
        """The checked binary (ComponentError naming it when missing or older than 1.0); cached."""
        with self._lock:
            if self._toolchain is None:
                self._toolchain = find_toolchain(self.config.binary, self.config.environ)
            return self._toolchain

    def get(self, deployment_id: int) -> Deployment:
        return self.repo.get(deployment_id)

    def create(
        self,
        env: EnvRef,
        kind: DeploymentKind = DeploymentKind.DEPLOY,
        *,
        triggered_by: str,
        rollout_id: str | None = None,
        graph: ResolvedGraph | None = None,
    ) -> int:
        """Record a queued deployment; the graph is resolved now unless given (GraphError if it can't be)."""
        graph = graph or resolve_graph(self.repo.load_estate(), env)
        return self.create_all([graph], kind, triggered_by=triggered_by, rollout_id=rollout_id)[0]

    def create_all(
        self,
        graphs: Sequence[ResolvedGraph],
        kind: DeploymentKind,
        *,
        triggered_by: str,
        rollout_id: str | None = None,
    ) -> list[int]:
        """Record one queued deployment per graph in one transaction (all or none); their ids."""
        check_key(self.config.secret_key)
        requests = [NewDeployment(g.env, kind, triggered_by, g, rollout_id, self.holder) for g in graphs]
        return [d.id for d in self.repo.create(requests, self.now())]

    def rollback_to(self, env: EnvRef, deployment_id: int, *, triggered_by: str, rollout_id: str | None = None) -> int:
        """Queue a `rollback` that re-applies `deployment_id`'s graph (same module versions and inputs)."""
        target = self.repo.get(deployment_id)
        if target.env != env:
            raise InputError(f"deployment {deployment_id} belongs to {target.env}, not {env}")
        if target.kind is DeploymentKind.PLAN or target.status is not DeploymentStatus.SUCCEEDED:
            raise ConflictError(
                f"deployment {deployment_id} is a {target.status} {target.kind}; "
                "only a succeeded deploy or rollback can be rolled back to"
            )
        new_id = self.create(
            env, DeploymentKind.ROLLBACK, triggered_by=triggered_by, rollout_id=rollout_id, graph=target.graph
        )
        versions = ", ".join(f"{k}={v}" for k, v in target.graph.versions().items())
        self.repo.append_events(new_id, 0, [estate_event("step", f"rollback to deployment {target.id} ({versions})")])
        return new_id

    def run(self, deployment_id: int) -> Deployment:
        dep = self.repo.get(deployment_id)
        if dep.status.is_terminal:
            return dep
        try:
            with self.locks.hold(dep.env, f"deployment {dep.id}"):
                dep = self.repo.get(deployment_id)  # re-read: we may have waited for nothing
                if dep.status.is_terminal:
                    return dep
                if dep.status.is_active:
                    return self._interrupted(dep)
                return self._execute(dep)
        except EnvironmentBusy as busy:
            # Nothing was attempted: errored, not failed, and worth trying again once the other run ends.
            if dep.status is DeploymentStatus.QUEUED:
                return self.repo.transition(
                    dep.id, DeploymentStatus.ERRORED, self.now(), busy.message, retryable=True, holder=self.holder
                )
            raise

    def cancel(self, deployment_id: int) -> bool:
        with self._lock:
            token = self._running.get(deployment_id)
        if token is not None:
            token.cancel()
            return True
        dep = self.repo.get(deployment_id)
        if dep.status is DeploymentStatus.QUEUED:
            self.repo.transition(dep.id, DeploymentStatus.CANCELLED, self.now(), reason="cancelled before it started")
            return True
        return False

    def hand_back(self, deployment_id: int) -> bool:
        """Stop a running deployment so that another runner redoes it: Terraform is interrupted (it saves its
        state and releases its lock) and the run ends `interrupted`, not cancelled. False if it is not running
        here."""
        with self._lock:
            token = self._running.get(deployment_id)
            if token is not None:
                self._handed_back.add(deployment_id)
        if token is None:
            return False
        token.cancel()
        return True

    def stopped_status(self, deployment_id: int) -> DeploymentStatus:
        """How a run that was stopped ends: interrupted when handed back, else cancelled."""
        with self._lock:
            handed_back = deployment_id in self._handed_back
        return DeploymentStatus.INTERRUPTED if handed_back else DeploymentStatus.CANCELLED

    def recover(self) -> list[Deployment]:
        """Settle deployments whose process died: one that was running becomes `interrupted`; a queued one
        that no rollout will run becomes `cancelled` (never started). A rollout's queued deployments are
        left to the engine that drives it, which runs them (or redoes interrupted ones) by action key."""
        settled = []
        unfinished = (DeploymentStatus.QUEUED, DeploymentStatus.PLANNING, DeploymentStatus.APPLYING)
        for dep in self.repo.list(statuses=unfinished, limit=10_000):
            if (dep.status is DeploymentStatus.QUEUED and dep.rollout_id) or not self.repo.holder_gone(dep, self.now()):
                continue
            try:
                with self.locks.hold(dep.env, "recovery"):
                    current = self.repo.get(dep.id)  # it may have finished since we listed it
                    if current.status.is_active:
                        settled.append(self._interrupted(current))
                    elif current.status is DeploymentStatus.QUEUED:
                        why = f"never started: {current.holder or 'the process that queued it'} stopped first"
                        settled.append(self.repo.transition(current.id, DeploymentStatus.CANCELLED, self.now(), why))
            except EnvironmentBusy:
                continue  # a live process is running it
        return settled

    def _interrupted(self, dep: Deployment) -> Deployment:
        # We hold the environment lock, so no Terraform of ours is running for it: its local
        # state lock, if one is left, is stale.
        if not self.config.backend:
            clear_stale_state_lock(self.config.state_dir(dep.env) / "terraform.tfstate")
        why = f"interrupted: {dep.holder or 'the process running it'} stopped while it ran"
        return self.repo.transition(dep.id, DeploymentStatus.INTERRUPTED, self.now(), why)

    def _execute(self, dep: Deployment) -> Deployment:
        token = CancelToken()
        with self._lock:
            self._running[dep.id] = token
        recorder = EventRecorder(self.repo, dep.id, self.listener)
        run = _Run(self, dep, recorder, token)
        try:
            return run.execute()
        except Exception as exc:
            # A bug or a broken disk/database prevented the attempt: errored, never failed. Record it
            # rather than leave the status dangling; if even that is impossible, the caller hears of it.
            log.exception("deployment %s errored", dep.id)
            if run.dep.status.is_terminal:
                raise
            transient = isinstance(exc, EstateError) and exc.transient
            why = exc.message if isinstance(exc, EstateError) else f"internal error: {type(exc).__name__}: {exc}"
            try:
                return run.move(DeploymentStatus.ERRORED, why, retryable=transient)
            except Exception:
                raise exc from None
        finally:
            recorder.flush()
            with self._lock:
                self._running.pop(dep.id, None)
                self._handed_back.discard(dep.id)


class _Run:
    """One execution of one deployment: the steps, in order, each announced before it starts."""

    def __init__(
        self, service: DeploymentService, dep: Deployment, recorder: EventRecorder, token: CancelToken
    ) -> None:
        self.service = service
        self.repo = service.repo
        self.dep = dep
        self.recorder = recorder
        self.token = token
        self.deadline = time.monotonic() + service.config.timeout_seconds

    def move(self, status: DeploymentStatus, reason: str | None = None, *, retryable: bool = False) -> Deployment:
        self.recorder.flush()
        self.dep = self.repo.transition(
            self.dep.id, status, self.service.now(), reason, retryable=retryable, holder=self.service.holder
        )
        return self.dep

    def execute(self) -> Deployment:
        self.move(DeploymentStatus.PLANNING)
        if self.token.cancelled:
            status = self.service.stopped_status(self.dep.id)
            verb = "handed back" if status is DeploymentStatus.INTERRUPTED else "cancelled"
            return self.move(status, f"{verb} before it started")
        try:
            toolchain = self.service.toolchain()
        except ComponentError as exc:
            self.recorder.error(exc.message)
            return self.move(DeploymentStatus.ERRORED, exc.message)
        self.repo.record_result(self.dep.id, now=self.service.now(), tool_version=str(toolchain))
        ws = Workspace(self.service.config, toolchain, self.dep.graph)
        ws.render()
        failed = self.step("init", ws.init(self.recorder.sink(), self.deadline, self.token), Collector())
        if failed:
            return failed
        unknown = ws.write_outputs()
        if unknown:
            self.recorder.error("; ".join(unknown))
            return self.move(DeploymentStatus.FAILED, f"graph: {unknown[0]}")
        if self.dep.kind is DeploymentKind.PLAN:
            return self.plan(ws)
        saved, why = self.saved_plan(toolchain)
        if saved is not None:
            self.recorder.record(*step_event(f"applying the saved plan of deployment {self.dep.apply_plan}"))
            applied = Collector()
            result = ws.apply(self.applying(applied), self.deadline, self.token, saved)
            saved.unlink(missing_ok=True)  # applied, or stale for good: never applied twice
            if not any(error.startswith(STALE_PLAN) for error in applied.errors):
                source = f"the saved plan of deployment {self.dep.apply_plan}"
                summary = self.repo.get(self.dep.apply_plan or 0).plan_summary
                self.repo.record_result(self.dep.id, now=self.service.now(), plan_summary=summary, plan_source=source)
                return self.finish(result, applied)
            why = f"the saved plan of deployment {self.dep.apply_plan} was stale (the state changed since)"
            self.recorder.record(*step_event(f"{why}: planning again"))
        # No plan-time gate looks at the plan before it is applied, so one process plans and applies; its
        # planned_change events are the record of the plan it applied (docs/decisions/0011-terraform-sequences.md).
        applied = Collector()
        result = ws.apply(self.applying(applied), self.deadline, self.token)
        source = "planned by the apply itself" + (f": {why}" if why else "")
        self.repo.record_result(
            self.dep.id, now=self.service.now(), plan_summary=applied.plan_summary(), plan_source=source
        )
        return self.finish(result, applied)

    def plan(self, ws: Workspace) -> Deployment:
        """A plan deployment: plan, record what it would do, keep the saved plan for a deploy to apply."""
        plan = Collector()
        result = ws.plan(
            self.service.config.plan_path(self.dep.id), self.recorder.sink(plan), self.deadline, self.token
        )
        self.repo.record_result(self.dep.id, now=self.service.now(), plan_summary=plan.plan_summary())
        return self.step("plan", result, plan, ok=(0, 2)) or self.move(DeploymentStatus.SUCCEEDED)

    def saved_plan(self, toolchain: Toolchain) -> tuple[Path | None, str]:
        """The saved plan this deploy is to apply, or None and why not (empty: none was asked for). A saved
        plan carries its own configuration, so it is applied only when made for exactly this graph, by this
        binary; Terraform itself refuses it if the state changed since (stale)."""
        plan_id = self.dep.apply_plan
        if plan_id is None or self.dep.kind is not DeploymentKind.DEPLOY:
            return None, ""
        path = self.service.config.plan_path(plan_id)
        plan = self.repo.get(plan_id)
        if plan.kind is not DeploymentKind.PLAN or plan.status is not DeploymentStatus.SUCCEEDED:
            return None, f"deployment {plan_id} is not a succeeded plan"
        if plan.graph != self.dep.graph:
            return None, f"the configuration changed since deployment {plan_id} planned it"
        if plan.tool_version != str(toolchain):
            return None, f"deployment {plan_id} was planned by {plan.tool_version}, not {toolchain}"
        if not path.is_file():
            return None, f"the saved plan of deployment {plan_id} is gone (applied or discarded)"
        # Terraform calls a plan stale only if the state it was made from existed: a plan made from no state
        # would be applied over whatever was deployed since. Any run of ours since the plan makes it stale.
        since = [
            d
            for d in self.repo.list(self.dep.env, limit=20)
            if plan_id < d.id != self.dep.id
            and d.kind is not DeploymentKind.PLAN
            and any(t.status is DeploymentStatus.PLANNING for t in d.transitions)
        ]
        if since:
            return None, f"deployment {since[0].id} ran after deployment {plan_id} planned it"
        return path, ""

    def applying(self, collector: Collector) -> Callable[[TerraformEvent, Raw], None]:
        """A sink that records the deployment as applying when Terraform starts changing the first resource."""
        record = self.recorder.sink(collector)

        def take(event: TerraformEvent, raw: Raw) -> None:
            if event.type == "apply_start" and self.dep.status is DeploymentStatus.PLANNING:
                self.move(DeploymentStatus.APPLYING)
            record(event, raw)

        return take

    def finish(self, result: ProcessResult, applied: Collector) -> Deployment:
        graph = self.dep.graph
        outputs = {render.output_key(graph, k): v for k, v in applied.outputs.items()}
        secrets = {render.output_key(graph, k): v for k, v in applied.secrets.items()}
        self.repo.record_result(
            self.dep.id, now=self.service.now(), outputs=outputs, secrets=seal(secrets, self.service.config.secret_key)
        )
        step = "apply" if self.dep.status is DeploymentStatus.APPLYING else "plan"
        return self.step(step, result, applied) or self.move(DeploymentStatus.SUCCEEDED)

    def step(
        self, name: str, result: ProcessResult | None, collected: Collector, ok: tuple[int, ...] = (0,)
    ) -> Deployment | None:
        """The terminal record if step `name` did not succeed, else None (a skipped step succeeded)."""
        if result is None or (result.stopped is None and result.returncode in ok):
            return None
        if result.stopped == "cancelled":
            status = self.service.stopped_status(self.dep.id)
            verb = "handed back" if status is DeploymentStatus.INTERRUPTED else "cancelled"
            return self.move(status, f"{verb} during {name}")
        if result.stopped == "timeout":
            limit = self.service.config.timeout_seconds
            reason = (
                f"timeout: the deployment exceeded its {limit:g}s limit during {name}; the process group was killed"
            )
            self.recorder.error(reason)
            return self.move(DeploymentStatus.FAILED, reason)
        detail = collected.errors[0] if collected.errors else _stderr_summary(result.stderr)
        if STATE_LOCKED in detail:
            # Another run holds the state lock (the `pg` backend also serializes the first creation of every
            # environment's state in one database): nothing was attempted, and it passes by itself.
            return self.move(DeploymentStatus.ERRORED, f"{name}: the state is locked: {detail}", retryable=True)
        return self.move(DeploymentStatus.FAILED, f"{name} failed: {detail}")


def _stderr_summary(stderr: str) -> str:
    """The `Error: ...` paragraph of non-JSON output (init has no -json mode in Terraform 1.0)."""
    lines = [line.strip() for line in stderr.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Error")), None)
    if start is None:
        return " ".join(" ".join(lines).split())[:500] or "exit status non-zero"
    paragraph: list[str] = []
    for line in lines[start:]:
        if not line and len(paragraph) > 1:
            break
        if line:
            paragraph.append(line)
    return " ".join(paragraph)[:500]
