"""The progress port: long work (deploying many environments, drift checks, preflight plans) reports each
item as it finishes, so an entry point can draw a progress bar or stream a job's progress."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def begin(self, label: str, total: int) -> None:
        """Work on `total` items starts."""
        ...

    def advance(self, item: str, outcome: str) -> None:
        """One item finished with `outcome` (e.g. `succeeded`, `failed`, `drifted`)."""
        ...


class Silent:
    """Progress nobody watches."""

    def begin(self, label: str, total: int) -> None:
        pass

    def advance(self, item: str, outcome: str) -> None:
        pass
