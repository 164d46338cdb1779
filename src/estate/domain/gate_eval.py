"""Prometheus gates, the pure part: render a PromQL template, then judge observations.

No I/O and no clock: the adapter in `estate.gates.prometheus` sends the rendered queries and hands
back `Sample`s; `evaluate` turns them into a deterministic `Judgement` (no timestamps inside).

A gate never passes on missing evidence: an unreachable Prometheus, a query error or a NaN make a
sample *inconclusive*; only a definite breach beyond `failure_limit` makes it *failed*.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from estate.domain.model import Environment
from estate.domain.plans import GateScope, NoData, PrometheusGate
from estate.errors import InputError

# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_ENV_NAMES = ("env.id", "env.project", "env.type")
_WAVE_NAMES = ("wave.name", "wave.envs_regex")
_LABEL_PREFIX = "env.labels."
KNOWN_PLACEHOLDERS = (*_ENV_NAMES, f"{_LABEL_PREFIX}<key>", *_WAVE_NAMES)
_RE2_META = frozenset("\\.+*?()|[]{}^$")
_QUOTES = "\"'`"


class TemplateError(InputError):
    """A query template is malformed, names unknown placeholders, or cannot be filled in safely."""


@dataclass(frozen=True)
class _Slot:
    """A placeholder in a template and the PromQL string literal it sits in (`"`, `'` or `` ` ``)."""

    name: str
    quote: str | None  # None: outside any string literal; "#": inside a comment


def _scan(text: str, state: str | None) -> tuple[str | None, bool]:
    """Advance the lexer state over literal PromQL; also tell whether it ends on a dangling backslash."""
    i = 0
    while i < len(text):
        c = text[i]
        if state is None:
            state = c if c in _QUOTES or c == "#" else None
        elif state == "#":
            state = None if c == "\n" else state
        elif state == "`":
            state = None if c == "`" else state
        elif c == "\\":
            if i + 1 == len(text):
                return state, True
            i += 1  # the escaped character cannot close the string
        elif c == state:
            state = None
        i += 1
    return state, False


def _parse(template: str) -> list[str | _Slot]:
    """Split a template into literal text and placeholders, noting each placeholder's quoting."""
    pieces: list[str | _Slot] = []
    state: str | None = None
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        literal = template[pos : m.start()]
        state, dangling = _scan(literal, state)
        if dangling:
            raise TemplateError(f"placeholder {m.group(0)} follows a backslash; remove the backslash")
        pieces += [literal, _Slot(m.group(1).strip(), state)]
        pos = m.end()
    rest = template[pos:]
    if "{{" in rest:
        raise TemplateError("'{{' without a closing '}}' in the query template")
    return [*pieces, rest]


def _slots(template: str) -> list[_Slot]:
    return [p for p in _parse(template) if isinstance(p, _Slot)]


def _is_known(name: str) -> bool:
    return (
        name in _ENV_NAMES or name in _WAVE_NAMES or (name.startswith(_LABEL_PREFIX) and len(name) > len(_LABEL_PREFIX))
    )


def check_template(template: str, scope: GateScope = GateScope.ENV) -> None:
    """Raise TemplateError unless every placeholder is known, fits `scope` and sits inside a string."""
    slots = _slots(template)
    unknown = sorted({s.name for s in slots if not _is_known(s.name)})
    if unknown:
        names = ", ".join(f"{{{{ {n} }}}}" for n in unknown)
        raise TemplateError(f"unknown placeholder(s) {names}; known: {', '.join(KNOWN_PLACEHOLDERS)}")
    if scope == GateScope.WAVE:
        per_env = sorted({s.name for s in slots if s.name.startswith("env.")})
        if per_env:
            raise TemplateError(
                f"a gate with scope 'wave' runs one query for the whole wave, so {{{{ {per_env[0]} }}}} "
                "has no value; use {{ wave.envs_regex }} or scope 'env'"
            )
    for s in slots:
        if s.quote is None or s.quote == "#":
            where = "outside a string literal" if s.quote is None else "inside a comment"
            example = f'env="{{{{ {s.name} }}}}"'
            raise TemplateError(f"{{{{ {s.name} }}}} is {where}; put placeholders inside a PromQL string: {example}")


def _re2_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in _RE2_META else c for c in text)


def envs_regex(envs: Sequence[Environment]) -> str:
    """An RE2 alternation matching exactly the given env IDs (before string-literal escaping)."""
    if not envs:
        raise TemplateError("{{ wave.envs_regex }} needs at least one environment in the wave")
    return "|".join(_re2_escape(i) for i in sorted({e.id for e in envs}))


def _quote_escape(value: str, quote: str) -> str:
    """Escape `value` for the body of a PromQL string opened with `quote`, so it cannot break out."""
    if quote == "`":
        if "`" in value:
            raise TemplateError(f"value {value!r} contains a backtick and cannot go into a `raw` string")
        return value
    out = []
    for c in value:
        if c in ("\\", quote):
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return "".join(out)


