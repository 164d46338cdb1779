"""The engine's view of the store: one rollout's state, inbox, log, lease and finalization."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from estate.domain import rollout_events as ev
from estate.domain.rollout_state import EnvState, RolloutState
from estate.engine import actions as act
from estate.store import Store
from estate.store import rollouts as repo
from estate.store.codec import decode, decode_as, encode, gc_paused

LogLine = tuple[str, str | None, str, dict[str, Any]]  # kind, actor, summary, payload


def _dead_here(holder: str) -> bool:
    """True when `holder` (`host:pid`) names a process of this host that no longer runs."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_name(rollout_id: str) -> str:
    return f"rollout:{rollout_id}"


class RolloutRepo:
    """Loads and saves one rollout; the last record read is the base of the next optimistic save."""

    def __init__(self, store: Store, rollout_id: str) -> None:
        self.store = store
        self.id = rollout_id
        self._record: repo.RolloutRecord | None = None
        self._state: RolloutState | None = None
        self._env_json: dict[int, tuple[EnvState, Any]] = {}  # id -> (the object, its JSON) as last saved

    def state(self) -> RolloutState:
        if self._state is None:
            with gc_paused(), self.store.engine.connect() as conn:
                self._record = repo.load_rollout(conn, self.id)
                self._state = decode_as(RolloutState, self._record.state)
        return self._state

    def commands(self) -> list[tuple[int, ev.Command]]:
        with self.store.engine.connect() as conn:
            queued = repo.pending_commands(conn, self.id)
        return [(c.id, decode(ev.Command, c.command)) for c in queued]

    def save(self, state: RolloutState, log: Sequence[LogLine], outcomes: dict[int, str], now: datetime) -> None:
        """Persist the new state, its log and the commands' outcomes in one transaction."""
        assert self._record is not None
        with self.store.engine.begin() as conn:
            self._record = repo.save_rollout(
                conn, self._record, state=self._encode(state), phase=str(state.phase), now=now
            )
            repo.append_events(conn, self.id, [repo.LogEntry(k, s, a, p) for k, a, s, p in log], now)
            for command_id, outcome in outcomes.items():
                repo.finish_command(conn, command_id, outcome, now)
        self._state = state

    def _encode(self, state: RolloutState) -> Any:
        """`encode(state)`, re-encoding only the environments that changed since the last save: states are
        immutable and share unchanged `EnvState` objects, so identity says what changed."""
        data = encode(replace(state, envs=()))
        memo = self._env_json
        data["envs"] = [memo[id(e)][1] if id(e) in memo and memo[id(e)][0] is e else encode(e) for e in state.envs]
        self._env_json = {id(e): (e, js) for e, js in zip(state.envs, data["envs"], strict=True)}
        return data

    def finalize(self, action: ev.Finalize) -> list[str]:
        with self.store.engine.begin() as conn:
            estate = self.store.load_estate(conn)
            return act.finalize(conn, self.id, action, estate)

    def acquire(self, holder: str, now: datetime, ttl: timedelta) -> str | None:
        """None when `holder` holds the lease now; otherwise who does.

        A lease held by a dead process of this host is taken over at once instead of waiting for it to
        expire: after a crash the next command resumes the rollout immediately.
        """
        with self.store.engine.begin() as conn:
            if repo.acquire_lease(conn, lease_name(self.id), holder, now, ttl):
                return None
            current = repo.lease_holder(conn, lease_name(self.id), now)
            if current is not None and _dead_here(current):
                repo.release_lease(conn, lease_name(self.id), current)
                if repo.acquire_lease(conn, lease_name(self.id), holder, now, ttl):
                    return None
            return current or "another engine"

    def release(self, holder: str) -> None:
        with self.store.engine.begin() as conn:
            repo.release_lease(conn, lease_name(self.id), holder)
