"""What `/metrics` exports about the estate, read from the store on each scrape (several servers sharing one
database export the same numbers): rollouts by phase, environments by rollout state, wave membership as an
info series, deployments by status with a duration histogram, gate evaluations by result, and how long the
oldest command has waited for an engine.

Wave membership is exported for the latest rollout of each module (active or not), so Grafana can join
any health metric to "the environments of wave N of this rollout" while keeping cardinality bounded by
the estate's size. A rollout's series are rebuilt only when its stored revision changes.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from estate.domain.deployments import DeploymentStatus
from estate.store import Store, stats
from estate.store import feed as entries
from estate.store.rollouts import RolloutRecord, RolloutStore

#: Deployment durations (seconds, from queued to the end) a histogram counts: a few seconds to an hour.
DURATION_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class EnvSeries:
    """One environment of a rollout: `estate_rollout_environment_info{...} 1`."""

    rollout: str
    module: str
    wave: int
    project: str
    env: str
    version: str
    state: str


@dataclass
class Histogram:
    """Cumulative counts per bucket upper bound (the last is +Inf), their sum and count."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    sum: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(DURATION_BUCKETS, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        bounds = [*(f"{b:g}" for b in DURATION_BUCKETS), "+Inf"]
        running, out = 0, []
        for bound, n in zip(bounds, self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(frozen=True)
class Snapshot:
    rollouts_by_phase: dict[str, int]
    environments: list[EnvSeries]
    deployments_by_status: dict[str, int]
    durations: dict[tuple[str, str], Histogram]  # (kind, status) -> histogram of finished deployments
    gate_results: dict[str, int]
    command_lag_seconds: float


class EstateMetrics:
    """Collects a `Snapshot` per scrape; keeps only caches that the store can always rebuild."""

    def __init__(self, store: Store, now: Callable[[], datetime]) -> None:
        self.store = store
        self.rollouts = RolloutStore(store)
        self.now = now
        self._lock = threading.Lock()  # scrapes may overlap
        self._series: dict[str, tuple[int, list[EnvSeries]]] = {}  # rollout -> (revision, series)
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._counted: set[int] = set()  # finished deployments at or above `_first_open` already observed
        self._first_open = 0  # every deployment below this id has ended and been observed

    def snapshot(self) -> Snapshot:
        with self._lock, self.store.connect() as conn:
            phases = stats.rollouts_by_phase(conn)
            statuses = stats.deployments_by_status(conn)
            self._observe(stats.deployments_from(conn, self._first_open))
            gates = entries.counts(conn, "gate")
            oldest = stats.oldest_undecided_command(conn)
        with self._lock:
            latest = self._latest()
            self._series = {r.id: self._series[r.id] for r in latest if r.id in self._series}
            series = [s for record in latest for s in self._rollout_series(record)]
            durations = {k: Histogram(list(h.counts), h.sum) for k, h in self._durations.items()}
        lag = max(0.0, (self.now() - oldest).total_seconds()) if oldest else 0.0
        return Snapshot(phases, series, statuses, durations, gates, lag)

    def _latest(self) -> list[RolloutRecord]:
        latest: dict[str, RolloutRecord] = {}
        for record in self.rollouts.list():  # oldest first: the last one of a module wins
            latest[record.module] = record
        return list(latest.values())

    def _rollout_series(self, record: RolloutRecord) -> list[EnvSeries]:
        cached = self._series.get(record.id)
        if cached is not None and cached[0] == record.revision:
            return cached[1]
        state = self.rollouts.state(record.id)
        series = [
            EnvSeries(state.id, state.module, e.wave, e.env.project, e.env.env, e.version, str(e.status))
            for e in state.envs
        ]
        self._series[record.id] = (record.revision, series)
        return series

    def _observe(self, found: list[stats.DeploymentTimes]) -> None:
        open_ids = []
        for d in found:
            if not DeploymentStatus(d.status).is_terminal:
                open_ids.append(d.id)
            elif d.id not in self._counted:
                self._counted.add(d.id)
                seconds = (d.updated_at - d.created_at).total_seconds()
                self._durations.setdefault((d.kind, d.status), Histogram()).observe(seconds)
        if found:
            self._first_open = min(open_ids) if open_ids else found[-1].id + 1
            self._counted = {i for i in self._counted if i >= self._first_open}


def environments_by_state(series: list[EnvSeries]) -> Counter[tuple[str, str]]:
    """(rollout, state) -> how many environments."""
    return Counter((s.rollout, s.state) for s in series)
