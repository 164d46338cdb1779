"""The rollout application service: start, preview, queue commands, and drive the engine.

CLI and (later) API call this; it wires the store, the runner and the engine, and never decides what a
rollout does next: that is the pure state machine's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from estate.domain import rollout_events as ev
from estate.domain.model import Estate
from estate.domain.plans import ApprovalGate, RolloutPlan
from estate.domain.rollout_state import RolloutPhase, RolloutState, new_rollout
from estate.engine import preflight as pf
from estate.engine.driver import EngineConfig, LeaseHeld, RolloutEngine
from estate.errors import ConflictError, OperationFailed
from estate.runners.ports import Runner
from estate.store import Store
from estate.store import rollouts as repo
from estate.store.codec import decode_as, encode

TERMINAL = [str(p) for p in RolloutPhase if p.is_terminal]


@dataclass(frozen=True)
class Started:
    rollout_id: str
    preview: pf.Preview
    warnings: tuple[str, ...]


class RolloutService:
    """Everything a user can do to rollouts, as one object built by the CLI's wiring."""

    def __init__(
        self,
        store: Store,
        runner: Runner,
        engine: Callable[[], EngineConfig],
        *,
        now: Callable[[], datetime],
        max_parallel: int,
    ) -> None:
        self.store = store
        self.runner = runner
        self.engine_config = engine
        self.now = now
        self.max_parallel = max_parallel

    def preview(
        self,
        module: str,
        version: str,
        plan_id: str,
        *,
        actor: str,
        allow_uncovered: bool = True,
        preflight: bool = True,
        progress: Callable[[int, int], None] = lambda d, t: None,
    ) -> pf.Preview:
        estate = self.store.load_estate()
        plan = pf.plan_of(estate, plan_id)
        found = pf.targets(estate, module, version, plan)
        pf.check_uncovered(found, allow_uncovered)
        return self._planned(estate, module, version, plan, found, actor, preflight, progress)

    def _planned(
        self,
        estate: Estate,
        module: str,
        version: str,
        plan: RolloutPlan,
        found: pf.Targets,
        actor: str,
        preflight: bool,
        progress: Callable[[int, int], None],
    ) -> pf.Preview:
        """The blast radius of `found`: real plans of `version` (preflight), or membership only."""
        if not preflight:
            return pf.unplanned(module, version, plan, found)
        return pf.run_preflight(
            estate,
            self.runner,
            module,
            version,
            plan,
            found,
            max_parallel=self.max_parallel,
            actor=actor,
            progress=progress,
        )

    def start(
        self,
        module: str,
        version: str,
        plan_id: str,
        *,
        actor: str,
        allow_uncovered: bool = False,
        allow_destroy: bool = False,
        preflight: bool = True,
        progress: Callable[[int, int], None] = lambda d, t: None,
    ) -> Started:
        """Validate, preflight, then record the rollout and its `Start` command (nothing deploys yet)."""
        self._refuse_if_busy(module)
        estate = self.store.load_estate()
        plan = pf.plan_of(estate, plan_id)
        found = pf.targets(estate, module, version, plan)
        pf.check_uncovered(found, allow_uncovered)
        preview = self._planned(estate, module, version, plan, found, actor, preflight, progress)
        warnings = pf.check_preflight(preview, plan, allow_destroy)
        now = self.now()
        for _ in range(5):  # another start may take the same id between our read and our insert
            try:
                with self.store.engine.begin() as conn:
                    if repo.active_rollout_for(conn, module, TERMINAL):
                        self._refuse_if_busy(module)
                    rollout_id = repo.next_rollout_id(conn, module)
                    state = new_rollout(
                        rollout_id=rollout_id,
                        module=module,
                        version=version,
                        plan=plan,
                        membership=found.membership.waves,
                        previous_versions=found.current,
                        started_by=actor,
                        now=now,
                    )
                    repo.insert_rollout(
                        conn,
                        repo.RolloutRecord(
                            rollout_id,
                            module,
                            version,
                            plan_id,
                            str(state.phase),
                            encode(state),
                            encode(preview),
                            0,
                            actor,
                            now,
                            now,
                        ),
                    )
                    repo.append_events(
                        conn,
                        rollout_id,
                        [
                            repo.LogEntry(
                                "created",
                                f"{actor}: start {module} {version} with plan {plan_id}",
                                actor,
                                {"uncovered": list(preview.uncovered), "warnings": warnings},
                            )
                        ],
                        now,
                    )
                    repo.enqueue(conn, rollout_id, actor, encode(ev.Start(actor)), now)
                return Started(rollout_id, preview, tuple(warnings))
            except IntegrityError:
                continue
        raise ConflictError(f"could not allocate a rollout id for {module}; try again")

    def retarget(
        self,
        rollout_id: str,
        version: str,
        *,
        actor: str,
        allow_destroy: bool,
        progress: Callable[[int, int], None] = lambda d, t: None,
    ) -> tuple[pf.Preview, list[str]]:
        """Preflight `version` on the rollout's targets, then retarget it like any other command."""
        state = self.state(rollout_id)
        estate = self.store.load_estate()
        found = pf.targets(estate, state.module, version, state.plan)
        preview = self._planned(estate, state.module, version, state.plan, found, actor, True, progress)
        warnings = pf.check_preflight(preview, state.plan, allow_destroy)
        self.command(rollout_id, ev.Retarget(actor, version))
        return preview, warnings

    def _refuse_if_busy(self, module: str) -> None:
        with self.store.engine.connect() as conn:
            active = repo.active_rollout_for(conn, module, TERMINAL)
        if active:
            raise ConflictError(
                f"rollout {active} already owns module '{module}'",
                hint=f"finish or abort it first: estate rollout abort {active}",
            )

    def state(self, rollout_id: str) -> RolloutState:
        with self.store.engine.connect() as conn:
            return decode_as(RolloutState, repo.load_rollout(conn, rollout_id).state)

    def roles_of(self, estate: Estate, state: RolloutState, actor: str) -> frozenset[str]:
        """The approval roles `actor` holds; a role the estate does not declare admits anyone."""
        wanted = {g.role for w in state.plan.waves for g in w.gates if isinstance(g, ApprovalGate)}
        return frozenset(r for r in wanted if r not in estate.roles or actor in estate.roles[r])

    def submit(self, rollout_id: str, command: ev.Command) -> int:
        """Queue a command for whichever engine drives the rollout; returns the command's id."""
        with self.store.engine.begin() as conn:
            repo.load_rollout(conn, rollout_id)
            return repo.enqueue(conn, rollout_id, command.actor, encode(command), self.now())

    def drive(self, rollout_id: str, *, follow: bool = False) -> RolloutState | None:
        """Run the engine here until the rollout waits for a human; None when another engine drives it."""
        try:
            return RolloutEngine(self.engine_config(), rollout_id).run(follow=follow)
        except LeaseHeld:
            return None

    def outcome(self, command_id: int, *, wait_seconds: float = 10.0) -> str | None:
        """What became of a queued command: "ok", a refusal, or None if no engine took it in time."""
        deadline = time.monotonic() + wait_seconds
        while True:
            with self.store.engine.connect() as conn:
                found = repo.command_outcome(conn, command_id)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(0.2)

    def command(self, rollout_id: str, command: ev.Command) -> RolloutState | None:
        """Queue `command`, drive the engine here if no other does, and raise if the machine refused it."""
        command_id = self.submit(rollout_id, command)
        state = self.drive(rollout_id)
        outcome = self.outcome(command_id, wait_seconds=0 if state is not None else 10.0)
        if outcome is None:
            raise OperationFailed(
                f"command queued (#{command_id}); the engine driving {rollout_id} has not taken it yet",
                hint=f"watch it with: estate rollout status {rollout_id} --watch",
            )
        if outcome != "ok":
            raise OperationFailed(outcome)
        return state
