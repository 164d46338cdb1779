"""Runner pools in the store: the estate's runner rules, and the pool each deployment was sent to and ran on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select, update

from estate.domain.codec import decode_as
from estate.domain.deployments import DeploymentStatus
from estate.domain.runner_rules import RunnerRule
from estate.store import tables
from estate.store.repository import Store

_D = tables.deployments


def runner_rules(store: Store) -> tuple[RunnerRule, ...]:
    """The runner rules `estate apply` stored (without loading the rest of the estate)."""
    d = tables.documents
    with store.connect() as conn:
        body = conn.execute(select(d.c.body).where(d.c.name == "runner_rules")).scalar()
    return tuple(decode_as(RunnerRule, r) for r in (body or {}).get("rules", []))


def assign_pools(store: Store, pools: Mapping[int, str]) -> None:
    """Record the pool each deployment is sent to (`deployment id -> pool`), in one transaction."""
    with store.begin() as conn:
        for deployment_id, pool in pools.items():
            conn.execute(update(_D).where(_D.c.id == deployment_id).values(pool=pool))


def waiting_for_runner(store: Store, deployment_ids: Sequence[int]) -> dict[int, str]:
    """`deployment id -> pool` for those of `deployment_ids` that a pool was asked to run and no runner has
    taken yet (still queued)."""
    if not deployment_ids:
        return {}
    query = select(_D.c.id, _D.c.pool).where(
        _D.c.id.in_(list(deployment_ids)), _D.c.pool.is_not(None), _D.c.status == str(DeploymentStatus.QUEUED)
    )
    with store.connect() as conn:
        return {int(i): str(p) for i, p in conn.execute(query)}