def _value(name: str, env: Environment | None, wave_name: str, wave_envs: Sequence[Environment]) -> str:
    if name == "wave.name":
        return wave_name
    if name == "wave.envs_regex":
        return envs_regex(wave_envs)
    if env is None:
        raise TemplateError(f"{{{{ {name} }}}} needs an environment (gate scope 'env')")
    if name.startswith(_LABEL_PREFIX):
        key = name[len(_LABEL_PREFIX) :]
        if key not in env.labels:
            raise TemplateError(f"environment {env.ref} has no label '{key}' for {{{{ {name} }}}}")
        return env.labels[key]
    return {"env.id": env.id, "env.project": env.project, "env.type": env.type}[name]


def render_query(
    template: str,
    *,
    wave_name: str,
    wave_envs: Sequence[Environment],
    env: Environment | None = None,
    scope: GateScope = GateScope.ENV,
) -> str:
    """Fill in a query template for one environment (scope env) or a whole wave (scope wave)."""
    check_template(template, scope)
    out: list[str] = []
    for piece in _parse(template):
        if isinstance(piece, str):
            out.append(piece)
        else:
            assert piece.quote is not None  # check_template refused placeholders outside strings
            out.append(_quote_escape(_value(piece.name, env, wave_name, wave_envs), piece.quote))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# What to ask Prometheus
# ---------------------------------------------------------------------------------------------


def wave_subject(wave_name: str) -> str:
    """The subject name of a scope-wave gate's single query."""
    return f"wave/{wave_name}"


@dataclass(frozen=True)
class PlannedQuery:
    """One query to send in every sampling round; `error` when the template cannot be filled in."""

    subject: str  # "project/env", or "wave/<name>" for scope wave
    query: str
    error: str | None = None


def subjects(gate: PrometheusGate, wave_name: str, envs: Sequence[str]) -> tuple[str, ...]:
    """Who every sampling round must report on: each environment (`project/env`), or the wave."""
    return (wave_subject(wave_name),) if gate.scope == GateScope.WAVE else tuple(envs)


def plan_queries(gate: PrometheusGate, wave_name: str, envs: Sequence[Environment]) -> tuple[PlannedQuery, ...]:
    """The queries of one sampling round: one per environment, or one for the wave."""
    if gate.scope == GateScope.WAVE:
        targets: list[tuple[str, Environment | None]] = [(wave_subject(wave_name), None)]
    else:
        targets = [(str(e.ref), e) for e in envs]
    planned = []
    for subject, env in targets:
        try:
            query = render_query(gate.query, wave_name=wave_name, wave_envs=envs, env=env, scope=gate.scope)
        except TemplateError as exc:
            planned.append(PlannedQuery(subject, "", f"query template: {exc}"))
        else:
            planned.append(PlannedQuery(subject, query))
    return tuple(planned)


# ---------------------------------------------------------------------------------------------
# Observations and verdicts
# ---------------------------------------------------------------------------------------------


class Verdict(StrEnum):
    """The outcome of a gate (and of each environment under it)."""

    PASSED = "passed"  # every sample was observed; failures within failure_limit
    FAILED = "failed"  # more samples breached the condition than failure_limit allows
    INCONCLUSIVE = "inconclusive"  # evidence is missing: Prometheus down, query error, NaN, no data


class SampleStatus(StrEnum):
    """How one sample of one subject turned out."""

    OK = "ok"
    BREACH = "breach"
    NO_DATA = "no_data"
    ERROR = "error"


@dataclass(frozen=True)
class Sample:
    """What one sampling round saw for one subject: a value per returned series, or an error."""

    subject: str
    round: int  # 0-based
    query: str  # the query as sent
    values: tuple[float, ...] = ()  # empty: the query returned no data
    error: str | None = None  # Prometheus unreachable, bad query, template error

    @classmethod
    def of(cls, subject: str, round: int, query: str, value: float | str | None) -> Sample:
        """Shorthand: a float (NaN allowed), None for no data, or an error message."""
        if isinstance(value, str):
            return cls(subject, round, query, error=value)
        return cls(subject, round, query, () if value is None else (float(value),))


