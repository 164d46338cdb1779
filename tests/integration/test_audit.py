"""The audit trail: every attempt to change something leaves one entry, done or refused, with who and why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from estate.app import App, Caller, bootstrap
from estate.app.audit import AuditFilter
from estate.errors import ConfigError, NotFoundError
from tests.support.cli import EXAMPLE_ESTATE


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    opened = bootstrap({"ESTATE_HOME": str(tmp_path / "home")})
    yield opened
    opened.close()


def test_changes_and_refused_attempts_are_audited_newest_first(app: App, tmp_path: Path) -> None:
    alex = Caller("alex", source="127.0.0.1", request_id="r-1")
    app.inventory.apply(alex, EXAMPLE_ESTATE, dry_run=False, prune=False, force=False)
    broken = tmp_path / "broken.yaml"
    broken.write_text("env_types: [{id: Bad_Id, rank: 0}]\n")
    with pytest.raises(ConfigError):
        app.inventory.apply(Caller("bob"), broken, dry_run=False, prune=False, force=False)
    with pytest.raises(NotFoundError):
        app.inventory.publish(alex, "nope", "1.0.0", "git::file:///x")

    entries = app.audit.entries(AuditFilter())
    assert [(e.actor, e.action, e.target, e.outcome) for e in entries] == [
        ("alex", "module publish", "module:nope@1.0.0", "refused"),
        ("bob", "apply", "estate", "refused"),
        ("alex", "apply", "estate", "ok"),
    ]
    assert "unknown module 'nope'" in entries[0].reason
    assert f"{broken}:1:18: env_types[0].id" in entries[1].reason
    assert (entries[2].source, entries[2].request_id, entries[2].auth) == ("127.0.0.1", "r-1", "local")
    assert entries[2].details["changes"] > 0
    assert [e.actor for e in app.audit.entries(AuditFilter(actor="bob"))] == ["bob"]
    assert [e.outcome for e in app.audit.entries(AuditFilter(outcome="ok"))] == ["ok"]
