"""The Temporal engine as the application layer sees it (`estate.app.engines.EngineGateway`): a rollout is
a workflow, a command is an Update, "needs a human" is the workflow's `progress` query.

The store stays the read model: a command returns once the workflow has projected its answer there. A
refusal comes from the Update's validator (so it never enters the history) and is written to the rollout's
log here. The store is also where a rollout starts from: if Temporal was unreachable when the rollout was
recorded, the next command (or `drive`) starts its workflow from the stored state.

The application layer is synchronous; the Temporal client lives on an event loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from estate.domain import rollout_events as ev
from estate.domain.rollout import decide
from estate.engine.driver import command_entry
from estate.errors import ComponentError, InputError, OperationFailed
from estate.store import Store
from estate.store.rollout_log import append_log
from estate.store.rollouts import RolloutSession, RolloutStore
from estate.temporal import contract as c
from estate.temporal.client import TemporalSettings, connect
from estate.temporal.workflow import RolloutWorkflow

T = TypeVar("T")
ANSWER_SECONDS = 30.0  # how long a command waits for a worker to take it
POLL_SECONDS = 0.2
PATIENCE_SECONDS = 300.0  # `drive` gives up when the workflow has answered no query for this long
_BUSY = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED, RPCStatusCode.FAILED_PRECONDITION)
TURN_TIMEOUT = timedelta(seconds=60)  # one workflow task (a turn) of the largest rollout; Temporal's default is 10 s


class TemporalEngine:
    """See the module docstring."""

    def __init__(
        self,
        settings: TemporalSettings,
        store: Store,
        *,
        now: Callable[[], datetime],
        on_log: Callable[[str, str], None] = lambda rollout_id, line: None,
        limits: c.Limits | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.rollouts = RolloutStore(store)
        self.now = now
        self.on_log = on_log
        self.limits = limits or c.Limits(heartbeat_seconds=settings.heartbeat_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Client | None = None
        self._mutex = threading.Lock()

    # -- EngineGateway ----------------------------------------------------------------------------

    def submitted(self, rollout_id: str, *, follow: bool) -> None:
        self._run(self._start(rollout_id))
        if follow:
            self.drive(rollout_id)

    def command(self, rollout_id: str, command: ev.Command, *, follow: bool) -> str:
        outcome = self._run(self._command(rollout_id, command))
        if outcome != "ok":
            return outcome
        if follow:
            self.drive(rollout_id)
        return outcome

    def drive(self, rollout_id: str) -> None:
        """Wait until the workflow says the rollout needs a human (or is over), showing its log as it grows."""
        shown = self._log_tail(rollout_id, None)
        answered_at = time.monotonic()
        while not (progress := self._run(self._progress(rollout_id))).settled:
            if progress.phase:
                answered_at = time.monotonic()
            elif time.monotonic() - answered_at > PATIENCE_SECONDS:
                raise ComponentError(
                    "temporal",
                    f"the workflow of rollout {rollout_id} has not answered for {PATIENCE_SECONDS:g}s",
                    hint="its workflow task keeps failing or timing out: see the rollout workers' logs",
                    transient=True,
                )
            shown = self._log_tail(rollout_id, shown)
            threading.Event().wait(POLL_SECONDS)
        self._log_tail(rollout_id, shown)

    def run_engine(self, rollouts: builtins.list[str] | None, *, once: bool) -> dict[str, str]:
        raise InputError(
            "this estate's rollouts run on Temporal (settings.engine.kind: temporal); there is no local engine",
            hint="run workers instead: estate worker --rollouts --pool NAME",
        )

    def poke(self) -> None:
        """Make every active rollout's workflow read the store's inbox and the freezes now."""
        self._run(self._nudge_all())

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = self._client = None

    # -- Temporal ---------------------------------------------------------------------------------

    async def _client_(self) -> Client:
        if self._client is None:
            self._client = await connect(self.settings)
        return self._client

    async def _handle(self, rollout_id: str) -> WorkflowHandle[Any, Any]:
        return (await self._client_()).get_workflow_handle(c.workflow_id(self.settings.task_queue, rollout_id))

    async def _start(self, rollout_id: str) -> bool:
        """Start the rollout's workflow from the stored state, unless it runs (or ran) already; True if it did."""
        session = RolloutSession(self.store, rollout_id)
        state = session.state()
        if state.phase.is_terminal:
            return False
        queued = tuple(c.Queued(i, command) for i, command in session.commands())
        client = await self._client_()
        try:
            await client.start_workflow(
                RolloutWorkflow.run,
                c.RolloutInput(state, self.settings.task_queue, queued, limits=self.limits),
                id=c.workflow_id(self.settings.task_queue, rollout_id),
                task_queue=self.settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                task_timeout=TURN_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return False
        return True

    async def _command(self, rollout_id: str, command: ev.Command, *, again: bool = True) -> str:
        self.rollouts.record(rollout_id)  # NotFoundError for an unknown rollout
        handle = await self._handle(rollout_id)
        request = c.CommandRequest(uuid.uuid4().hex, command)
        try:
            answer: str = await handle.execute_update(
                RolloutWorkflow.command, request, id=request.id, rpc_timeout=timedelta(seconds=ANSWER_SECONDS)
            )
            return answer
        except WorkflowUpdateFailedError as failed:
            cause = failed.cause
            if isinstance(cause, ApplicationError) and cause.type == c.REFUSED:
                self._record_refusal(rollout_id, command, cause.message)
                return cause.message
            raise ComponentError("temporal", f"the rollout workflow failed the command: {cause}") from failed
        except WorkflowUpdateRPCTimeoutOrCancelledError as slow:
            raise OperationFailed(
                f"no Temporal worker answered within {ANSWER_SECONDS:g}s; the command was not applied",
                hint="start one: estate worker --rollouts",
            ) from slow
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND and again and await self._start(rollout_id):
                return await self._command(rollout_id, command, again=False)  # it had never started
            if error.status is RPCStatusCode.NOT_FOUND:  # the workflow is over: answer as the machine would
                refused = decide(self.rollouts.state(rollout_id), command, self.now()).refused
                if refused is not None:
                    self._record_refusal(rollout_id, command, refused)
                return refused or "ok"
            raise ComponentError("temporal", str(error), transient=True) from error

    async def _nudge_all(self) -> None:
        for rollout_id in self.rollouts.active():
            with contextlib.suppress(RPCError):  # not started yet, or over: it reads the inbox when it starts
                await (await self._handle(rollout_id)).signal(c.NUDGE)

    async def _progress(self, rollout_id: str) -> c.Progress:
        handle = await self._handle(rollout_id)
        try:
            progress: c.Progress = await handle.query(RolloutWorkflow.progress, rpc_timeout=timedelta(seconds=30))
            return progress
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND and await self._start(rollout_id):
                return c.Progress("pending", False, 0)
            if error.status is RPCStatusCode.NOT_FOUND:
                return c.Progress(str(self.rollouts.record(rollout_id).phase), True, 0)
            if error.status in _BUSY or "Timeout" in error.message:
                # The workflow is busy (a long turn), or its last task failed (a worker too slow on a loaded
                # machine, the task timed out) and Temporal retries it: ask again.
                return c.Progress("", False, 0)
            raise ComponentError("temporal", str(error), transient=True) from error

    def _record_refusal(self, rollout_id: str, command: ev.Command, refusal: str) -> None:
        append_log(self.store, rollout_id, [command_entry(command, refusal)], self.now())

    def _log_tail(self, rollout_id: str, after: int | None) -> int:
        """Show the log lines after id `after` (None: show none, just find the end); the last id seen."""
        events = self.rollouts.events(rollout_id, last=200 if after is not None else 1)
        last = after or 0
        for e in events:
            if after is not None and e["id"] > after:
                self.on_log(rollout_id, e["summary"])
            last = max(last, e["id"])
        return last

    # -- the event loop thread --------------------------------------------------------------------

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self._ensure_loop())
        return future.result()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._mutex:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="estate-temporal-client", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop
