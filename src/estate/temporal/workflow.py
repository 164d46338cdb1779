"""The rollout workflow: one Temporal workflow per rollout runs the pure state machine (`decide`).

The same turn as the local engine's driver, with Temporal keeping the state durable:

- **Commands** arrive as Updates. The validator asks `decide` and raises its refusal, so a refused command
  fails fast and never enters the history; an accepted one is decided in the next turn and answered once
  the new state is projected into the store.
- **Observations** come back from activities (a deployment finished, a gate round was sampled) and from
  timers (bakes, sampling intervals, back-offs, holds are durable workflow timers, never sleeps in activities).
- **The store's inbox and the freezes** (alerts that Alertmanager delivered, freezes set or lifted) are read
  by a local activity every `Limits.poll_seconds`, and at once when a client sends the `nudge` signal.
- **A turn** decides every command and observation that arrived, projects the new state and its log into the
  store (the read model the CLI, the API and the console query), and only then performs the actions.
- **Deployments** are created in the store by a local activity, idempotently by action key, then run by
  the `estate.run_deployment` activity on the task queue of the environment's runner pool. Its activity id
  is the action key (with the deployment id), so a retried activity never deploys twice. No worker polling
  a pool means the activity waits to be started, never that it failed.
- **Limits**: at most `Limits.max_pending` deployment activities are scheduled at once, and when the history
  grows long (Temporal suggests it, or `continue_after` events) the workflow stops scheduling, lets what is
  in flight finish, and continues as new with its state; the new run performs `outstanding(state)` again.

Local activities (the store, a gate's sampling round) run one at a time in the main loop, never
concurrently: their results must reach the workflow in an order that replays.

Only the domain, the contract and Temporal's workflow API are imported here (the sandbox passes the
pure modules through, see `estate.temporal.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from estate.domain import rollout_events as ev
    from estate.domain.deployments import DeploymentStatus
    from estate.domain.gate_eval import Sample, subjects
    from estate.domain.ids import EnvRef
    from estate.domain.rollout import decide, decide_observations, outstanding, wakes
    from estate.domain.rollout_progress import WAITING, held
    from estate.domain.rollout_state import RolloutPhase, RolloutState
    from estate.temporal import contract as c

_STORE_TIMEOUT = timedelta(minutes=2)
# The store may be down for a while: keep trying (a rollout never gives up on its read model).
_STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
_APPLIED_KEPT = 1000  # update ids remembered across continue-as-new (a client retries within seconds)


@workflow.defn(name=c.WORKFLOW)
class RolloutWorkflow:
    """See the module docstring."""

    @workflow.init
    def __init__(self, inp: c.RolloutInput) -> None:
        self.inp = inp
        self.state: RolloutState = inp.state
        self.projected: RolloutState = inp.state
        # (command or alert, Update id, store inbox id)
        self.commands: list[tuple[ev.Queued, str | None, int | None]] = [(q.command, None, q.id) for q in inp.queued]
        self.touched: set[EnvRef] = set()  # environments the decisions changed since the last projection
        self.observations: list[ev.Observation] = []
        self.answers: dict[str, str] = {}
        self.applied: list[str] = list(inp.applied)
        self.waiting: deque[ev.StartDeployment] = deque()  # decided, not scheduled yet (limits, continue-as-new)
        self.deploying: dict[str, ev.StartDeployment] = {}  # key -> action being prepared or run
        self.timers: dict[str, tuple[datetime, ev.SampleGate | None]] = {}  # key -> (when, sampling or a tick)
        self.finalizing: list[ev.Finalize] = []
        self.kicked = False
        self.nudged = True  # read the store's inbox and the freezes first thing
        self.polled_at: datetime | None = None

    # -- the client's side ------------------------------------------------------------------------

    @workflow.update
    async def command(self, request: c.CommandRequest) -> str:
        """Decide `request.command` in the next turn; "ok" or the refusal, once the store shows the result."""
        if request.id in self.applied:  # the client retried an Update a previous run already applied
            return self.answers.get(request.id, "ok")
        self.commands.append((request.command, request.id, None))
        await workflow.wait_condition(lambda: request.id in self.answers)
        return self.answers[request.id]

    @command.validator
    def _validate(self, request: c.CommandRequest) -> None:
        if request.id in self.applied:
            return
        refused = decide(self.state, request.command, workflow.now()).refused
        if refused is not None:
            raise ApplicationError(refused, type=c.REFUSED, non_retryable=True)

    @workflow.signal(name=c.NUDGE)
    def nudge(self) -> None:
        """Something was queued in the store's inbox, or the freezes changed: read them now."""
        self.nudged = True

    @workflow.query
    def progress(self) -> c.Progress:
        return c.Progress(str(self.state.phase), self._settled(), self.inp.run)

    # -- the loop ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: c.RolloutInput) -> str:
        self._perform(outstanding(self.state))
        self.kicked = True  # what a previous run left waiting is scheduled at once
        while True:
            await self._wait()
            # Local activities run one at a time, here: their results then arrive in an order that replays.
            if self._poll_due():
                await self._poll()
            for sampling in self._fire_timers(workflow.now()):
                await self._sample(sampling)
            if self.commands or self.observations:
                await self._turn(workflow.now())
            while self.finalizing:
                await self._finalize(self.finalizing.pop(0))
            await self._schedule()
            if self._over():
                return str(self.state.phase)
            if self._continue_due() and self._idle():
                workflow.continue_as_new(
                    c.RolloutInput(
                        self.state, inp.task_queue, (), tuple(self.applied[-_APPLIED_KEPT:]), inp.limits, inp.run + 1
                    )
                )

    async def _wait(self) -> None:
        if not (self.commands or self.observations or self.kicked or self.nudged):
            wakes = [when for when, _ in self.timers.values()]
            if self.polled_at is not None and not self.state.phase.is_terminal:
                wakes.append(self.polled_at + timedelta(seconds=self.inp.limits.poll_seconds))
            due = min(wakes, default=None)
            timeout = None if due is None else max((due - workflow.now()).total_seconds(), 0.001)
            with contextlib.suppress(TimeoutError):  # a timer is due
                await workflow.wait_condition(
                    lambda: bool(self.commands or self.observations or self.kicked or self.nudged),
                    timeout=timeout,
                    timeout_summary="wake",
                )
        self.kicked = False
        # Results that arrive close together are decided in one turn (one projection, far fewer events); a
        # command is never held back. The pause is fixed: a decision that depended on the clock could take
        # another branch on replay.
        if self.observations and not self.commands and self.inp.limits.turn_seconds > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: bool(self.commands), timeout=self.inp.limits.turn_seconds, timeout_summary="gather"
                )

    async def _turn(self, now: datetime) -> None:
        commands, self.commands = self.commands, []
        events, self.observations = self.observations, []
        state = self.state
        decided: list[c.Decided] = []
        actions: list[ev.Action] = []
        log: list[ev.Transition] = []
        for command, _, queued in commands:
            if isinstance(command, ev.AlertFired):  # an alert from the store's inbox: stop the line, or ignore it
                decision = decide_observations(state, [command], now)
            else:
                decision = decide(state, command, now)
            decided.append(c.Decided(command, decision.refused, queued))
            state, actions, log = decision.state, [*actions, *decision.actions], [*log, *decision.log]
            self.touched |= decision.touched
        if events:
            decision = decide_observations(state, events, now)
            state, actions, log = decision.state, [*actions, *decision.actions], [*log, *decision.log]
            self.touched |= decision.touched
        self.state = state
        defective = tuple(a for a in actions if isinstance(a, ev.MarkDefective))
        await self._project(now, tuple(decided), tuple(log), defective)
        for (_, update_id, _), outcome in zip(commands, decided, strict=True):
            if update_id is not None:
                self.answers[update_id] = outcome.refused or "ok"
                self.applied.append(update_id)
        self._perform(actions)
        self._forget_stale_timers()

    async def _project(
        self,
        now: datetime,
        decided: tuple[c.Decided, ...],
        log: tuple[ev.Transition, ...],
        defective: tuple[ev.MarkDefective, ...] = (),
    ) -> None:
        state = self.state
        change = c.delta(self.projected, state, self.touched)
        projection = c.Projection(state.id, now, change, decided, log, defective)
        await workflow.execute_local_activity(
            c.PROJECT,
            projection,
            summary="project into the store",
            start_to_close_timeout=_STORE_TIMEOUT,
            retry_policy=_STORE_RETRY,
        )
        self.projected = state
        self.touched = set()

    def _poll_due(self) -> bool:
        if self.state.phase.is_terminal:
            return False
        if self.nudged or self.polled_at is None:
            return True
        return workflow.now() >= self.polled_at + timedelta(seconds=self.inp.limits.poll_seconds)

    async def _poll(self) -> None:
        """Read the store's inbox (alerts, a command queued there) and the freezes in force."""
        self.nudged = False
        self.polled_at = workflow.now()
        known = {queued for _, _, queued in self.commands if queued is not None}
        polled = await workflow.execute_local_activity(
            c.POLL,
            c.PollRequest(self.state.id),
            result_type=c.Polled,
            summary="read the inbox and the freezes",
            start_to_close_timeout=_STORE_TIMEOUT,
            retry_policy=_STORE_RETRY,
        )
        self.commands += [(q.command, None, q.id) for q in polled.queued if q.id not in known]
        if polled.freezes != self.state.freezes:
            self.observations.append(ev.FreezesChanged(polled.freezes))

    def _forget_stale_timers(self) -> None:
        """Drop the timers the state no longer waits on (a hold lifted early, a gate left by a rollback)."""
        if self.timers:
            wanted = {a.key for a in wakes(self.state)}
            for key in [k for k in self.timers if k not in wanted]:
                del self.timers[key]

    def _perform(self, actions: Sequence[ev.Action]) -> None:
        for action in actions:
            if isinstance(action, ev.StartDeployment):
                if action.key not in self.deploying and all(a.key != action.key for a in self.waiting):
                    self.waiting.append(action)
            elif isinstance(action, ev.SampleGate):
                self.timers.setdefault(action.key, (action.not_before, action))
            elif isinstance(action, ev.WakeAt):
                self.timers.setdefault(action.key, (action.when, None))
            elif isinstance(action, ev.Finalize):
                self.finalizing.append(action)
            # MarkDefective is done by the projection that records the failure

    def _fire_timers(self, now: datetime) -> list[ev.SampleGate]:
        """Tick for the timers that are due; the sampling rounds that are due."""
        due = [key for key, (when, _) in self.timers.items() if when <= now]
        samplings: list[ev.SampleGate] = []
        for key in due:
            _, sampling = self.timers.pop(key)
            if sampling is not None:
                samplings.append(sampling)
            elif not any(isinstance(o, ev.Tick) for o in self.observations):
                self.observations.append(ev.Tick())
        return samplings

    def _spawn_run(self, action: ev.StartDeployment, found: c.Prepared) -> None:
        async def run() -> None:
            try:
                await self._run(action, found)
            finally:
                self.kicked = True

        asyncio.create_task(run())  # noqa: RUF006 - the workflow's event loop keeps it; `deploying` tracks it

    # -- deployments ------------------------------------------------------------------------------

    async def _schedule(self) -> None:
        """Prepare the waiting deployments, up to the limit; none while a continue-as-new is due."""
        if self._continue_due():
            return
        batch: list[ev.StartDeployment] = []
        while self.waiting and len(self.deploying) < self.inp.limits.max_pending:
            action = self.waiting.popleft()
            self.deploying[action.key] = action
            batch.append(action)
        if batch:
            await self._prepare(tuple(batch))

    async def _prepare(self, actions: tuple[ev.StartDeployment, ...]) -> None:
        # After an abort nothing new starts: an action whose deployment does not exist yet is not started.
        request = c.PrepareRequest(self.state.id, actions, create=self.state.phase is not RolloutPhase.ABORTED)
        batch = await workflow.execute_local_activity(
            c.PREPARE,
            request,
            result_type=c.PreparedBatch,
            summary="create deployments",
            start_to_close_timeout=_STORE_TIMEOUT,
            retry_policy=_STORE_RETRY,
        )
        for action, found in zip(actions, batch.items, strict=True):
            if found.deployment_id is None:
                self._finished(action, "", c.RunOutcome(DeploymentStatus.CANCELLED, "not started: aborted"))
                continue
            deployment_id = str(found.deployment_id)
            env = self.state.env(action.env)
            if env is None or env.deployment_id != deployment_id:
                self.observations.append(ev.DeploymentStarted(action.key, action.env, deployment_id))
            if found.status is DeploymentStatus.INTERRUPTED:
                self._redo(action)
            elif found.status is not None and found.status.is_terminal:
                self._finished(action, deployment_id, c.RunOutcome(found.status, found.reason, found.retryable))
            else:
                self._spawn_run(action, found)

    async def _run(self, action: ev.StartDeployment, found: c.Prepared) -> None:
        limits = self.inp.limits
        assert found.deployment_id is not None
        try:
            outcome = await workflow.execute_activity(
                c.RUN_DEPLOYMENT,
                c.RunRequest(found.deployment_id, found.pool, action.key),
                result_type=c.RunOutcome,
                task_queue=c.pool_queue(self.inp.task_queue, found.pool),
                activity_id=f"{action.key}#{found.deployment_id}",
                start_to_close_timeout=timedelta(seconds=limits.run_timeout_seconds),
                heartbeat_timeout=timedelta(seconds=limits.heartbeat_seconds),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
                summary=f"{action.kind} {action.env} on pool {found.pool}",
            )
        except ActivityError as error:  # only a non-retryable failure ends up here: nothing judged the change
            outcome = c.RunOutcome(DeploymentStatus.ERRORED, f"runner: {error.cause or error}", retryable=True)
        if outcome.status is DeploymentStatus.INTERRUPTED:  # the run proves nothing: redo it as a new deployment
            self._redo(action)
        else:
            self._finished(action, str(found.deployment_id), outcome)

    def _redo(self, action: ev.StartDeployment) -> None:
        self.deploying.pop(action.key, None)
        self.waiting.appendleft(action)
        self.kicked = True

    def _finished(self, action: ev.StartDeployment, deployment_id: str, outcome: c.RunOutcome) -> None:
        self.deploying.pop(action.key, None)
        self.observations.append(
            ev.DeploymentFinished(
                action.key, action.env, deployment_id, outcome.status, outcome.reason, outcome.retryable
            )
        )

    # -- gates and the end ------------------------------------------------------------------------

    async def _sample(self, action: ev.SampleGate) -> None:
        wave_name = self.state.spec(action.wave).name
        try:
            result = await workflow.execute_local_activity(
                c.SAMPLE,
                c.SampleRequest(self.state.id, wave_name, action),
                result_type=c.Samples,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary=f"sample wave {action.wave} gate {action.gate_index}",
            )
            samples = result.samples
        except ActivityError as error:  # a round nobody could take: an error per subject, never a pass
            expected = subjects(action.gate, wave_name, [str(e) for e in action.envs])
            samples = tuple(Sample(s, action.round, "", error=f"sampling failed: {error.cause}") for s in expected)
        self.observations.append(ev.GateSampled(action.key, action.wave, action.gate_index, action.round, samples))

    async def _finalize(self, action: ev.Finalize) -> None:
        request = c.FinalizeRequest(self.state.id, action)
        await workflow.execute_local_activity(
            c.FINALIZE, request, summary="finalize", start_to_close_timeout=_STORE_TIMEOUT, retry_policy=_STORE_RETRY
        )

    def _busy(self) -> bool:
        return bool(self.commands or self.observations or self.waiting or self.deploying or self.finalizing)

    def _settled(self) -> bool:
        """Nothing will happen until a human acts (or the rollout is over), or until a freeze lifts or a change
        window opens (a held wave with nothing in flight), and the store shows it."""
        if self._busy() or self.projected is not self.state:
            return False
        phase = self.state.phase
        if phase in WAITING or phase.is_terminal:
            return not self.timers
        return held(self.state)

    def _over(self) -> bool:
        return (
            self.state.phase.is_terminal
            and not self._busy()
            and self.projected is self.state
            and workflow.all_handlers_finished()
        )

    def _continue_due(self) -> bool:
        info = workflow.info()
        length = info.get_current_history_length()
        # A fresh run's own input may already be large: continuing at once would only loop.
        return length >= self.inp.limits.continue_after or (length > 100 and info.is_continue_as_new_suggested())

    def _idle(self) -> bool:
        """Nothing in flight that continuing as new would drop (timers and waiting work are re-derived)."""
        in_flight = self.commands or self.observations or self.deploying or self.finalizing
        return not in_flight and self.projected is self.state and workflow.all_handlers_finished()
