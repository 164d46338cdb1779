"""Alerts, the pure part (label matchers as Prometheus writes them, which environment an alert names) and the
module version lifecycle rules."""

from __future__ import annotations

import pytest

from estate.domain.alerts import Alert, AlertRouting, AlertStatus, LabelMatcher, MatchOp, parse_matchers, selected
from estate.domain.ids import EnvRef
from estate.domain.lifecycle import DefectiveVersion, Lifecycle, check_all, check_change, check_deployable
from estate.domain.model import ModuleVersion
from estate.errors import InputError


def test_label_matchers_read_as_prometheus_writes_them() -> None:
    found = parse_matchers('{severity=~"critical|page", team!="db", env!~"eph-.*", x="a\\"b"}')
    assert found == (
        LabelMatcher("severity", MatchOp.RE, "critical|page"),
        LabelMatcher("team", MatchOp.NE, "db"),
        LabelMatcher("env", MatchOp.NRE, "eph-.*"),
        LabelMatcher("x", MatchOp.EQ, 'a"b'),
    )
    assert str(found[3]) == 'x="a\\"b"'
    assert selected(found[:3], {"severity": "page", "env": "prod"})
    assert not selected(found[:1], {"severity": "pagexx"}), "regular expressions are anchored"
    assert selected(parse_matchers('team=""'), {}), "a missing label is the empty string"
    assert selected((), {"anything": "x"})


@pytest.mark.parametrize("text", ["severity", 'severity="x" team', 'sev=~"(x"', "", '9x="a"'])
def test_bad_selectors_say_where(text: str) -> None:
    with pytest.raises(InputError, match="alert selector"):
        parse_matchers(text)


def test_an_alert_names_its_environment_by_labels() -> None:
    routing = AlertRouting()
    assert routing.env_of({"project": "shop", "env": "eph-1"}) == EnvRef("shop", "eph-1")
    assert routing.env_of({"estate_env": "crm/prod", "project": "shop", "env": "eph-1"}) == EnvRef("crm", "prod")
    assert routing.env_of({"env": "eph-1"}) is None
    assert routing.env_of({"estate_env": "../etc"}) is None, "a malformed name names nothing"
    custom = AlertRouting(project_label="team", env_label="namespace")
    assert custom.env_of({"team": "shop", "namespace": "prod"}) == EnvRef("shop", "prod")


def test_one_firing_is_one_key_whatever_the_repeats() -> None:
    a = Alert("X", AlertStatus.FIRING, {"alertname": "X", "env": "e"}, None, "", "fp1")
    assert a.key == Alert("X", AlertStatus.FIRING, {}, None, "http://elsewhere", "fp1").key
    assert str(a) == "X {env=e}"


def version(lifecycle: Lifecycle, reason: str = "") -> ModuleVersion:
    return ModuleVersion("postgres", "2.0.0", "/src", lifecycle=lifecycle, lifecycle_reason=reason)


def test_defective_refuses_deprecated_warns_published_says_nothing() -> None:
    assert check_deployable(version(Lifecycle.PUBLISHED)) is None
    assert check_deployable(version(Lifecycle.DEPRECATED, "use 2.1"), "shop/prod") == (
        "postgres 2.0.0 is deprecated (shop/prod): use 2.1"
    )
    with pytest.raises(DefectiveVersion, match=r"postgres 2\.0\.0 is defective: corrupts indexes") as refused:
        check_deployable(version(Lifecycle.DEFECTIVE, "corrupts indexes"))
    assert refused.value.hint is not None and "estate module restore postgres 2.0.0" in refused.value.hint
    assert refused.value.exit_code == 2
    assert check_all([(version(Lifecycle.DEPRECATED, "old"), "a"), (version(Lifecycle.PUBLISHED), "b")]) == [
        "postgres 2.0.0 is deprecated (a): old"
    ]


def test_a_lifecycle_change_needs_a_reason_and_the_same_state_changes_nothing() -> None:
    with pytest.raises(InputError, match="needs a reason"):
        check_change(Lifecycle.PUBLISHED, Lifecycle.DEFECTIVE, " ")
    assert check_change(Lifecycle.PUBLISHED, Lifecycle.DEFECTIVE, "bad")
    assert not check_change(Lifecycle.DEFECTIVE, Lifecycle.DEFECTIVE, "bad")
