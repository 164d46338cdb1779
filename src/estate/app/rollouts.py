"""Rollout use cases: preview, start, status and list, and every command (promote, approve, pause, resume,
abort, rollback, rerun, retarget), plus running the engine in the foreground.

Nothing here decides what a rollout does next: commands go to the engine and the pure state machine
accepts or refuses them in the engine's next turn. Where the engine runs is the engine gateway's business
(`estate.app.engines`): *embedded* (the CLI without a server) drives the rollout right here until it needs
a human; *hosted* (`estate server`) has an engine host drive every rollout; *temporal* runs one durable
workflow per rollout on Temporal workers.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from estate.app import preflight as pf
from estate.app.access import AccessControl
from estate.app.audit import AuditTrail
from estate.app.caller import Caller
from estate.app.progress import Progress, Silent
from estate.app.status import Dashboards, rollout_view
from estate.app.views.rollouts import EnvQuery, PreviewView, RolloutSummaryView, RolloutView, StartView
from estate.domain import rollout_events as ev
from estate.domain.access import Action, Principal, Role, Target, roles_of
from estate.domain.ids import EnvRef
from estate.domain.model import Estate
from estate.domain.plans import RolloutPlan
from estate.domain.rollout import acts_on
from estate.domain.rollout_state import RolloutState, new_rollout
from estate.errors import Refused
from estate.runners import DeploymentService
from estate.store import Store
from estate.store.freezes import FreezeStore
from estate.store.rollouts import LogEntry, ModuleBusy, RolloutRecord, RolloutStore

if TYPE_CHECKING:
    from estate.app.engines import EngineGateway


class Rollouts:
    """Everything a user can do to rollouts."""

    def __init__(
        self,
        store: Store,
        runner: Callable[[], DeploymentService],
        engine: Callable[[], EngineGateway],
        audit: AuditTrail,
        access: AccessControl,
        *,
        now: Callable[[], datetime],
        boards: Callable[[], Dashboards],
    ) -> None:
        self.store = store
        self.rollouts = RolloutStore(store)
        self._runner = runner
        self._engine = engine  # built on first use: reading a rollout needs no engine
        self.audit = audit
        self.access = access
        self.now = now
        self.boards = boards
        self.freezes = FreezeStore(store)

    # -- reading -------------------------------------------------------------------------------

    def status(self, rollout_id: str, *, history: int = 20, query: EnvQuery | None = None) -> RolloutView:
        """The rollout, its waves (with counts per status) and the environments `query` selects (default all)."""
        return rollout_view(self.store, rollout_id, self.now(), history=history, boards=self.boards(), query=query)

    def list(self, *, module: str | None = None, phase: str | None = None) -> list[RolloutSummaryView]:
        """Rollouts, oldest first."""
        return [_summary(r) for r in self.rollouts.list(module, phase)]

    def summary(self, rollout_id: str) -> RolloutSummaryView:
        """One rollout without its state (cheap); NotFoundError for an unknown one."""
        return _summary(self.rollouts.record(rollout_id))

    def state(self, rollout_id: str) -> RolloutState:
        """The whole state, every environment included (status reads less: see `status`)."""
        return self.rollouts.state(rollout_id)

    def wave_number(self, rollout_id: str, wave: str) -> int:
        """A wave of the rollout's plan, by 1-based number or name (InputError naming the waves if none)."""
        return self._outline(rollout_id).plan.wave_number(wave)

    def _outline(self, rollout_id: str) -> RolloutState:
        return self.rollouts.outline(rollout_id).state

    # -- starting ------------------------------------------------------------------------------

    def preview(
        self,
        caller: Caller,
        module: str,
        version: str,
        plan_id: str,
        *,
        preflight: bool = True,
        progress: Progress | None = None,
    ) -> PreviewView:
        """The blast radius per wave (a real `plan` of every target) without starting anything."""
        estate = self.store.load_estate()
        plan = estate.require_plan(plan_id)
        found = pf.targets(estate, module, version, plan, allow_uncovered=True)
        self.access.require(caller, Action.OPERATE, found.refs)  # preflight plans are recorded deployments
        return self._planned(caller, estate, module, version, plan, found, preflight, progress)

    def authorize_start(self, caller: Caller, module: str, version: str, plan_id: str) -> None:
        """Forbidden unless `caller` may operate every environment the rollout would touch; NotFoundError for an
        unknown module, version or plan (what `preview` and `start` check first)."""
        with self.audit.refusals(caller, "rollout start", f"module:{module}@{version}"):
            self.access.require(caller, Action.OPERATE, self._start_targets(module, version, plan_id))

    def start_denial(self, caller: Caller, module: str, version: str, plan_id: str) -> str | None:
        """Why `caller` may not start this rollout (None: the role allows it), without recording anything: what a
        console disables, with the reason."""
        return self.access.denial(caller, Action.OPERATE, lambda: self._start_targets(module, version, plan_id))

    def _start_targets(self, module: str, version: str, plan_id: str) -> builtins.list[EnvRef]:
        estate = self.store.load_estate()
        return pf.targets(estate, module, version, estate.require_plan(plan_id), allow_uncovered=True).refs

    def permissions(self, caller: Caller, rollout_id: str) -> dict[str, str | None]:
        """Why `caller` may not send each command (None: the role allows it; the state machine may still refuse),
        keyed `promote`, `approve`, `pause`, `resume`, `abort`, `retarget`, and `rollback N` / `rerun N` for each
        wave N. The waves' members are read only if a scoped binding needs the environments a command acts on."""
        members = functools.cache(lambda: self.rollouts.membership(rollout_id))
        outline = self._outline(rollout_id)
        me = caller.subject
        commands: dict[str, ev.Command] = {
            "promote": ev.Promote(me),
            "approve": ev.Approve(me),
            "pause": ev.Pause(me),
            "resume": ev.Resume(me),
            "abort": ev.Abort(me),
            "retarget": ev.Retarget(me, outline.version),
        }
        for wave in outline.waves:
            commands[f"rollback {wave.number}"] = ev.Rollback(me, wave.number)
            commands[f"rerun {wave.number}"] = ev.Rerun(me, wave.number)

        def targets(command: ev.Command) -> Callable[[], tuple[EnvRef, ...]]:
            return lambda: acts_on(members(), command)

        return self.access.denials(
            caller,
            {
                name: (Action.APPROVE if isinstance(command, ev.Approve) else Action.OPERATE, targets(command))
                for name, command in commands.items()
            },
        )

    def authorize_retarget(self, caller: Caller, rollout_id: str, version: str) -> None:
        """Forbidden unless `caller` may operate the rollout's environments; NotFoundError for an unknown rollout
        or version, DefectiveVersion for a defective one (what `retarget` checks first)."""
        with self.audit.refusals(caller, "rollout retarget", f"rollout:{rollout_id}"):
            state = self.state(rollout_id)
            self.access.require(caller, Action.OPERATE, acts_on(state, ev.Retarget(caller.subject, version)))
            pf.targets(self.store.load_estate(), state.module, version, state.plan, allow_uncovered=True)

    def start(
        self,
        caller: Caller,
        module: str,
        version: str,
        plan_id: str,
        *,
        allow_uncovered: bool = False,
        allow_destroy: bool = False,
        preflight: bool = True,
        progress: Progress | None = None,
        follow: bool = True,
    ) -> StartView:
        """Validate, preflight, then record the rollout and its `Start` command; in embedded mode (`follow`)
        drive it until it needs a human."""
        target = f"module:{module}@{version}"
        with self.audit.attempt(caller, "rollout start", target, {"plan": plan_id}) as attempt:
            active = self.rollouts.active_for(module)
            if active is not None:  # before spending a preflight on it; `create` checks again atomically
                raise ModuleBusy(module, active)
            estate = self.store.load_estate()
            plan = estate.require_plan(plan_id)
            found = pf.targets(estate, module, version, plan, allow_uncovered=allow_uncovered)
            self.access.require(caller, Action.OPERATE, found.refs)
            preview = self._planned(caller, estate, module, version, plan, found, preflight, progress)
            warnings = [*found.warnings, *pf.check(preview, plan, allow_destroy=allow_destroy)]
            now = self.now()
            freezes = self.freezes.active(now)

            def build(rollout_id: str) -> RolloutState:
                return new_rollout(
                    rollout_id=rollout_id,
                    module=module,
                    version=version,
                    plan=plan,
                    membership=found.membership.waves,
                    previous_versions=found.current,
                    started_by=caller.subject,
                    now=now,
                    env_types=found.types,
                    freezes=freezes,
                )

            created = LogEntry(
                "created",
                f"{caller.subject}: start {module} {version} with plan {plan_id}",
                caller.subject,
                {"uncovered": preview.uncovered, "warnings": warnings},
            )
            state = self.rollouts.create(
                module=module,
                plan_id=plan_id,
                actor=caller.subject,
                now=now,
                build=build,
                preflight=pf.summary(preview),
                created=created,
                plans=pf.plans(preview),
            )
            attempt.target = f"rollout:{state.id}"
            attempt.details.update(module=module, version=version)
        self._after_submit(state.id, follow=follow)
        return StartView(id=state.id, preview=preview, warnings=warnings)

    def _planned(
        self,
        caller: Caller,
        estate: Estate,
        module: str,
        version: str,
        plan: RolloutPlan,
        found: pf.Targets,
        preflight: bool,
        progress: Progress | None,
    ) -> PreviewView:
        if not preflight:
            return pf.membership_only(module, version, plan, found)
        return pf.preflight(
            estate,
            self._runner(),
            module,
            version,
            plan,
            found,
            actor=caller.subject,
            progress=progress or Silent(),
        )

    # -- commands ------------------------------------------------------------------------------

    def promote(self, caller: Caller, rollout_id: str, *, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, ev.Promote(caller.subject), follow=follow)

    def approve(self, caller: Caller, rollout_id: str, *, override: bool = False, follow: bool = True) -> RolloutView:
        roles = approval_roles(self.store.load_estate(), self.state(rollout_id), caller)
        return self._command(caller, rollout_id, ev.Approve(caller.subject, override, roles), follow=follow)

    def pause(self, caller: Caller, rollout_id: str, *, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, ev.Pause(caller.subject), follow=follow)

    def resume(self, caller: Caller, rollout_id: str, *, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, ev.Resume(caller.subject), follow=follow)

    def abort(self, caller: Caller, rollout_id: str, *, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, ev.Abort(caller.subject), follow=follow)

    def rollback(self, caller: Caller, rollout_id: str, *, wave: str | None = None, follow: bool = True) -> RolloutView:
        """Roll a wave (default: the current one; a number or a name) back, each environment to its own
        previous version."""
        number = None if wave is None else self.wave_number(rollout_id, wave)
        return self._command(caller, rollout_id, ev.Rollback(caller.subject, number), follow=follow)

    def rerun(
        self,
        caller: Caller,
        rollout_id: str,
        *,
        wave: str | None = None,
        only_failed: bool = False,
        follow: bool = True,
    ) -> RolloutView:
        number = None if wave is None else self.wave_number(rollout_id, wave)
        return self._command(caller, rollout_id, ev.Rerun(caller.subject, number, only_failed), follow=follow)

    def retarget(
        self,
        caller: Caller,
        rollout_id: str,
        version: str,
        *,
        allow_destroy: bool = False,
        preflight: bool = True,
        progress: Progress | None = None,
        follow: bool = True,
    ) -> tuple[RolloutView, builtins.list[str]]:
        """Preflight `version` on the rollout's targets, then retarget it like any other command; also returns
        the preflight's warnings."""
        state = self._outline(rollout_id)
        estate = self.store.load_estate()
        with self.audit.attempt(caller, "rollout retarget --preflight", f"rollout:{rollout_id}", {"version": version}):
            self.access.require(
                caller, Action.OPERATE, acts_on(self.state(rollout_id), ev.Retarget(caller.subject, version))
            )
            found = pf.targets(estate, state.module, version, state.plan, allow_uncovered=True)
            preview = self._planned(caller, estate, state.module, version, state.plan, found, preflight, progress)
            warnings = [*found.warnings, *pf.check(preview, state.plan, allow_destroy=allow_destroy)]
            self.rollouts.link_plans(rollout_id, version, pf.plans(preview))
        view = self._command(caller, rollout_id, ev.Retarget(caller.subject, version), follow=follow)
        return view, warnings

    def _command(self, caller: Caller, rollout_id: str, command: ev.Command, *, follow: bool) -> RolloutView:
        """Queue `command`, get the state machine's answer, raise Refused with its reason if it said no."""
        action = f"rollout {type(command).__name__.lower()}"
        details = {k: v for k, v in vars(command).items() if k not in ("actor", "roles") and v not in (None, False)}
        with self.audit.attempt(caller, action, f"rollout:{rollout_id}", details):
            needs = Action.APPROVE if isinstance(command, ev.Approve) else Action.OPERATE
            self.access.require(caller, needs, acts_on(self.state(rollout_id), command))
            outcome = self._engine().command(rollout_id, command, follow=follow)
            if outcome != "ok":
                raise Refused(outcome)
        return self.status(rollout_id)

    def _after_submit(self, rollout_id: str, *, follow: bool) -> None:
        """A new rollout was recorded: the engine gets it going (and drives it here when `follow`)."""
        self._engine().submitted(rollout_id, follow=follow)

    def drive(self, rollout_id: str) -> None:
        """Return once the rollout needs a human (embedded: the engine drives it here until then)."""
        self._engine().drive(rollout_id)

    # -- the engine in the foreground -----------------------------------------------------------

    def run_engine(self, rollouts: builtins.list[str] | None = None, *, once: bool = False) -> dict[str, str]:
        """Drive `rollouts` (default: every active one, and new ones as they start) in the foreground, until
        each waits for a human (`once`) or forever. Returns where each driven rollout ended up."""
        return self._engine().run_engine(rollouts, once=once)


def approval_roles(estate: Estate, state: RolloutState, caller: Caller) -> frozenset[str]:
    """The roles `caller` holds for every environment of the rollout's current wave (each approval gate names
    the role it needs). An estate without access bindings is a single-user trial: every role is held."""
    if not estate.access:
        return frozenset(Role)
    types = {e.ref: e.type for e in estate.environments}
    principal = Principal(caller.subject, caller.groups)
    held = [roles_of(estate.access, principal, Target(ref, types.get(ref, ""))) for ref in state.current_wave.envs]
    return frozenset(set.intersection(*(set(h) for h in held)) if held else roles_of(estate.access, principal))


def _summary(r: RolloutRecord) -> RolloutSummaryView:
    return RolloutSummaryView(
        id=r.id,
        module=r.module,
        version=r.target_version,
        plan=r.plan_id,
        phase=r.phase,
        created_by=r.created_by,
        created_at=r.created_at,
    )
