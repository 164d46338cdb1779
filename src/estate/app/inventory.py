"""Estate and inventory use cases: apply estate-as-code, list environments and modules, impact analysis,
publish module versions, show rollout plans."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from estate.app.access import AccessControl
from estate.app.audit import AuditTrail
from estate.app.caller import Caller
from estate.app.views.inventory import (
    ApplyView,
    EnvironmentView,
    FlaggedVersionView,
    InitView,
    ModuleVersionView,
    ModuleView,
    PlanSummaryView,
    PlanView,
    PlanWaveView,
    PublishView,
    SyncChangeView,
    UsageRow,
    UsageTotals,
    UsageView,
)
from estate.config import SourceFile, json_schema, load_sources, read_sources
from estate.domain.access import Action, Principal, authorize
from estate.domain.ids import EnvRef
from estate.domain.lifecycle import Lifecycle, check_change
from estate.domain.model import Estate, ModuleVersion
from estate.domain.plans import describe_gate
from estate.domain.selectors import Selector
from estate.domain.usage import module_usage, usage_report
from estate.domain.versions import Version
from estate.domain.waves import assign_waves
from estate.errors import ConflictError, InputError, NotFoundError
from estate.settings import Settings
from estate.store import Change, Store
from estate.store import lifecycle as lifecycles
from estate.store.codec import encode

__all__ = ["Inventory", "SourceFile", "read_sources"]


class Inventory:
    """What the estate holds, and changing it through estate-as-code and published versions."""

    def __init__(
        self, settings: Settings, store: Store, audit: AuditTrail, access: AccessControl, now: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.store = store
        self.audit = audit
        self.access = access
        self.now = now

    def init(self) -> InitView:
        """Create $ESTATE_HOME and the database (idempotent; opening the store migrated it)."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        return InitView(home=str(self.settings.home), database=self.settings.database_url)

    def schema(self) -> dict[str, Any]:
        return json_schema()

    def apply(
        self, caller: Caller, source: Path | Sequence[SourceFile], *, dry_run: bool, prune: bool, force: bool
    ) -> ApplyView:
        """Validate estate-as-code (a file, a directory of them, or their texts) and sync it into the store in
        one transaction (all or nothing)."""
        action = "apply --dry-run" if dry_run else "apply"
        where = {"path": str(source)} if isinstance(source, Path) else {"files": [s.name for s in source]}
        with self.audit.attempt(caller, action, "estate", {**where, "prune": prune}) as attempt:
            self.access.require(caller, Action.ADMINISTER)
            sources = read_sources(source) if isinstance(source, Path) else source
            loaded = load_sources(sources, self.store.published_versions())
            _keeps_an_admin(caller, loaded.estate)
            plan = self.store.sync(
                loaded.estate, prune=prune, force=force, dry_run=dry_run, actor=caller.subject, now=self.now()
            )
            attempt.details["changes"] = len(plan.changes)
        return ApplyView(
            applied=not dry_run and not plan.empty,
            changes=[_change(c) for c in plan.changes],
            held_for_prune=[_change(c) for c in plan.held],
        )

    def environments(
        self, *, project: str | None = None, env_type: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[EnvironmentView]:
        """Environments matching every given filter, ordered by env type rank, project and id."""
        estate = self.store.load_estate()
        selector = Selector(
            env_types=frozenset([env_type]) if env_type else None,
            labels=dict(labels or {}),
            projects=frozenset([project]) if project else None,
        )
        rank = estate.env_type_rank()
        owners = {p.id: p.owner for p in estate.projects}
        found = sorted(selector.select(estate.environments), key=lambda e: (rank.get(e.type, 0), e.project, e.id))
        flagged = _flagged(estate)
        return [
            EnvironmentView(
                ref=str(e.ref),
                project=e.project,
                id=e.id,
                type=e.type,
                owner=owners.get(e.project, ""),
                labels=dict(e.labels),
                flagged=flagged.get(e.ref, []),
            )
            for e in found
        ]

    def modules(self) -> list[ModuleView]:
        """Modules with their published versions (oldest first, by semantic version)."""
        published = self.store.publications()
        return [
            ModuleView(
                id=m.id,
                resource_type=m.resource_type,
                versions=[
                    ModuleVersionView(version=v.version, source=v.source, **published.get((m.id, v.version), {}))
                    for v in sorted(m.versions, key=lambda v: Version.parse(v.version))
                ],
            )
            for m in self.store.load_estate().modules
        ]

    def usage(self, module_id: str) -> UsageView:
        """Who uses which version of `module_id`, with totals per version, env type and owner; environments on a
        deprecated or defective version are flagged."""
        estate = self.store.load_estate()
        report = usage_report(estate, module_id)
        module = estate.require_module(module_id)

        def version_of(name: str | None) -> ModuleVersion | None:
            return module.version(name) if name else None

        return UsageView(
            module=module_id,
            environments=[
                UsageRow(
                    env=str(b.env.ref),
                    env_type=b.env.type,
                    owner=report.owners.get(b.env.project, ""),
                    resource=b.alias,
                    version=b.version,
                    rule_scope=b.scope.name.lower() if b.scope is not None else None,
                    lifecycle=str(v.lifecycle) if (v := version_of(b.version)) else None,
                    lifecycle_reason=v.lifecycle_reason if v else "",
                )
                for b in report.bindings
            ],
            totals=UsageTotals(
                version=dict(report.by_version), env_type=dict(report.by_env_type), owner=dict(report.by_owner)
            ),
            unresolved=[str(r) for r in report.unresolved],
            flagged=[
                str(b.env.ref)
                for b in report.bindings
                if (v := version_of(b.version)) is not None and v.lifecycle is not Lifecycle.PUBLISHED
            ],
        )

    def publish(
        self, caller: Caller, module_id: str, version: str, source: str, *, inputs_from: str | None = None
    ) -> PublishView:
        """Publish an immutable module version; its inputs are copied from `inputs_from` (default: the newest).
        Publishing the identical version again changes nothing; a different one is refused."""
        target = f"module:{module_id}@{version}"
        with self.audit.attempt(caller, "module publish", target, {"source": source}) as attempt:
            self.access.require(caller, Action.ADMINISTER)
            module = self.store.load_estate().require_module(module_id)
            base = _inputs_base(module_id, module.versions, inputs_from)
            resolved = _local_source(source)
            created = self.store.publish(
                ModuleVersion(module_id, version, resolved, base.inputs if base else {}), caller.subject, self.now()
            )
            attempt.details["created"] = created
        return PublishView(module=module_id, version=version, source=resolved, created=created)

    def set_lifecycle(
        self, caller: Caller, module_id: str, version: str, lifecycle: str, reason: str
    ) -> ModuleVersionView:
        """Mark a published version `deprecated` or `defective`, or `published` again (restore), with a reason."""
        action = _LIFECYCLE_ACTIONS.get(lifecycle, f"module {lifecycle}")
        target = f"module:{module_id}@{version}"
        with self.audit.attempt(caller, action, target, {"reason": reason}) as attempt:
            self.access.require(caller, Action.ADMINISTER)
            try:
                wanted = Lifecycle(lifecycle)
            except ValueError:
                raise InputError(f"'{lifecycle}' is not a lifecycle: {', '.join(x.value for x in Lifecycle)}") from None
            with self.store.begin() as conn:
                before = lifecycles.current(conn, module_id, version)
                if check_change(before, wanted, reason):
                    lifecycles.change(conn, module_id, version, wanted, reason, caller.subject, self.now())
            attempt.details.update(before=str(before), after=str(wanted))
        return self._version_view(module_id, version)

    def _version_view(self, module_id: str, version: str) -> ModuleVersionView:
        found = next(m for m in self.modules() if m.id == module_id)
        return next(v for v in found.versions if v.version == version)

    def plans(self) -> list[PlanSummaryView]:
        return [
            PlanSummaryView(id=p.id, description=p.description, waves=[w.name for w in p.waves])
            for p in self.store.load_estate().plans
        ]

    def plan(self, plan_id: str) -> PlanView:
        """A plan's waves and which environments each would take now (first matching wave wins)."""
        estate = self.store.load_estate()
        plan = estate.require_plan(plan_id)
        membership = assign_waves(plan, estate.environments)
        return PlanView(
            id=plan.id,
            description=plan.description,
            destructive=str(plan.destructive),
            waves=[
                PlanWaveView(
                    name=w.name,
                    max_parallel=w.max_parallel,
                    failure_tolerance=str(w.failure_tolerance),
                    on_failure=str(w.on_failure),
                    auto_promote=w.auto_promote,
                    gates=[describe_gate(g) for g in w.gates],
                    spec=encode(w),
                    environments=[str(r) for r in refs],
                )
                for w, refs in zip(plan.waves, membership.waves, strict=True)
            ],
        )


_LIFECYCLE_ACTIONS = {
    "deprecated": "module deprecate",
    "defective": "module mark-defective",
    "published": "module restore",
}


def _flagged(estate: Estate) -> dict[EnvRef, list[FlaggedVersionView]]:
    """The environments on a deprecated or defective version, with those versions (only modules that have one)."""
    found: dict[EnvRef, list[FlaggedVersionView]] = {}
    for module in estate.modules:
        flagged = {v.version: v for v in module.versions if v.lifecycle is not Lifecycle.PUBLISHED}
        if not flagged:
            continue
        for binding in module_usage(estate, module.id):
            v = flagged.get(binding.version or "")
            if v is not None:
                view = FlaggedVersionView(
                    module=module.id, version=v.version, lifecycle=str(v.lifecycle), lifecycle_reason=v.lifecycle_reason
                )
                found.setdefault(binding.env.ref, []).append(view)
    return found


def _keeps_an_admin(caller: Caller, desired: Estate) -> None:
    """An authenticated admin may not apply bindings that take their own admin role away: nobody could undo it
    over the API (only embedded, on the store's machine)."""
    if caller.trusted:
        return
    if not authorize(desired.access, Principal(caller.subject, caller.groups), Action.ADMINISTER).allowed:
        raise ConflictError(
            f"this apply would take the admin role away from {caller.subject}, who applies it",
            hint="keep an unscoped `{role: admin, subjects: [...]}` binding for yourself in `access:`",
        )


def _change(c: Change) -> SyncChangeView:
    return SyncChangeView(kind=c.kind, key=c.key, action=str(c.action), fields=list(c.fields))


def _inputs_base(module_id: str, versions: tuple[ModuleVersion, ...], inputs_from: str | None) -> ModuleVersion | None:
    if inputs_from:
        found = next((v for v in versions if v.version == inputs_from), None)
        if found is None:
            raise NotFoundError(f"module '{module_id}' has no version '{inputs_from}'")
        return found
    return max(versions, key=lambda v: Version.parse(v.version), default=None)


def _local_source(source: str) -> str:
    """Make a local path absolute (Terraform needs ./ or / for paths); refuse one that does not exist."""
    if "::" in source or "://" in source:
        return source
    path = Path(source)
    if path.is_dir():
        return str(path.resolve())
    if source.startswith(("./", "../", "/")):
        raise InputError(f"--source {source}: no such directory")
    return source  # a registry address such as namespace/name/provider
