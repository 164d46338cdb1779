"""The pure Prometheus-gate logic: template rendering (injection-safe) and the verdict rules."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from estate.domain.gate_eval import (
    Judgement,
    Sample,
    SampleStatus,
    SamplingRound,
    TemplateError,
    Verdict,
    check_template,
    evaluate,
    more_rounds,
    plan_queries,
    render_query,
)
from estate.domain.links import grafana_explore_url, prometheus_graph_url
from estate.domain.model import Environment
from estate.domain.plans import CompareGate, GateScope, NoData, PrometheusGate

EU = Environment("checkout", "eph-1", "ephemeral", {"region": "eu"})
US = Environment("payments", "eph-1", "ephemeral", {"region": "us"})
OTHER = Environment("search", "eph-2", "ephemeral")
WAVE = [EU, US, OTHER]


def render(template: str, env: Environment | None = EU, **kw: object) -> str:
    return render_query(template, wave_name="ephemeral", wave_envs=WAVE, env=env, **kw)  # type: ignore[arg-type]


# --- templates ---------------------------------------------------------------------------------


def test_env_placeholders_are_filled_in() -> None:
    q = 'max(x{project="{{ env.project }}", env="{{env.id}}", type="{{ env.type }}", r="{{ env.labels.region }}"})'
    assert render(q) == 'max(x{project="checkout", env="eph-1", type="ephemeral", r="eu"})'


def test_wave_placeholders_match_the_wave_env_ids_once_each() -> None:
    q = 'max(x{wave="{{ wave.name }}", env=~"{{ wave.envs_regex }}"})'
    assert render(q, env=None, scope=GateScope.WAVE) == 'max(x{wave="ephemeral", env=~"eph-1|eph-2"})'


def test_envs_regex_escapes_regex_metacharacters_then_the_string_literal() -> None:
    odd = [Environment("p", "a.b", "t"), Environment("p", "c+d", "t")]
    q = render_query('x{env=~"{{ wave.envs_regex }}"}', wave_name="w", wave_envs=odd, scope=GateScope.WAVE)
    # regex a\.b|c\+d, each backslash doubled inside a double-quoted PromQL string
    assert q == 'x{env=~"a\\\\.b|c\\\\+d"}'
    raw = render_query("x{env=~`{{ wave.envs_regex }}`}", wave_name="w", wave_envs=odd, scope=GateScope.WAVE)
    assert raw == "x{env=~`a\\.b|c\\+d`}"


def test_unknown_placeholders_are_all_named() -> None:
    with pytest.raises(TemplateError, match=r"\{\{ env\.name \}\}, \{\{ foo \}\}"):
        check_template('x{a="{{ foo }}", b="{{ env.name }}", c="{{ env.id }}"}')


def test_scope_wave_refuses_per_env_placeholders() -> None:
    with pytest.raises(TemplateError, match=r"scope 'wave'.*env\.id"):
        check_template('x{env="{{ env.id }}"}', GateScope.WAVE)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("x{env={{ env.id }}}", "outside a string literal"),
        ('x # "{{ env.id }}"\n', "inside a comment"),
        ('x{env="\\{{ env.id }}"}', "follows a backslash"),
        ('x{env="{{ env.id }"}', "without a closing"),
    ],
)
def test_placeholders_must_sit_inside_a_string_literal(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        check_template(template)


def test_a_missing_label_or_an_empty_wave_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError, match="search/eph-2 has no label 'region'"):
        render('x{r="{{ env.labels.region }}"}', env=OTHER)
    with pytest.raises(TemplateError, match="at least one environment"):
        render_query('x{e=~"{{ wave.envs_regex }}"}', wave_name="w", wave_envs=[], scope=GateScope.WAVE)


def test_quoted_strings_with_escapes_are_tracked() -> None:
    # The escaped quote does not end the string, so the placeholder is still inside it.
    assert render('x{a="say \\"{{ env.id }}\\""}') == 'x{a="say \\"eph-1\\""}'
    assert render("x{a='{{ env.id }}'}") == "x{a='eph-1'}"


def _promql_string_at(text: str, start: int) -> tuple[str, int]:
    """Decode the PromQL string literal opening at text[start] as Prometheus' lexer does; return (value, end)."""
    quote, out, i = text[start], [], start + 1
    simple = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", quote: quote}
    while text[i] != quote:
        assert text[i] != "\n", "raw newline inside a string literal"
        if text[i] == "\\":
            nxt = text[i + 1]
            if nxt == "x":
                out.append(chr(int(text[i + 2 : i + 4], 16)))
                i += 4
                continue
            assert nxt in simple, f"unknown escape \\{nxt}"
            out.append(simple[nxt])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out), i + 1


