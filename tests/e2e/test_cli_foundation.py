"""The foundation CLI as a user runs it: apply, env list, module usage/publish, plans, schema, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from tests.support.cli import EXAMPLE_ESTATE, Cli


def test_env_list_filters_and_json_shape(cli: Cli) -> None:
    assert cli("apply", "-f", EXAMPLE_ESTATE).code == 0
    everything = cli("env", "list", "-o", "json").json
    assert len(everything) == 16
    assert everything[0] == {
        "ref": "checkout/eph-1",
        "project": "checkout",
        "id": "eph-1",
        "type": "ephemeral",
        "owner": "team-atlas",
        "labels": {"region": "eu"},
        "flagged": [],
    }
    prod_eu = cli("env", "list", "--type", "production", "--label", "region=eu", "-o", "json").json
    assert [e["ref"] for e in prod_eu] == ["checkout/prod-eu", "payments/prod-eu"]
    assert [e["ref"] for e in cli("env", "list", "--project", "search", "-o", "json").json] == [
        "search/eph-1",
        "search/eph-2",
        "search/dev",
        "search/staging",
        "search/prod",
    ]


def test_module_usage_groups_by_version_type_and_owner(cli: Cli) -> None:
    cli("apply", "-f", EXAMPLE_ESTATE)
    usage = cli("module", "usage", "postgres", "-o", "json").json
    assert usage["totals"] == {
        "version": {"1.0.0": 16},
        "env_type": {"ephemeral": 5, "development": 3, "staging": 3, "production": 5},
        "owner": {"team-atlas": 6, "team-borealis": 5, "team-cosmos": 5},
    }
    assert usage["environments"][0] == {
        "env": "checkout/eph-1",
        "env_type": "ephemeral",
        "owner": "team-atlas",
        "resource": "db",
        "version": "1.0.0",
        "rule_scope": "global",
        "lifecycle": "published",
        "lifecycle_reason": "",
    }
    text = cli("module", "usage", "postgres")
    assert "by owner: team-atlas 6, team-borealis 5, team-cosmos 5" in text.out


def test_usage_follows_the_most_specific_rule(cli: Cli, tmp_path: Path) -> None:
    estate = tmp_path / "estate"
    estate.mkdir()
    for f in EXAMPLE_ESTATE.glob("*.yaml"):
        (estate / f.name).write_text(f.read_text().replace("../modules/", f"{EXAMPLE_ESTATE.parent}/modules/"))
    assert cli("apply", "-f", estate).code == 0
    v2 = EXAMPLE_ESTATE.parent / "modules" / "postgres" / "v2.0.0"
    assert cli("module", "publish", "postgres", "2.0.0", "--source", v2).code == 0
    main = estate / "estate.yaml"
    main.write_text(
        main.read_text() + "  - {resource_type: postgres, module: postgres, version: 2.0.0, "
        "project: checkout, env: eph-1}\n"
    )
    assert cli("apply", "-f", estate).code == 0, "a version published by CLI is known to the files"
    usage = cli("module", "usage", "postgres", "-o", "json").json
    assert usage["totals"]["version"] == {"2.0.0": 1, "1.0.0": 15}
    assert usage["environments"][0]["rule_scope"] == "env"


def test_publish_is_immutable(cli: Cli, tmp_path: Path) -> None:
    cli("apply", "-f", EXAMPLE_ESTATE)
    (tmp_path / "pg-2.0.1").mkdir()
    src = str(tmp_path / "pg-2.0.1")
    first = cli("module", "publish", "postgres", "2.0.1", "--source", src, "-o", "json")
    assert first.code == 0 and first.json["created"] is True
    assert cli("module", "publish", "postgres", "2.0.1", "--source", src, "-o", "json").json["created"] is False
    clash = cli("module", "publish", "postgres", "2.0.1", "--source", "git::file:///srv/pg?ref=v2.0.1")
    assert clash.code == 2 and "immutable" in clash.err
    assert cli("module", "publish", "postgres", "two", "--source", src).code == 2
    assert cli("module", "publish", "nosuch", "1.0.0", "--source", src).code == 2
    versions = [v["version"] for v in cli("module", "list", "-o", "json").json[0]["versions"]]
    assert versions == ["1.0.0", "2.0.1"]


def test_plan_show_lists_wave_membership(cli: Cli) -> None:
    cli("apply", "-f", EXAMPLE_ESTATE)
    plan = cli("plan", "show", "standard", "-o", "json").json
    assert [w["name"] for w in plan["waves"]] == ["ephemeral", "dev", "staging", "production"]
    assert plan["waves"][3]["environments"] == [
        "checkout/prod-eu",
        "checkout/prod-us",
        "payments/prod-eu",
        "payments/prod-us",
        "search/prod",
    ]
    assert cli("plan", "show", "nope").code == 2


def test_the_published_schema_accepts_the_example_and_rejects_typos(cli: Cli) -> None:
    schema = cli("schema").json
    validator = jsonschema.Draft202012Validator(schema)
    for f in sorted(EXAMPLE_ESTATE.glob("*.yaml")):
        validator.validate(yaml.safe_load(f.read_text()))
    errors = list(validator.iter_errors({"projects": [{"id": "../x", "owner": "me"}]}))
    assert errors


def test_dry_run_shows_the_diff_and_writes_nothing(cli: Cli) -> None:
    dry = cli("apply", "-f", EXAMPLE_ESTATE, "--dry-run", "-o", "json").json
    assert dry["applied"] is False and len(dry["changes"]) == 29
    assert cli("env", "list", "-o", "json").json == []


def test_unknown_things_exit_2_without_traceback(cli: Cli) -> None:
    cli("apply", "-f", EXAMPLE_ESTATE)
    for args in (
        ["module", "usage", "nosuch"],
        ["env", "list", "--label", "novalue"],
        ["apply", "-f", "/no/such/file.yaml"],
        ["env", "frobnicate"],
    ):
        result = cli(*args)
        assert result.code == 2, args
        assert "Traceback" not in result.err


def test_console_script_runs_with_help_and_exit_codes(estate_home: Path) -> None:
    exe = Path(sys.executable).with_name("estate")
    env = {**os.environ}
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0
    assert "apply" in done.stdout and "rollout" in done.stdout
    bad = subprocess.run(
        [exe, "apply", "-f", "/nope.yaml", "-o", "json"], capture_output=True, text=True, env=env, check=False
    )
    assert bad.returncode == 2
    assert json.loads(bad.stderr)["error"]["problems"][0]["message"] == "no such file or directory"
