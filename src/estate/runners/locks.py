"""Per-environment lock and stale Terraform state-lock recovery.

The environment lock is an `flock` on `$ESTATE_HOME/locks/<project>/<env>.lock`: held for the
whole deployment, by threads of one process and by separate processes alike, and released by the
kernel when its process dies, so a killed runner never leaves it behind. Holding it proves no
Estate process is running Terraform for that environment, which is what makes it safe to clear a
local state lock that a killed Terraform left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from estate.domain.ids import EnvRef
from estate.errors import ConflictError


class EnvironmentBusy(ConflictError):
    """Another deployment of the same environment holds its lock."""

    def __init__(self, env: str, holder: str) -> None:
        super().__init__(
            f"{env} is busy: {holder} is running", hint="wait for it to finish (estate deployment list) and try again"
        )
        self.env = env


@contextlib.contextmanager
def environment_lock(path: Path, env: str, holder: str) -> Iterator[None]:
    """Hold `env`'s lock for the block; EnvironmentBusy at once if someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EnvironmentBusy(env, _read(fd) or "another deployment") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class EnvironmentLocks(Protocol):
    """Who may run an environment's Terraform now: `hold(env, what)` for the whole run, or EnvironmentBusy."""

    def hold(self, env: EnvRef, what: str) -> AbstractContextManager[None]: ...


class FileLocks:
    """`environment_lock` under `$ESTATE_HOME/locks` (one machine); `shared_locks.StoreLocks` spans machines."""

    def __init__(self, lock_path: Callable[[EnvRef], Path]) -> None:
        self.lock_path = lock_path

    def hold(self, env: EnvRef, what: str) -> AbstractContextManager[None]:
        return environment_lock(self.lock_path(env), str(env), what)


def _read(fd: int) -> str:
    return os.pread(fd, 512, 0).decode(errors="replace").strip()


def clear_stale_state_lock(state_file: Path) -> bool:
    """Remove the lock-info file a killed Terraform left next to a local state file.

    Terraform's real local lock is an fcntl lock on the state file, which died with the process;
    we take that same lock to prove nobody holds it before deleting the leftover `.lock.info`.
    Backends with server-side locks (`pg` advisory locks) release them when the session ends.
    """
    info = state_file.parent / f".{state_file.name}.lock.info"
    if not info.exists():
        return False
    if state_file.exists():
        with open(state_file, "rb+") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # a live Terraform holds it after all
            try:
                info.unlink(missing_ok=True)
            finally:
                fcntl.lockf(handle, fcntl.LOCK_UN)
        return True
    info.unlink(missing_ok=True)
    return True