@given(value=st.text(), quote=st.sampled_from(['"', "'"]))
def test_no_label_value_can_break_out_of_its_string(value: str, quote: str) -> None:
    env = Environment("p", "e", "t", {"region": value})
    template = f"sum(x{{region={quote}{{{{ env.labels.region }}}}{quote}}}) > 1"
    query = render(template, env=env)
    prefix = "sum(x{region="
    decoded, end = _promql_string_at(query, len(prefix))
    assert decoded == value
    assert query[end:] == "}) > 1"


def test_plan_queries_one_per_env_or_one_per_wave_and_template_errors_become_data() -> None:
    gate = PrometheusGate('x{r="{{ env.labels.region }}"}', max=1)
    planned = plan_queries(SamplingRound(gate, "ephemeral", 0, WAVE))
    assert [p.subject for p in planned] == ["checkout/eph-1", "payments/eph-1", "search/eph-2"]
    assert planned[0].query == 'x{r="eu"}' and planned[0].error is None
    assert planned[2].error is not None and "no label 'region'" in planned[2].error
    wave_gate = PrometheusGate('max(x{env=~"{{ wave.envs_regex }}"})', max=1, scope=GateScope.WAVE)
    (only,) = plan_queries(SamplingRound(wave_gate, "ephemeral", 0, WAVE))
    assert only.subject == "wave/ephemeral" and only.query == 'max(x{env=~"eph-1|eph-2"})'


# --- verdicts ------------------------------------------------------------------------------------

Value = float | str | None


def observations(values: dict[str, list[Value]]) -> list[Sample]:
    return [Sample.of(s, i, f"q{{{s}}}", v) for s, vs in values.items() for i, v in enumerate(vs)]


def run(gate: PrometheusGate, values: dict[str, list[Value]]) -> Judgement:
    return evaluate(gate, observations(values))


GATE = PrometheusGate("q", max=0.05, count=3)


def test_healthy_envs_pass_with_their_observed_values() -> None:
    result = run(GATE, {"a/x": [0.001, 0.002, 0.001], "a/y": [0.0, 0.0, 0.01]})
    assert result.verdict == Verdict.PASSED
    assert result.subjects[0].samples[1].values == (0.002,)
    assert result.subjects[0].query == "q{a/x}"
    assert result.reason == "all 2 passed"


def test_one_failing_env_fails_the_gate_and_is_named_with_its_values() -> None:
    result = run(GATE, {"a/x": [0.001] * 3, "a/y": [0.25, 0.26, 0.25]})
    assert result.verdict == Verdict.FAILED
    assert [s.verdict for s in result.subjects] == [Verdict.PASSED, Verdict.FAILED]
    assert "a/y: 3 of 3 samples failed max 0.05" in result.reason
    assert "observed 0.25, 0.26, 0.25" in result.reason


def test_equal_to_max_or_min_passes() -> None:
    gate = PrometheusGate("q", max=0.05, min=0.01)
    assert run(gate, {"a/x": [0.05]}).verdict == Verdict.PASSED
    assert run(gate, {"a/x": [0.01]}).verdict == Verdict.PASSED
    assert run(gate, {"a/x": [0.0099]}).verdict == Verdict.FAILED


def test_unreachable_prometheus_error_and_nan_are_inconclusive() -> None:
    for bad in ["prometheus: unreachable", math.nan]:
        result = run(GATE, {"a/x": [0.001, bad, 0.001]})
        assert result.verdict == Verdict.INCONCLUSIVE
        assert result.subjects[0].samples[1].status == SampleStatus.ERROR


def test_a_definite_failure_beats_missing_evidence() -> None:
    assert run(GATE, {"a/x": [0.3, 0.3, "down"], "a/y": ["down"] * 3}).verdict == Verdict.FAILED


@pytest.mark.parametrize(
    ("policy", "verdict"),
    [(NoData.INCONCLUSIVE, Verdict.INCONCLUSIVE), (NoData.FAIL, Verdict.FAILED), (NoData.PASS, Verdict.PASSED)],
)
def test_no_data_policy(policy: NoData, verdict: Verdict) -> None:
    assert run(replace(GATE, no_data=policy), {"a/x": [None, None, None]}).verdict == verdict


def test_no_data_with_fail_policy_counts_against_failure_limit() -> None:
    gate = replace(GATE, no_data=NoData.FAIL, failure_limit=1)
    assert run(gate, {"a/x": [None, 0.0, 0.0]}).verdict == Verdict.PASSED
    assert run(gate, {"a/x": [None, None, 0.0]}).verdict == Verdict.FAILED


