"""Graph resolution: rules -> versions, placeholders, references, cycles; and its JSON round trip."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from estate.domain.graph import ResolvedGraph, resolve_graph, terraform_name
from estate.domain.ids import EnvRef
from estate.domain.model import Environment, Estate, Module, ModuleVersion, Project, Resource
from estate.domain.rules import ModuleRule
from estate.errors import GraphError, NotFoundError
from estate.store.codec import decode_as, encode

CONTEXT = {"env": "${context.env_id}", "project": "${context.project_id}", "env_type": "${context.env_type_id}"}
REF = EnvRef("shop", "eph-1")


def estate(
    resources: dict[str, dict[str, Any]],
    *,
    rules: tuple[ModuleRule, ...] | None = None,
    labels: dict[str, str] | None = None,
) -> Estate:
    modules = tuple(
        Module(t, t, tuple(ModuleVersion(t, v, f"/m/{t}/{v}", MappingProxyType(CONTEXT)) for v in ("1.0.0", "2.0.0")))
        for t in ("postgres", "app", "cache")
    )
    return Estate(
        projects=(
            Project(
                "shop",
                "team",
                tuple(
                    Resource(alias, spec["type"], MappingProxyType(spec.get("params", {})))
                    for alias, spec in resources.items()
                ),
            ),
        ),
        environments=(Environment("shop", "eph-1", "ephemeral", MappingProxyType(labels or {"region": "eu"})),),
        modules=modules,
        rules=rules if rules is not None else tuple(ModuleRule(t, t, "1.0.0") for t in ("postgres", "app", "cache")),
    )


def test_context_placeholders_and_params_override_version_inputs() -> None:
    graph = resolve_graph(
        estate(
            {
                "db": {
                    "type": "postgres",
                    "params": {
                        "size": "small",
                        "env": "custom-${context.env_id}",
                        "region": "${context.labels.region}",
                    },
                }
            }
        ),
        REF,
    )
    (db,) = graph.resources
    assert (db.module, db.version, db.source) == ("postgres", "1.0.0", "/m/postgres/1.0.0")
    assert dict(db.inputs) == {
        "env": "custom-eph-1",
        "project": "shop",
        "env_type": "ephemeral",
        "size": "small",
        "region": "eu",
    }
    assert dict(db.references) == {}


def test_resource_outputs_become_terraform_references_and_order_the_graph() -> None:
    graph = resolve_graph(
        estate(
            {
                "app": {
                    "type": "app",
                    "params": {
                        "db_url": "postgres://${resources.db.outputs.host}:5432/${context.env_id}",
                        "hosts": ["${resources.cache.outputs.host}", "literal ${x"],
                    },
                },
                "db": {"type": "postgres"},
                "cache": {"type": "cache", "params": {"peer": "${resources.db.outputs.host}"}},
            }
        ),
        REF,
    )
    assert [r.alias for r in graph.resources] == ["db", "cache", "app"]
    app = graph.resource("app")
    assert app is not None
    assert app.references["db_url"] == "postgres://${module.db.host}:5432/eph-1"
    assert app.references["hosts"] == ["${module.cache.host}", "literal $${x"]
    assert app.depends_on == ("cache", "db")
    assert "db_url" not in app.inputs


def test_literal_template_syntax_is_escaped_only_where_terraform_reads_templates() -> None:
    graph = resolve_graph(
        estate(
            {
                "db": {"type": "postgres"},
                "app": {
                    "type": "app",
                    "params": {
                        "note": "%{if x} ${resources.db.outputs.host} ${context.labels.weird}",
                        "plain": "${context.labels.weird}",
                    },
                },
            },
            labels={"weird": "${oops}"},
        ),
        REF,
    )
    app = graph.resource("app")
    assert app is not None
    assert app.references["note"] == "%%{if x} ${module.db.host} $${oops}"
    assert app.inputs["plain"] == "${oops}"  # tfvars values are not templates: kept verbatim


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"x": "${resources.nope.outputs.host}"}, "names resource 'nope'"),
        ({"x": "${resources.db.host}"}, "is not of the form"),
        ({"x": "${context.labels.tier}"}, "no label 'tier'"),
        ({"x": "${context.cluster}"}, "unknown placeholder '${context.cluster}'"),
        ({"x": "${var.y}"}, "unknown placeholder"),
    ],
)
def test_bad_placeholders_are_rejected_with_the_input_named(params: dict[str, str], message: str) -> None:
    with pytest.raises(GraphError, match="input 'x'") as caught:
        resolve_graph(estate({"db": {"type": "postgres"}, "app": {"type": "app", "params": params}}), REF)
    assert message in caught.value.message
    assert caught.value.exit_code == 2


def test_cycles_are_rejected_naming_the_cycle() -> None:
    with pytest.raises(GraphError, match="cycle: app -> db -> app"):
        resolve_graph(
            estate(
                {
                    "app": {"type": "app", "params": {"a": "${resources.db.outputs.x}"}},
                    "db": {"type": "postgres", "params": {"b": "${resources.app.outputs.y}"}},
                }
            ),
            REF,
        )
    with pytest.raises(GraphError, match="cycle: db -> db"):
        resolve_graph(estate({"db": {"type": "postgres", "params": {"b": "${resources.db.outputs.y}"}}}), REF)


def test_rules_pins_and_missing_versions() -> None:
    pinned = (
        ModuleRule("postgres", "postgres", "1.0.0"),
        ModuleRule("postgres", "postgres", "2.0.0", project="shop", env="eph-1", owner="rollout:r1"),
    )
    assert resolve_graph(estate({"db": {"type": "postgres"}}, rules=pinned), REF).versions() == {"db": "postgres@2.0.0"}
    overridden = resolve_graph(estate({"db": {"type": "postgres"}}), REF, pins={"postgres": "2.0.0"})
    assert overridden.resources[0].source == "/m/postgres/2.0.0"
    with pytest.raises(GraphError, match="no module rule"):
        resolve_graph(estate({"db": {"type": "postgres"}}, rules=()), REF)
    with pytest.raises(GraphError, match=r"no version '9\.9\.9'"):
        resolve_graph(estate({"db": {"type": "postgres"}}), REF, pins={"postgres": "9.9.9"})
    with pytest.raises(NotFoundError):
        resolve_graph(estate({}), EnvRef("shop", "nope"))


def test_terraform_names_are_identifiers() -> None:
    assert terraform_name("db") == "db"
    assert terraform_name("1db") == "r-1db"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(params=st.dictionaries(st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True), json_values, max_size=4))
def test_graphs_round_trip_through_the_store_codec(params: dict[str, Any]) -> None:
    clean = {k: v for k, v in params.items() if "${" not in repr(v)}
    graph = resolve_graph(estate({"db": {"type": "postgres", "params": clean}}), REF)
    assert decode_as(ResolvedGraph, encode(graph)) == graph


@given(text=st.text(max_size=40))
def test_text_without_placeholders_passes_through_unchanged(text: str) -> None:
    if "${" in text:
        return
    graph = resolve_graph(estate({"db": {"type": "postgres", "params": {"note": text}}}), REF)
    assert graph.resources[0].inputs["note"] == text
