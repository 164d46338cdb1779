"""What an engine needs from outside: the store, a runner, a gate sampler, the clock, and where to report.

Built once by `estate.app.bootstrap`; tests build one with fakes (a `FakeRunner`, a fake clock).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from estate.domain.gate_eval import Sample, SamplingRound
from estate.domain.rollout_events import Transition
from estate.domain.rollout_state import RolloutState
from estate.runners.ports import Runner
from estate.store import Store
from estate.store.holders import process_identity

LEASE_TTL = timedelta(seconds=30)
POLL_SECONDS = 0.25  # how often an engine looks for commands queued by another process
BATCH_SECONDS = 0.1  # at least this long between two turns of a host while deployments are in flight
DISCOVER_SECONDS = 1.0  # how often an engine host looks for rollouts nobody drives


class GateSampler(Protocol):
    """One sampling round of a metric gate: the queries `plan_queries(round)` lists, no waiting (the state
    machine spaces the rounds). Failures come back as samples with an error, never as exceptions."""

    def sample(self, round: SamplingRound) -> list[Sample]: ...


Observer = Callable[[RolloutState, Transition], None]  # e.g. Grafana annotations, the server's event stream


@dataclass
class EngineConfig:
    """Everything an engine host (and each rollout driver in it) needs."""

    store: Store
    runner: Runner
    now: Callable[[], datetime]
    sampler: GateSampler | None = None
    max_parallel: int = 4  # deployments running at once on this host, across every rollout
    on_log: Callable[[str, str], None] = lambda rollout_id, line: None
    observers: Sequence[Observer] = ()
    holder: str = field(default_factory=process_identity)
    lease_ttl: timedelta = LEASE_TTL
    poll_seconds: float = POLL_SECONDS
    batch_seconds: float = BATCH_SECONDS  # results that arrive this close together are decided in one turn
    sleep: Callable[[float], None] = time.sleep  # idle waits; tests pass one that moves a fake clock