def test_missing_samples_or_subjects_are_inconclusive() -> None:
    assert run(GATE, {"a/x": [0.0, 0.0]}).reason.endswith("only 2 of 3 samples taken")
    assert evaluate(GATE, []).verdict == Verdict.INCONCLUSIVE
    expected = evaluate(GATE, observations({"a/x": [0.0] * 3}), expected=["a/x", "a/y"])
    assert expected.verdict == Verdict.INCONCLUSIVE
    assert expected.subjects[1].subject == "a/y"


def test_a_repeated_round_counts_once_the_last_one_wins() -> None:
    obs = [*observations({"a/x": [0.0, 0.3, 0.0]}), Sample.of("a/x", 1, "q", 0.01)]
    assert evaluate(GATE, obs).verdict == Verdict.PASSED


def test_several_series_in_one_sample_breach_if_any_does() -> None:
    obs = [Sample("w/x", i, "q", (0.01, 0.3)) for i in range(3)]
    result = evaluate(GATE, obs)
    assert result.verdict == Verdict.FAILED
    assert "observed [0.01, 0.3]" in result.reason


def test_a_gate_without_condition_never_passes() -> None:
    assert run(PrometheusGate("q"), {"a/x": [0.0]}).verdict == Verdict.INCONCLUSIVE


numbers = st.floats(min_value=-10, max_value=10, allow_nan=False)
sample_values = st.one_of(numbers, st.none(), st.just(math.nan), st.sampled_from(["refused", "bad_data"]))
subject_values = st.dictionaries(
    st.sampled_from(["p/a", "p/b", "q/c"]), st.lists(sample_values, min_size=1, max_size=5), min_size=1
)
gates = st.builds(
    PrometheusGate,
    query=st.just("q"),
    max=st.one_of(st.none(), numbers),
    min=st.one_of(st.none(), numbers),
    count=st.integers(1, 5),
    failure_limit=st.integers(0, 5),
    no_data=st.sampled_from(list(NoData)),
)


@given(gate=gates, values=subject_values)
def test_error_or_nan_never_yields_passed(gate: PrometheusGate, values: dict[str, list[Value]]) -> None:
    if any(isinstance(v, str) or (isinstance(v, float) and math.isnan(v)) for vs in values.values() for v in vs):
        assert run(gate, values).verdict != Verdict.PASSED


@given(gate=gates, values=subject_values, raise_by=st.floats(min_value=0, max_value=100))
def test_raising_max_never_turns_passed_into_failed(
    gate: PrometheusGate, values: dict[str, list[Value]], raise_by: float
) -> None:
    if gate.max is not None and run(gate, values).verdict == Verdict.PASSED:
        assert run(replace(gate, max=gate.max + raise_by), values).verdict == Verdict.PASSED


@given(gate=gates, values=subject_values, extra=st.integers(0, 5))
def test_raising_failure_limit_never_turns_passed_into_failed(
    gate: PrometheusGate, values: dict[str, list[Value]], extra: int
) -> None:
    if run(gate, values).verdict == Verdict.PASSED:
        assert run(replace(gate, failure_limit=gate.failure_limit + extra), values).verdict == Verdict.PASSED


@given(count=st.integers(1, 6), data=st.data())
def test_failure_limit_tolerates_exactly_that_many_breaches(count: int, data: st.DataObject) -> None:
    breaches = data.draw(st.integers(0, count))
    limit = data.draw(st.integers(0, count))
    values: list[Value] = [1.0] * breaches + [0.0] * (count - breaches)
    result = run(PrometheusGate("q", max=0.5, count=count, failure_limit=limit), {"p/a": values})
    assert result.verdict == (Verdict.PASSED if breaches <= limit else Verdict.FAILED)
    assert result.subjects[0].failures == breaches


@given(gate=gates, values=subject_values, seed=st.integers())
def test_the_result_is_deterministic_whatever_the_order(
    gate: PrometheusGate, values: dict[str, list[Value]], seed: int
) -> None:
    obs = observations(values)
    shuffled = obs[:]
    random.Random(seed).shuffle(shuffled)
    # NaN != NaN, so compare the (NaN-free) rendering of the results
    assert repr(evaluate(gate, shuffled)) == repr(evaluate(gate, obs))


@given(gate=gates, values=subject_values)
def test_the_gate_is_as_severe_as_its_worst_subject(gate: PrometheusGate, values: dict[str, list[Value]]) -> None:
    result = run(gate, values)
    verdicts = {s.verdict for s in result.subjects}
    if Verdict.FAILED in verdicts:
        assert result.verdict == Verdict.FAILED
    elif Verdict.INCONCLUSIVE in verdicts:
        assert result.verdict == Verdict.INCONCLUSIVE
    else:
        assert result.verdict == Verdict.PASSED


# --- links ---------------------------------------------------------------------------------------

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=15)
QUERY = 'max(pg_errors_ratio{env="eph-1"}) > 0.05 & x'


