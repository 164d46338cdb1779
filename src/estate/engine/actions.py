"""Performing the state machine's actions against the world: pins, deployments, finalization.

Every function here is idempotent by the action's key, so a resumed engine can redo any of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from estate.domain.deployments import INTERRUPTED, Deployment, DeploymentStatus
from estate.domain.ids import EnvRef
from estate.domain.model import Estate
from estate.domain.rollout_events import Finalize, StartDeployment
from estate.domain.rules import CONFIG_OWNER, ModuleRule, resolve_rule
from estate.runners.ports import Runner
from estate.store import Store, tables
from estate.store import rollouts as repo
from estate.store.rows import rule_slot


def resource_type_of(estate: Estate, module_id: str) -> str:
    module = estate.module(module_id)
    if module is None:
        raise LookupError(f"module {module_id} is no longer in the store")
    return module.resource_type


def ensure_deployments(
    store: Store,
    runner: Runner,
    rollout_id: str,
    actions: Sequence[StartDeployment],
    resource_type: str,
    *,
    create: bool = True,
) -> list[tuple[StartDeployment, Deployment | None]]:
    """The deployment of each action: the one already made for its key, or (if `create`) a new one after
    pinning the env to the action's version; None where there is none and none may be created.

    Idempotent by key, batched: two transactions whatever the number of actions.
    """
    with store.engine.begin() as conn:
        linked = repo.deployments_for_actions(conn, [a.key for a in actions])
        fresh = [a for a in actions if a.key not in linked]
        if create:
            repo.set_pins(conn, rollout_id, [_pin(a, resource_type) for a in fresh])
        orphans = repo.orphan_deployments(conn, rollout_id) if fresh and create else {}
    found: dict[str, Deployment] = {}
    for action in actions:
        if action.key in linked:
            dep = runner.get(linked[action.key])
            if not (dep.status is DeploymentStatus.FAILED and dep.reason == INTERRUPTED):
                found[action.key] = dep
            # else: the engine died while Terraform ran; that run proves nothing, so the action runs again
            # as a new deployment (the interrupted one stays in the history).
    new_links: dict[str, int] = {}
    for action in actions:
        if action.key in found or not create:
            continue
        kind = action.kind
        orphan = orphans.pop((action.env.project, action.env.env, str(kind)), None)
        new_links[action.key] = orphan or runner.create(
            action.env, kind, triggered_by=f"rollout:{rollout_id}", rollout_id=rollout_id
        )
    with store.engine.begin() as conn:
        repo.link_deployments(conn, rollout_id, new_links)
    found.update((key, runner.get(dep_id)) for key, dep_id in new_links.items())
    return [(a, found.get(a.key)) for a in actions]


def _pin(action: StartDeployment, resource_type: str) -> ModuleRule:
    return ModuleRule(resource_type, action.module, action.version, action.env.project, None, action.env.env)


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
    kept, folded = [], []
    envs = {e.ref: e for e in estate.environments}
    for pin in (r for r in estate.rules if r.owner == owner):
        env = envs.get(EnvRef(pin.project or "", pin.env or ""))
        chosen = resolve_rule(others, resource_type, env.project, env.id, env.type) if env else None
        if chosen is not None and (chosen.module, chosen.version) == (pin.module, pin.version):
            folded.append(rule_slot(pin))
        elif env is not None:
            kept.append(
                f"{env.ref} stays pinned to {pin.version}: a more specific rule says "
                f"{chosen.version if chosen else 'nothing'}"
            )
    repo.delete_rules(conn, folded)
    return kept
