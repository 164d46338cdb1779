"""Module version lifecycle through the `estate` CLI with real Terraform: a defective version is refused by
`deploy`, `rollout start` and `rollout retarget` with a clear message (and nothing is deployed), `module usage`
and `env list` flag the environments still on it, a deprecated version deploys with a warning, and an admin's
`restore` makes it deployable again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import Cli, CliResult
from tests.support.terraform import Sandbox, estate_doc

pytestmark = pytest.mark.slow

PLAN = {"id": "all", "waves": [{"name": "all", "select": {}, "max_parallel": 2}]}


def test_a_defective_version_is_refused_everywhere_and_flagged_where_it_runs(
    cli: Cli, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in sandbox.environ.items():
        monkeypatch.setenv(name, value)
    rules = [
        {"resource_type": "postgres", "module": "postgres", "version": "1.0.0"},
        {"resource_type": "postgres", "module": "postgres", "version": "2.0.0", "project": "shop", "env": "eph-2"},
    ]
    sandbox.apply({**estate_doc({"eph-1": "ephemeral", "eph-2": "ephemeral"}, rules=rules), "rollout_plans": [PLAN]})

    def run(*args: str | Path, code: int = 0) -> CliResult:
        result = cli(*args)
        assert result.code == code, (
            f"estate {' '.join(map(str, args))} exited {result.code}:\n{result.out}\n{result.err}"
        )
        return result

    assert run("deploy", "shop/eph-1", "shop/eph-2", "-o", "json").json[1]["versions"] == {"db": "postgres@2.0.0"}
    marked = run("module", "mark-defective", "postgres", "2.0.0", "--reason", "corrupts indexes", "-o", "json").json
    assert (marked["lifecycle"], marked["lifecycle_reason"]) == ("defective", "corrupts indexes")
    assert "needs a reason" in run("module", "deprecate", "postgres", "1.0.0", "--reason", " ", code=2).err

    refused = run("deploy", "shop/eph-2", code=2)
    assert "postgres 2.0.0 is defective (db of shop/eph-2): corrupts indexes" in refused.err
    assert "estate module restore postgres 2.0.0" in refused.err
    assert len(run("deployment", "list", "shop/eph-2", "-o", "json").json) == 1, "nothing was queued"
    assert (
        "postgres 2.0.0 is defective: corrupts indexes"
        in run("rollout", "start", "postgres", "2.0.0", "--plan", "all", code=2).err
    )
    started = run("rollout", "start", "postgres", "2.0.1", "--plan", "all", "--no-preflight", "--detach", "-o", "json")
    rollout = started.json["id"]
    assert "postgres 2.0.0 is defective" in run("rollout", "retarget", rollout, "2.0.0", code=2).err
    assert run("rollout", "status", rollout, "-o", "json").json["version"] == "2.0.1", "the retarget changed nothing"
    run("rollout", "abort", rollout)

    usage = run("module", "usage", "postgres", "-o", "json").json
    assert usage["flagged"] == ["shop/eph-2"]
    row = next(r for r in usage["environments"] if r["env"] == "shop/eph-2")
    assert (row["lifecycle"], row["lifecycle_reason"]) == ("defective", "corrupts indexes")
    assert "on a deprecated or defective version: shop/eph-2" in run("module", "usage", "postgres").out
    flagged = {e["ref"]: e["flagged"] for e in run("env", "list", "-o", "json").json}
    assert flagged["shop/eph-1"] == [] and flagged["shop/eph-2"][0]["lifecycle"] == "defective"

    run("module", "deprecate", "postgres", "1.0.0", "--reason", "end of life in June")
    warned = run("deploy", "shop/eph-1")
    assert "warning: postgres 1.0.0 is deprecated (db of shop/eph-1): end of life in June" in warned.err
    run("module", "restore", "postgres", "2.0.0", "--reason", "the index bug was in the test data")
    assert run("deploy", "shop/eph-2", "-o", "json").json["status"] == "succeeded"
    listed = run("module", "list").out
    assert "1.0.0 (deprecated)" in listed and "2.0.0 (defective)" not in listed
    audit = run("audit", "-o", "json").json
    assert {"module mark-defective", "module deprecate", "module restore"} <= {a["action"] for a in audit}