def test_prometheus_graph_link_round_trips_the_query_and_range() -> None:
    url = prometheus_graph_url("http://prom:9090/", QUERY, START, END)
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("prom:9090", "/graph")
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert params["g0.expr"] == QUERY
    assert params["g0.range_input"] == "900s"
    assert params["g0.end_input"] == "2025-03-01 12:15:00"


def test_grafana_explore_link_carries_query_datasource_and_range_in_ms() -> None:
    url = grafana_explore_url("https://grafana.example", QUERY, START, END, datasource_uid="prom-uid")
    parts = urlsplit(url)
    assert parts.path == "/explore"
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert params["schemaVersion"] == "1" and params["orgId"] == "1"
    (pane,) = json.loads(params["panes"]).values()
    assert pane["queries"][0]["expr"] == QUERY
    assert pane["queries"][0]["datasource"] == {"type": "prometheus", "uid": "prom-uid"}
    assert pane["range"] == {"from": str(int(START.timestamp() * 1000)), "to": str(int(END.timestamp() * 1000))}


def _params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


@given(query=st.text())
def test_any_query_survives_the_links_url_encoding(query: str) -> None:
    assert _params(prometheus_graph_url("http://p", query, START, END))["g0.expr"] == query
    panes = json.loads(_params(grafana_explore_url("http://g", query, START, END))["panes"])
    assert panes["estate"]["queries"][0]["expr"] == query


def test_links_refuse_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        prometheus_graph_url("http://p", "up", START.replace(tzinfo=None), END)


# --- landed checks and windows -----------------------------------------------------------------------


def test_window_and_rollout_placeholders() -> None:
    query = render(
        'max_over_time(x{env="{{ env.id }}", v="{{ rollout.version }}"}[{{ window }}])',
        version="2.0.1",
        window_seconds=42,
    )
    assert query == 'max_over_time(x{env="eph-1", v="2.0.1"}[42s])'
    assert render("x[{{ window }}]", window_seconds=0) == "x[1s]", "a range is never empty"
    with pytest.raises(TemplateError, match="is a duration"):
        check_template('x{w="{{ window }}"}')
    with pytest.raises(TemplateError, match="has no value"):
        render("x[{{ window }}]")
    with pytest.raises(TemplateError, match="outside a string"):
        check_template("x{v={{ rollout.version }}}")


def test_a_round_plans_each_environments_landed_query_with_its_own_window_and_never_the_baselines() -> None:
    gate = PrometheusGate(
        'max_over_time(x{env="{{ env.id }}"}[{{ window }}])', max=1, landed='up{v="{{ rollout.version }}"}'
    )
    round_ = SamplingRound(gate, "ephemeral", 0, [EU, US], version="2.0.1", windows={EU.ref: 30, US.ref: 5})
    planned = plan_queries(round_)
    assert [(p.query, p.landed) for p in planned] == [
        ('max_over_time(x{env="eph-1"}[30s])', 'up{v="2.0.1"}'),
        ('max_over_time(x{env="eph-1"}[5s])', 'up{v="2.0.1"}'),
    ]
    compare = CompareGate('x{env="{{ env.id }}"}[{{ window }}]', landed='up{v="{{ rollout.version }}"}')
    with_baseline = plan_queries(replace(round_, gate=compare, baseline=[OTHER]))
    assert [(p.subject, p.baseline, p.landed is None) for p in with_baseline] == [
        ("checkout/eph-1", False, False),
        ("payments/eph-1", False, False),
        ("search/eph-2", True, True),
    ]
    assert with_baseline[2].query == 'x{env="eph-2"}[5s]', "the baseline shares the wave's window"


def test_samples_before_landing_do_not_count_and_more_rounds_are_taken_for_them() -> None:
    gate = PrometheusGate("q", max=0.05, count=2, interval_seconds=10, landed="v", landed_timeout_seconds=30)
    early = [Sample("a/x", 0, "q", (0.001,), landed=False), Sample("a/x", 1, "q", (0.001,), landed=True)]
    assert more_rounds(gate, 2, early, ["a/x"]), "one counted sample of two"
    assert not more_rounds(gate, 5, early, ["a/x"]), "landed_timeout spent: count + 30s / 10s rounds"
    judged = evaluate(gate, early, ["a/x"])
    assert judged.verdict is Verdict.INCONCLUSIVE and "only 1 of 2 samples counted" in judged.reason
    assert judged.subjects[0].samples[0].status is SampleStatus.NOT_LANDED
    full = evaluate(gate, [*early, Sample("a/x", 2, "q", (0.001,), landed=True)], ["a/x"])
    assert full.verdict is Verdict.PASSED and "0.001 (not landed)" in full.reason
    assert not more_rounds(replace(gate, landed=None), 2, early, ["a/x"])
