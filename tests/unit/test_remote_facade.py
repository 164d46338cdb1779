"""The CLI's remote mode stands in for the application (`Context.app` returns either): every use case the
remote facade offers has the parameters of the real one, and every use case the CLI calls is offered."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from estate.app.audit import AuditTrail
from estate.app.deployments import Deployments
from estate.app.feed import Feed
from estate.app.freezes import Freezes
from estate.app.inventory import Inventory
from estate.app.rollouts import Rollouts
from estate.cli import remote

CLI = Path(remote.__file__).parent
PAIRS = [
    ("inventory", Inventory, remote.RemoteInventory),
    ("deployments", Deployments, remote.RemoteDeployments),
    ("rollouts", Rollouts, remote.RemoteRollouts),
    ("audit", AuditTrail, remote.RemoteAudit),
    ("feed", Feed, remote.RemoteFeed),
    ("freezes", Freezes, remote.RemoteFreezes),
]


@pytest.mark.parametrize(("name", "real", "facade"), PAIRS, ids=[p[0] for p in PAIRS])
def test_the_remote_facade_mirrors_the_use_cases_the_cli_calls(name: str, real: type, facade: type) -> None:
    called = set()
    for source in CLI.glob("*.py"):
        called |= set(re.findall(rf"\.{name}\.(\w+)\(", source.read_text()))
    assert called, f"the CLI calls nothing on app.{name}?"
    for method in sorted(called):
        assert hasattr(facade, method), f"remote mode lacks {name}.{method}"
        mine = inspect.signature(getattr(facade, method)).parameters
        theirs = inspect.signature(getattr(real, method)).parameters
        assert list(mine) == [p for p in theirs if p in mine], f"{name}.{method}: parameters differ"
        assert set(mine) >= {p for p, v in theirs.items() if v.default is inspect.Parameter.empty}, method
