"""Where the rollout engine runs, as seen from the use cases: the one seam between `Rollouts` and an engine.

- `EmbeddedEngine` (the CLI without a server): the local engine runs right here, in the foreground.
- `HostedEngine` (`estate server`): an engine host drives every rollout; a command is queued and answered.
- `estate.temporal.gateway.TemporalEngine`: one Temporal workflow per rollout, commands as Updates.

`bootstrap` picks one from the settings. Each answers a command with "ok" or the state machine's refusal.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from estate.domain import rollout_events as ev
from estate.engine.config import EngineConfig
from estate.engine.host import EngineHost
from estate.errors import ComponentError
from estate.store.rollouts import RolloutStore

OUTCOME_WAIT_SECONDS = 10.0  # how long a command waits for another engine to answer it


class EngineGateway(Protocol):
    def submitted(self, rollout_id: str, *, follow: bool) -> None:
        """A rollout was recorded with its `Start` queued: get it going (and drive it here when `follow`)."""

    def command(self, rollout_id: str, command: ev.Command, *, follow: bool) -> str:
        """The state machine's answer to `command`: "ok" or its refusal; a transient ComponentError if none came
        in time. With `follow`, an accepted command returns once the rollout needs a human again."""
        ...

    def drive(self, rollout_id: str) -> None:
        """Return when the rollout needs a human (embedded: drive it here until then)."""

    def run_engine(self, rollouts: builtins.list[str] | None, *, once: bool) -> dict[str, str]:
        """Drive rollouts in the foreground; where each ended up."""
        ...

    def poke(self) -> None:
        """Something was queued in a rollout's inbox (an alert), or the freezes changed: tell the engine now."""

    def close(self) -> None: ...


class _Inbox:
    """Commands through the store's inbox, answered by whichever local engine drives the rollout."""

    def __init__(self, engine: EngineConfig, now: Callable[[], datetime], sleep: Callable[[float], None]) -> None:
        self.engine = engine
        self.rollouts = RolloutStore(engine.store)
        self.now = now
        self.sleep = sleep

    def command(self, rollout_id: str, command: ev.Command, *, follow: bool) -> str:
        command_id = self.rollouts.enqueue(rollout_id, command, self.now())
        outcome = self._answer(rollout_id, command_id, follow=follow)
        if outcome is None:
            raise ComponentError(
                "engine",
                f"command queued (#{command_id}); the engine driving {rollout_id} has not taken it yet",
                hint=f"watch it with: estate rollout status {rollout_id} --watch",
                transient=True,
            )
        return outcome

    def _answer(self, rollout_id: str, command_id: int, *, follow: bool) -> str | None:
        self.poke()
        deadline = self.now().timestamp() + OUTCOME_WAIT_SECONDS
        while True:
            outcome = self.rollouts.outcome(command_id)
            if outcome is not None or self.now().timestamp() >= deadline:
                return outcome
            self.sleep(0.05)

    def poke(self) -> None:
        """Tell whoever drives the rollout that a command is queued (the engine of another process polls)."""

    def run_engine(self, rollouts: builtins.list[str] | None, *, once: bool) -> dict[str, str]:
        host = EngineHost(self.engine)
        host.run(rollouts, until=(lambda h: h.all_settled()) if once else None, tolerate=not once)
        seen = set(rollouts or []) | set(host.drivers) | set(host.elsewhere) | host.ended
        return {
            r: f"driven by {host.elsewhere[r]}" if r in host.elsewhere else self.rollouts.record(r).phase
            for r in sorted(seen)
        }

    def close(self) -> None:
        pass


class EmbeddedEngine(_Inbox):
    """The local engine runs in this process: on until the rollout needs a human when following."""

    def submitted(self, rollout_id: str, *, follow: bool) -> None:
        if follow:
            self.drive(rollout_id)

    def _answer(self, rollout_id: str, command_id: int, *, follow: bool) -> str | None:
        host = EngineHost(self.engine)

        def answered(h: EngineHost) -> bool:
            outcome = self.rollouts.outcome(command_id)
            return outcome is not None and (outcome != "ok" or not follow or h.settled(rollout_id))

        host.run([rollout_id], until=answered, tolerate=False)
        if rollout_id not in host.elsewhere:
            return self.rollouts.outcome(command_id)
        return super()._answer(rollout_id, command_id, follow=follow)

    def drive(self, rollout_id: str) -> None:
        EngineHost(self.engine).drive(rollout_id)


class HostedEngine(_Inbox):
    """An engine host (a thread of `estate server`) drives every rollout; commands wake it up."""

    def __init__(
        self, host: EngineHost, engine: EngineConfig, now: Callable[[], datetime], sleep: Callable[[float], None]
    ) -> None:
        super().__init__(engine, now, sleep)
        self.host = host

    def submitted(self, rollout_id: str, *, follow: bool) -> None:
        self.host.poke()

    def poke(self) -> None:
        self.host.poke()

    def drive(self, rollout_id: str) -> None:
        pass  # the host drives it
