"""Bad estate-as-code is refused with file:line:column and the field path, and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from estate.config import SourceFile, load_estate, load_sources
from estate.errors import ConfigError
from tests.support.cli import EXAMPLE_ESTATE, Cli

BASE = """\
env_types:
  - {id: ephemeral, rank: 0}
  - {id: production, rank: 1}
modules:
  - id: postgres
    resource_type: postgres
    versions:
      - {version: 1.0.0, source: ./m}
module_rules:
  - {resource_type: postgres, module: postgres, version: 1.0.0}
projects:
  - id: checkout
    owner: team-atlas
    resources: {db: {type: postgres}}
    environments:
      - {id: eph-1, type: ephemeral}
      - {id: prod, type: production}
"""


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "estate.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_estate(path)
    return [str(p) for p in info.value.problems]


def test_the_base_document_is_valid(tmp_path: Path) -> None:
    (tmp_path / "estate.yaml").write_text(BASE)
    estate = load_estate(tmp_path / "estate.yaml").estate
    assert [str(e.ref) for e in estate.environments] == ["checkout/eph-1", "checkout/prod"]
    assert estate.modules[0].versions[0].source == str((tmp_path / "m").resolve())


def test_unknown_env_type_names_file_line_and_path(tmp_path: Path) -> None:
    text = BASE.replace("{id: prod, type: production}", "{id: prod, type: prod}")
    problems = _problems(tmp_path, text)
    assert problems == [f"{tmp_path / 'estate.yaml'}:17:26: projects[0].environments[1].type: unknown env type 'prod'"]


def test_malformed_yaml_names_the_position(tmp_path: Path) -> None:
    problems = _problems(tmp_path, BASE + "rollout_plans: [\n  {id: x\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'estate.yaml'}:")
    assert "YAML syntax error" in problems[0]


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "UPPER", "-lead", "x" * 64, ""])
def test_ids_that_could_escape_a_path_are_refused(tmp_path: Path, bad_id: str) -> None:
    problems = _problems(tmp_path, BASE.replace("id: eph-1", f"id: '{bad_id}'"))
    assert any("projects[0].environments[0].id" in p and ":16:" in p for p in problems), problems


def test_unknown_field_is_named(tmp_path: Path) -> None:
    problems = _problems(tmp_path, BASE.replace("owner: team-atlas", "owner: team-atlas\n    ownr: typo"))
    assert problems == [f"{tmp_path / 'estate.yaml'}:14:5: projects[0].ownr: unknown field"]


def test_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    problems = _problems(tmp_path, BASE.replace("    owner: team-atlas\n", ""))
    assert problems == [f"{tmp_path / 'estate.yaml'}:12:5: projects[0].owner: Field required"]


def test_bad_semver_and_unknown_version(tmp_path: Path) -> None:
    text = BASE.replace("{version: 1.0.0, source: ./m}", "{version: '1.0', source: ./m}")
    problems = _problems(tmp_path, text)
    assert any("modules[0].versions[0].version: '1.0' is not a semantic version" in p for p in problems)
    assert any("module_rules[0].version: module 'postgres' has no version '1.0.0'" in p for p in problems)


def test_unknown_module_and_duplicate_ids(tmp_path: Path) -> None:
    text = BASE.replace("module: postgres, version", "module: postgre, version").replace(
        "{id: prod, type: production}", "{id: eph-1, type: production}"
    )
    problems = _problems(tmp_path, text)
    assert any(":10:" in p and "module_rules[0].module: unknown module 'postgre'" in p for p in problems)
    assert any(":17:" in p and "projects[0].environments[1].id: duplicate environment 'eph-1'" in p for p in problems)


def test_rules_that_tie_are_an_error_not_a_coin_flip(tmp_path: Path) -> None:
    extra = (
        "  - {resource_type: postgres, module: postgres, version: 1.0.0, env_type: production}\n"
        "  - {resource_type: postgres, module: postgres, version: 1.0.0, env_type: production}\n"
    )
    problems = _problems(tmp_path, BASE.replace("projects:\n", extra + "projects:\n"))
    assert problems == [
        f"{tmp_path / 'estate.yaml'}:12:5: module_rules[2]: ties with module_rules[1] "
        "(postgres -> postgres@1.0.0 for env_type=production); the most specific rule must be unique"
    ]


def test_rule_scoped_to_an_env_needs_its_project(tmp_path: Path) -> None:
    text = BASE.replace("version: 1.0.0}\nprojects", "version: 1.0.0, env: eph-1}\nprojects")
    problems = _problems(tmp_path, text)
    assert any("module_rules[0].env: a rule scoped to an env must also name its project" in p for p in problems)


def test_selector_must_match_known_things(tmp_path: Path) -> None:
    text = BASE + "rollout_plans:\n  - id: std\n    waves:\n      - {name: w1, select: {env_type: staging}}\n"
    problems = _problems(tmp_path, text)
    assert problems == [
        f"{tmp_path / 'estate.yaml'}:21:39: rollout_plans[0].waves[0].select.env_type: unknown env type 'staging'"
    ]


def test_errors_in_a_directory_name_the_right_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text(
        "projects:\n  - id: search\n    owner: x\n    environments:\n      - {id: dev, type: development}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_estate(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path / 'b.yaml'}:5:25: projects[1].environments[0].type: unknown env type 'development'"
    ]


def test_cli_apply_of_bad_input_exits_2_and_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    assert cli("apply", "-f", EXAMPLE_ESTATE).code == 0
    before = cli("env", "list", "-o", "json").json
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("{id: prod, type: production}", "{id: prod, type: prod}"))
    result = cli("apply", "-f", bad, "--prune")
    assert result.code == 2
    assert "projects[0].environments[1].type: unknown env type 'prod'" in result.err
    assert "Traceback" not in result.err
    assert cli("env", "list", "-o", "json").json == before


def test_cli_json_errors_are_structured(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("type: production}", "type: prod}"))
    result = cli("apply", "-f", bad, "-o", "json")
    assert result.code == 2
    problem = json.loads(result.err)["error"]["problems"][0]
    assert problem == {
        "file": str(bad),
        "line": 17,
        "column": 26,
        "path": "projects[0].environments[1].type",
        "message": "unknown env type 'prod'",
    }


def test_access_bindings_with_an_unknown_role_a_bad_subject_or_an_unknown_scope_name_their_place(
    tmp_path: Path,
) -> None:
    where = tmp_path / "estate.yaml"
    text = BASE + (
        "access:\n"
        "  - {role: approver, subjects: [bob], scope: {env_types: [production]}}\n"
        "  - {role: superuser, subjects: [alex]}\n"
        "  - {role: operator, subjects: ['bad subject']}\n"
    )
    problems = _problems(tmp_path, text)
    assert problems[0].startswith(f"{where}:20:12: access[1].role: Input should be 'viewer', 'deployer'")
    assert problems[1].startswith(f"{where}:21:33: access[2].subjects[0]: String should match pattern")
    scoped = BASE + "access:\n  - {role: deployer, subjects: [carol], scope: {projects: [nope], env_types: [prod]}}\n"
    assert _problems(tmp_path, scoped) == [
        f"{where}:19:60: access[0].scope.projects[0]: unknown project 'nope'",
        f"{where}:19:79: access[0].scope.env_types[0]: unknown env type 'prod'",
    ]


def test_access_bindings_and_the_roles_shorthand_become_bindings(tmp_path: Path) -> None:
    text = BASE + (
        "access:\n"
        "  - {role: approver, subjects: [bob, 'group:sre'], scope: {env_types: [production]}}\n"
        "roles:\n"
        "  operator: [alex]\n"
    )
    (tmp_path / "estate.yaml").write_text(text)
    bindings = load_estate(tmp_path / "estate.yaml").estate.access
    assert [(str(b.role), b.subjects, str(b.scope)) for b in bindings] == [
        ("approver", ("bob", "group:sre"), "env types production"),
        ("operator", ("alex",), "everywhere"),
    ]


def test_characters_yaml_does_not_allow_are_a_problem_not_a_crash() -> None:
    with pytest.raises(ConfigError, match=r"estate.yaml: YAML error: .*characters are not allowed"):
        load_sources([SourceFile("estate.yaml", "a: \x08")])
