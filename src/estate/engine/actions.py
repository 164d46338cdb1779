"""Performing the state machine's actions against the world: pins, deployments, finalization.

Every function here is idempotent by the action's key, so a resumed engine can redo any of them.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from estate.domain.deployments import INTERRUPTED, Deployment, DeploymentKind, DeploymentStatus
from estate.domain.ids import EnvRef
from estate.domain.model import Estate
from estate.domain.rollout_events import Finalize, StartDeployment
from estate.domain.rollout_state import DeploymentKind as RolloutDeploymentKind
from estate.domain.rules import CONFIG_OWNER, ModuleRule, resolve_rule
from estate.runners.ports import Runner
from estate.store import Store, tables
from estate.store import rollouts as repo
from estate.store.rows import rule_slot

_KINDS = {RolloutDeploymentKind.DEPLOY: DeploymentKind.DEPLOY, RolloutDeploymentKind.ROLLBACK: DeploymentKind.ROLLBACK}


def resource_type_of(estate: Estate, module_id: str) -> str:
    module = estate.module(module_id)
    if module is None:
        raise LookupError(f"module {module_id} is no longer in the store")
    return module.resource_type


def ensure_deployment(
    store: Store, runner: Runner, rollout_id: str, action: StartDeployment, resource_type: str
) -> Deployment:
    """The deployment of `action`: the one already made for its key, or a new one after pinning the env."""
    kind = _KINDS[action.kind]
    with store.engine.begin() as conn:
        existing = repo.deployment_for_action(conn, action.key)
        orphan = None
        if existing is None:
            pin = ModuleRule(resource_type, action.module, action.version, action.env.project, None, action.env.env)
            repo.set_pin(conn, rollout_id, pin)
            orphan = repo.orphan_deployment(conn, rollout_id, action.env.project, action.env.env, str(kind))
    if existing is not None:
        dep = runner.get(existing)
        if not (dep.status is DeploymentStatus.FAILED and dep.reason == INTERRUPTED):
            return dep
        # The engine died while Terraform ran: that run proves nothing, so the action runs again
        # as a new deployment (the interrupted one stays in the history).
    dep_id = orphan or runner.create(action.env, kind, triggered_by=f"rollout:{rollout_id}", rollout_id=rollout_id)
    with store.engine.begin() as conn:
        repo.link_deployment(conn, rollout_id, action.key, dep_id)
    return runner.get(dep_id)


def finalize(conn: Connection, rollout_id: str, action: Finalize, estate: Estate) -> list[str]:
    """Move the global rule to the target version and fold away the pins it now implies; returns pins kept."""
    resource_type = resource_type_of(estate, action.module)
    global_rule = ModuleRule(resource_type, action.module, action.version)
    rules = tables.module_rules
    slot = rule_slot(global_rule)
    values = {
        "resource_type": resource_type,
        "module": action.module,
        "version": action.version,
        "project": None,
        "env_type": None,
        "env": None,
        "owner": CONFIG_OWNER,
    }
    if conn.execute(rules.update().where(rules.c.slot == slot).values(**values)).rowcount == 0:
        conn.execute(rules.insert().values(slot=slot, **values))
    owner = f"rollout:{rollout_id}"
    others = [r for r in estate.rules if r.owner != owner and r.key != global_rule.key] + [global_rule]
    kept = []
    for pin in (r for r in estate.rules if r.owner == owner):
        env = estate.environment(EnvRef(pin.project or "", pin.env or ""))
        chosen = resolve_rule(others, resource_type, env.project, env.id, env.type) if env else None
        if chosen is not None and (chosen.module, chosen.version) == (pin.module, pin.version):
            repo.clear_pins(conn, rollout_id, pin.project, pin.env)
        elif env is not None:
            kept.append(
                f"{env.ref} stays pinned to {pin.version}: a more specific rule says "
                f"{chosen.version if chosen else 'nothing'}"
            )
    return kept


def pins_of(conn: Connection, rollout_id: str) -> dict[str, str]:
    r = tables.module_rules
    rows = conn.execute(select(r.c.project, r.c.env, r.c.version).where(r.c.owner == f"rollout:{rollout_id}"))
    return {f"{p}/{e}": v for p, e, v in rows}