@dataclass(frozen=True)
class JudgedSample:
    """One sample judged; `values` holds what was observed (empty for no data, errors and NaN)."""

    round: int
    status: SampleStatus
    values: tuple[float, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class SubjectJudgement:
    """The verdict for one environment (or the wave, for scope wave) with every sample's value."""

    subject: str
    query: str
    verdict: Verdict
    reason: str
    samples: tuple[JudgedSample, ...]
    failures: int


@dataclass(frozen=True)
class Judgement:
    """The verdict of a Prometheus gate: the most severe of its subjects' verdicts."""

    verdict: Verdict
    reason: str
    subjects: tuple[SubjectJudgement, ...]


def _num(v: float) -> str:
    return f"{v:.6g}"


def condition_text(gate: PrometheusGate) -> str:
    """`max 0.05`, `min 0.9`, or `min 0.9 and max 1.1`."""
    parts = [
        f"min {_num(gate.min)}" if gate.min is not None else "",
        f"max {_num(gate.max)}" if gate.max is not None else "",
    ]
    return " and ".join(p for p in parts if p) or "no condition"


def _breaches(gate: PrometheusGate, v: float) -> bool:
    return (gate.max is not None and v > gate.max) or (gate.min is not None and v < gate.min)


def judge_sample(gate: PrometheusGate, obs: Sample) -> JudgedSample:
    """Classify one observation; NaN counts as an error because it proves nothing."""
    if obs.error is not None:
        return JudgedSample(obs.round, SampleStatus.ERROR, detail=obs.error)
    if any(math.isnan(v) for v in obs.values):
        return JudgedSample(obs.round, SampleStatus.ERROR, detail="the query returned NaN")
    if not obs.values:
        return JudgedSample(obs.round, SampleStatus.NO_DATA, detail="the query returned no data")
    status = SampleStatus.BREACH if any(_breaches(gate, v) for v in obs.values) else SampleStatus.OK
    return JudgedSample(obs.round, status, obs.values)


def _shown(s: JudgedSample) -> str:
    if s.status == SampleStatus.NO_DATA:
        return "no data"
    if s.status == SampleStatus.ERROR:
        return "error"
    if len(s.values) == 1:
        return _num(s.values[0])
    return "[" + ", ".join(_num(v) for v in s.values) + "]"


def _counts_as(gate: PrometheusGate, s: JudgedSample) -> SampleStatus:
    """What a sample weighs in the verdict: no data counts as the gate's no_data policy says."""
    if s.status != SampleStatus.NO_DATA:
        return s.status
    return {NoData.FAIL: SampleStatus.BREACH, NoData.PASS: SampleStatus.OK}.get(gate.no_data, SampleStatus.ERROR)


def _subject_verdict(gate: PrometheusGate, samples: Sequence[JudgedSample]) -> tuple[Verdict, str, int]:
    failing = [s for s in samples if _counts_as(gate, s) == SampleStatus.BREACH]
    unknown = [s for s in samples if _counts_as(gate, s) == SampleStatus.ERROR]
    observed = "observed " + ", ".join(_shown(s) for s in samples)
    cond = condition_text(gate)
    if len(failing) > gate.failure_limit:
        why = f"{len(failing)} of {len(samples)} samples failed {cond} (failure_limit {gate.failure_limit}); {observed}"
        return Verdict.FAILED, why, len(failing)
    if unknown:
        first = unknown[0]
        return Verdict.INCONCLUSIVE, f"sample {first.round + 1}: {first.detail}", len(failing)
    if len(samples) < gate.count:
        return Verdict.INCONCLUSIVE, f"only {len(samples)} of {gate.count} samples taken", len(failing)
    if gate.max is None and gate.min is None:
        return Verdict.INCONCLUSIVE, "the gate has no condition (max or min)", 0
    tolerated = f" ({len(failing)} failed, failure_limit {gate.failure_limit})" if failing else ""
    return Verdict.PASSED, f"{len(samples)} samples within {cond}{tolerated}; {observed}", len(failing)


def _judge_subject(gate: PrometheusGate, subject: str, observations: Sequence[Sample]) -> SubjectJudgement:
    latest = {o.round: o for o in observations}  # a round repeated after a crash: the last one counts
    ordered = [latest[i] for i in sorted(latest)]
    samples = tuple(judge_sample(gate, o) for o in ordered)
    verdict, reason, failures = _subject_verdict(gate, samples)
    query = ordered[-1].query if ordered else ""
    return SubjectJudgement(subject, query, verdict, reason, samples, failures)


def _summary(verdict: Verdict, subjects: Sequence[SubjectJudgement]) -> str:
    if not subjects:
        return "nothing was observed"
    if verdict == Verdict.PASSED:
        if len(subjects) == 1:
            return f"{subjects[0].subject}: {subjects[0].reason}"
        return f"all {len(subjects)} passed"
    hit = [s for s in subjects if s.verdict == verdict]
    shown = "; ".join(f"{s.subject}: {s.reason}" for s in hit[:3])
    more = f"; and {len(hit) - 3} more" if len(hit) > 3 else ""
    return f"{len(hit)} of {len(subjects)} {verdict}: {shown}{more}"


def evaluate(gate: PrometheusGate, observations: Iterable[Sample], expected: Sequence[str] = ()) -> Judgement:
    """Judge every round's observations; FAILED if any subject failed, else INCONCLUSIVE if any was."""
    grouped: dict[str, list[Sample]] = {s: [] for s in expected}
    for obs in observations:
        grouped.setdefault(obs.subject, []).append(obs)
    subjects = tuple(_judge_subject(gate, s, grouped[s]) for s in sorted(grouped))
    verdicts = {s.verdict for s in subjects}
    if Verdict.FAILED in verdicts:
        verdict = Verdict.FAILED
    elif Verdict.INCONCLUSIVE in verdicts or not subjects:
        verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.PASSED
    return Judgement(verdict, _summary(verdict, subjects), subjects)
