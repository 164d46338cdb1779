"""Rendering the root module as Terraform JSON, and reading child-module outputs from disk."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

from estate.domain.graph import ResolvedGraph, ResolvedResource
from estate.domain.ids import EnvRef
from estate.runners.module_outputs import module_outputs, read_outputs, scan_hcl
from estate.runners.render import (
    ModuleOutput,
    backend_block,
    output_key,
    root_module,
    root_outputs,
    unknown_references,
    write_json,
)

REPO = Path(__file__).resolve().parents[2]
GRAPH = ResolvedGraph(
    EnvRef("shop", "eph-1"),
    "ephemeral",
    (
        ResolvedResource("db", "postgres", "postgres", "2.0.0", "/m/pg", MappingProxyType({"env": "eph-1", "size": 3})),
        ResolvedResource(
            "1app",
            "app",
            "app",
            "1.0.0",
            "git::file:///r?ref=v1",
            MappingProxyType({"tags": ["a"]}),
            MappingProxyType({"db": "${module.db.host}"}),
            ("db",),
        ),
    ),
)


def test_root_module_uses_variables_for_literals_and_expressions_for_references(tmp_path: Path) -> None:
    main, tfvars = root_module(GRAPH, backend_block(None, GRAPH.env, tmp_path / "s" / "terraform.tfstate"))
    assert main["terraform"] == {"backend": {"local": {"path": str(tmp_path / "s" / "terraform.tfstate")}}}
    assert main["module"]["db"] == {"source": "/m/pg", "env": "${var.db__env}", "size": "${var.db__size}"}
    assert main["module"]["r-1app"] == {
        "source": "git::file:///r?ref=v1",
        "tags": "${var.r-1app__tags}",
        "db": "${module.db.host}",
    }
    assert tfvars == {"db__env": "eph-1", "db__size": 3, "r-1app__tags": ["a"]}  # exact JSON types


def test_backend_template_fills_project_and_env() -> None:
    template = {"pg": {"conn_str": "postgres://h/db", "schema_name": "estate_{project}_{env}"}}
    assert backend_block(template, GRAPH.env, Path("/unused")) == {
        "pg": {"conn_str": "postgres://h/db", "schema_name": "estate_shop_eph-1"}
    }


def test_root_outputs_follow_module_sensitivity_and_hide_unknown_modules() -> None:
    found = {"db": (ModuleOutput("host", False), ModuleOutput("password", True))}
    assert root_outputs(GRAPH, found) == {
        "output": {
            "db__host": {"value": "${module.db.host}"},
            "db__password": {"value": "${module.db.password}", "sensitive": True},
            "r-1app": {"value": "${module.r-1app}", "sensitive": True},
        }
    }
    assert output_key(GRAPH, "db__host") == "db.host"
    assert output_key(GRAPH, "r-1app__url") == "1app.url"


def test_write_json_reports_whether_it_changed_anything(tmp_path: Path) -> None:
    path = tmp_path / "main.tf.json"
    assert write_json(path, {"a": 1}) is True
    assert write_json(path, {"a": 1}) is False
    assert json.loads(path.read_text()) == {"a": 1}


def test_scan_hcl_finds_top_level_outputs_only() -> None:
    text = """
    # output "commented" {}
    output "a" {
      value     = "${var.x} } {"
      sensitive = true
    }
    locals { x = { output = 1 } }
    output "b" {
      value = { sensitive = true }
      description = <<-EOT
        } sensitive = true
      EOT
    }
    /* output "c" { } */
    output "d" { value = 1
      sensitive = false }
    """
    assert scan_hcl(text) == {"a": True, "b": False, "d": False}


def test_module_outputs_read_example_modules_and_json_modules(tmp_path: Path) -> None:
    assert read_outputs(REPO / "examples" / "modules" / "postgres" / "v2.0.0") == (
        ModuleOutput("host", False),
        ModuleOutput("password", True),
        ModuleOutput("version", False),
    )
    json_module = tmp_path / "jm"
    json_module.mkdir()
    (json_module / "out.tf.json").write_text(json.dumps({"output": {"k": {"value": 1, "sensitive": True}}}))
    (tmp_path / ".terraform" / "modules").mkdir(parents=True)
    (tmp_path / ".terraform" / "modules" / "modules.json").write_text(
        json.dumps(
            {"Modules": [{"Key": "", "Dir": "."}, {"Key": "app", "Dir": "jm"}, {"Key": "app.child", "Dir": "jm"}]}
        )
    )
    assert module_outputs(tmp_path) == {"app": (ModuleOutput("k", True),)}


def test_references_to_undeclared_outputs_are_found_before_plan() -> None:
    found = {"db": (ModuleOutput("host", False),), "r-1app": None}
    assert unknown_references(GRAPH, found) == []
    typo = ResolvedResource(
        "web", "app", "app", "1.0.0", "/m/app", references=MappingProxyType({"db": ["${module.db.hots}", "$${x}"]})
    )
    graph = ResolvedGraph(GRAPH.env, "ephemeral", (*GRAPH.resources, typo))
    assert unknown_references(graph, found) == [
        "resource 'web' input 'db' refers to output 'hots' of 'db', which postgres@2.0.0 does not declare "
        "(it declares: host)"
    ]
