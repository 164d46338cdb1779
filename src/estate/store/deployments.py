"""The deployments repository: records, status transitions and the JSON event log of each deployment.

Every write is its own short transaction, so a status is durable before the step it announces
starts and a crash loses at most the events of the step in flight. Time comes in as `now`.
Implements the runner's `DeploymentStore` port (`estate.runners.ports`) structurally.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.engine import Row

from estate.domain.deployments import (
    Deployment,
    DeploymentKind,
    DeploymentStatus,
    OutputValue,
    PlanSummary,
    StatusChange,
    TransitionRefused,
)
from estate.domain.graph import ResolvedGraph
from estate.domain.ids import EnvRef
from estate.domain.model import Estate
from estate.errors import NotFoundError
from estate.store import feed, holders, tables
from estate.store.codec import decode_as, encode
from estate.store.repository import Store

_D = tables.deployments
_E = tables.deployment_events


class DeploymentRepository:
    """Deployments of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load_estate(self) -> Estate:
        return self.store.load_estate()

    def create(self, requests: Sequence[NewDeployment], now: datetime) -> builtins.list[Deployment]:
        """Record new `queued` deployments in one transaction (all or none) and return them with their ids."""
        with self.store.begin() as conn:
            return insert_deployments(conn, requests, now)

    def get(self, deployment_id: int) -> Deployment:
        with self.store.connect() as conn:
            return get_deployment(conn, deployment_id)

    def list(
        self,
        env: EnvRef | None = None,
        *,
        statuses: Iterable[DeploymentStatus] = (),
        limit: int = 50,
        before: int | None = None,
    ) -> builtins.list[Deployment]:
        """Newest first, optionally for one environment and/or some statuses; `before` pages by id."""
        query = select(_D).order_by(_D.c.id.desc()).limit(limit)
        if env is not None:
            query = query.where(_D.c.project == env.project, _D.c.env == env.env)
        if before is not None:
            query = query.where(_D.c.id < before)
        wanted = [str(s) for s in statuses]
        if wanted:
            query = query.where(_D.c.status.in_(wanted))
        with self.store.connect() as conn:
            return [from_row(r) for r in conn.execute(query)]

    def transition(
        self,
        deployment_id: int,
        status: DeploymentStatus,
        now: datetime,
        reason: str | None = None,
        *,
        retryable: bool = False,
        holder: str | None = None,
    ) -> Deployment:
        """Move to `status` (persisted at once; `holder` claims it for a process); ConflictError (as
        TransitionRefused) when `TRANSITIONS` forbids it or another writer moved it first."""
        with self.store.begin() as conn:
            return transition(conn, deployment_id, status, now, reason, retryable=retryable, holder=holder)

    def record_result(
        self,
        deployment_id: int,
        *,
        now: datetime,
        plan_summary: PlanSummary | None = None,
        outputs: Mapping[str, OutputValue] | None = None,
        secrets: str | None = None,
        tool_version: str | None = None,
        plan_source: str | None = None,
    ) -> None:
        """Store what a step produced; None leaves a field as it is."""
        values: dict[str, Any] = {"updated_at": now}
        if plan_summary is not None:
            values["plan_summary"] = encode(plan_summary)
        if outputs is not None:
            values["outputs"] = {k: encode(v) for k, v in outputs.items()}
        if secrets is not None:
            values["secrets"] = secrets
        if tool_version is not None:
            values["tool_version"] = tool_version
        if plan_source is not None:
            values["plan_source"] = plan_source
        with self.store.begin() as conn:
            conn.execute(update(_D).where(_D.c.id == deployment_id).values(**values))

    def holder_gone(self, dep: Deployment, now: datetime) -> bool:
        """The process that runs (or was to run) `dep` no longer does (see `estate.store.holders`)."""
        with self.store.connect() as conn:
            return holders.is_gone(conn, dep.holder, now)

    def secrets(self, deployment_id: int) -> str | None:
        """The encrypted sensitive outputs of a deployment (a Fernet token), if any were stored."""
        with self.store.connect() as conn:
            token: str | None = conn.execute(select(_D.c.secrets).where(_D.c.id == deployment_id)).scalar()
        return token

    def append_events(self, deployment_id: int, first_seq: int, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        rows = [{"deployment_id": deployment_id, "seq": first_seq + i, "event": dict(e)} for i, e in enumerate(events)]
        with self.store.begin() as conn:
            conn.execute(insert(_E), rows)

    def next_seq(self, deployment_id: int) -> int:
        with self.store.connect() as conn:
            top = conn.execute(select(func.max(_E.c.seq)).where(_E.c.deployment_id == deployment_id)).scalar()
        return 0 if top is None else int(top) + 1

    def events(self, deployment_id: int, after: int = -1) -> builtins.list[tuple[int, dict[str, Any]]]:
        """`(seq, event)` pairs with seq > `after`, in order."""
        query = (
            select(_E.c.seq, _E.c.event).where(_E.c.deployment_id == deployment_id, _E.c.seq > after).order_by(_E.c.seq)
        )
        with self.store.connect() as conn:
            return [(int(seq), dict(event)) for seq, event in conn.execute(query)]


@dataclass(frozen=True)
class NewDeployment:
    """What a deployment is created from: the environment, what to do, who asked, the graph to apply."""

    env: EnvRef
    kind: DeploymentKind
    triggered_by: str
    graph: ResolvedGraph
    rollout_id: str | None = None
    holder: str | None = None  # the process that will run it
    status: DeploymentStatus = DeploymentStatus.QUEUED  # ERRORED when it cannot even be attempted
    reason: str | None = None
    apply_plan: int | None = None  # a deploy: apply this plan deployment's saved plan if it is still valid


def insert_deployments(conn: Connection, news: Sequence[NewDeployment], now: datetime) -> list[Deployment]:
    """Insert deployments in the caller's transaction, in one statement; returns them with their ids, in order."""
    if not news:
        return []
    rows = [_insert_values(new, now) for new in news]
    ids = conn.execute(insert(_D).returning(_D.c.id, sort_by_parameter_order=True), rows).scalars().all()
    feed.append(
        conn,
        [_feed_entry(i, n.env, n.rollout_id, "", n.status, n.reason, now) for i, n in zip(ids, news, strict=True)],
    )
    return [
        Deployment(
            int(new_id),
            new.env,
            new.kind,
            new.status,
            new.triggered_by,
            new.graph,
            _created(new, now),
            reason=new.reason,
            rollout_id=new.rollout_id,
            holder=new.holder,
            apply_plan=new.apply_plan,
        )
        for new_id, new in zip(ids, news, strict=True)
    ]


def _created(new: NewDeployment, now: datetime) -> tuple[StatusChange, ...]:
    """The transitions of a deployment just made: queued, then its first status when that is not queued."""
    transitions: tuple[StatusChange, ...] = (StatusChange(DeploymentStatus.QUEUED, now),)
    if new.status is not DeploymentStatus.QUEUED:
        transitions += (StatusChange(new.status, now),)
    return transitions


def _insert_values(new: NewDeployment, now: datetime) -> dict[str, Any]:
    return {
        "project": new.env.project,
        "env": new.env.env,
        "kind": str(new.kind),
        "status": str(new.status),
        "reason": new.reason,
        "triggered_by": new.triggered_by,
        "rollout_id": new.rollout_id,
        "holder": new.holder,
        "graph": encode(new.graph),
        "apply_plan": new.apply_plan,
        "transitions": _transitions_json(_created(new, now)),
        "created_at": now,
        "updated_at": now,
    }


def get_deployment(conn: Connection, deployment_id: int) -> Deployment:
    row = conn.execute(select(_D).where(_D.c.id == deployment_id)).first()
    if row is None:
        raise NotFoundError(f"no deployment {deployment_id}", hint="see `estate deployment list`")
    return from_row(row)


def transition(
    conn: Connection,
    deployment_id: int,
    status: DeploymentStatus,
    now: datetime,
    reason: str | None = None,
    *,
    retryable: bool = False,
    holder: str | None = None,
) -> Deployment:
    """`DeploymentRepository.transition` in the caller's transaction."""
    feed.lock(conn)  # before the row lock, in the order every feed writer takes them
    current = get_deployment(conn, deployment_id)
    moved = current.advance(status, now, reason)
    values: dict[str, Any] = {
        "status": str(status),
        "reason": moved.reason,
        "retryable": retryable,
        "updated_at": now,
        "transitions": _transitions_json(moved.transitions),
    }
    if holder is not None:
        values["holder"] = holder
    done = conn.execute(update(_D).where(_D.c.id == deployment_id, _D.c.status == str(current.status)).values(**values))
    if done.rowcount != 1:
        raise TransitionRefused(f"deployment {deployment_id} changed status concurrently")
    moved_entry = _feed_entry(deployment_id, current.env, current.rollout_id, current.status, status, reason, now)
    feed.append(conn, [moved_entry])
    return replace(moved, retryable=retryable, holder=holder or moved.holder)


def _feed_entry(
    deployment_id: int,
    env: EnvRef,
    rollout_id: str | None,
    before: DeploymentStatus | str,
    after: DeploymentStatus,
    reason: str | None,
    now: datetime,
) -> feed.FeedEntry:
    return feed.FeedEntry(
        kind="deployment",
        at=now,
        rollout_id=rollout_id,
        deployment_id=deployment_id,
        env=str(env),
        before=str(before),
        after=str(after),
        reason=reason or "",
        summary=f"deployment {deployment_id} of {env}: " + (f"{before} -> {after}" if before else str(after)),
    )


def mark_retried(conn: Connection, interrupted_id: int, retry_id: int) -> None:
    """Link an interrupted deployment to the one that redoes it."""
    conn.execute(update(_D).where(_D.c.id == interrupted_id).values(retried_by=retry_id))


def _transitions_json(transitions: Iterable[StatusChange]) -> list[dict[str, str]]:
    return [{"status": str(t.status), "at": t.at.isoformat()} for t in transitions]


def from_row(row: Row[Any]) -> Deployment:
    r = row._mapping
    summary = decode_as(PlanSummary, r["plan_summary"]) if r["plan_summary"] is not None else None
    outputs = {k: decode_as(OutputValue, v) for k, v in (r["outputs"] or {}).items()}
    return Deployment(
        id=int(r["id"]),
        env=EnvRef(r["project"], r["env"]),
        kind=DeploymentKind(r["kind"]),
        status=DeploymentStatus(r["status"]),
        triggered_by=r["triggered_by"],
        graph=decode_as(ResolvedGraph, r["graph"]),
        transitions=tuple(
            StatusChange(DeploymentStatus(t["status"]), datetime.fromisoformat(t["at"])) for t in r["transitions"]
        ),
        reason=r["reason"],
        rollout_id=r["rollout_id"],
        plan_summary=summary,
        outputs=outputs,
        tool_version=r["tool_version"],
        retryable=bool(r["retryable"]),
        retried_by=r["retried_by"],
        holder=r["holder"],
        apply_plan=r["apply_plan"],
        plan_source=r["plan_source"],
        pool=r["pool"],
    )
