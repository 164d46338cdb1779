"""Metric gates, the pure part: render a PromQL template, plan a sampling round, then judge observations.

No I/O and no clock: the adapter in `estate.gates.prometheus` sends the planned queries and hands
back `Sample`s; `evaluate` turns them into a deterministic `Judgement` (no timestamps inside). The
compare gate's judgement is `estate.domain.cohort`.

A gate never passes on missing evidence: an unreachable Prometheus, a query error or a NaN make a
sample *inconclusive*; only a definite breach beyond `failure_limit` makes it *failed*. A gate with a
`landed` query counts an environment's sample only when that query returned data in the same round
(the new version reports): health the old version produced never passes a wave.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from estate.domain.ids import EnvRef
from estate.domain.model import Environment
from estate.domain.plans import GateScope, MetricGate, NoData, PrometheusGate
from estate.errors import InputError

# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_ENV_NAMES = ("env.id", "env.project", "env.type")
_WAVE_NAMES = ("wave.name", "wave.envs_regex")
_ROLLOUT_NAMES = ("rollout.module", "rollout.version")
_WINDOW = "window"  # a PromQL duration: since the environment's deployment finished (range selectors)
_LABEL_PREFIX = "env.labels."
KNOWN_PLACEHOLDERS = (*_ENV_NAMES, f"{_LABEL_PREFIX}<key>", *_WAVE_NAMES, *_ROLLOUT_NAMES, _WINDOW)
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
    return name in (*_ENV_NAMES, *_WAVE_NAMES, *_ROLLOUT_NAMES, _WINDOW) or (
        name.startswith(_LABEL_PREFIX) and len(name) > len(_LABEL_PREFIX)
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
        if s.name == _WINDOW:
            if s.quote is not None:
                raise TemplateError("{{ window }} is a duration: put it in a range selector, e.g. [{{ window }}]")
            continue
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


@dataclass(frozen=True)
class QueryContext:
    """What placeholders other than `env.*` are filled in with."""

    wave_name: str
    wave_envs: Sequence[Environment]
    module: str = ""
    version: str = ""
    window_seconds: int | None = None  # since the window started (None: `{{ window }}` has no value)


def _value(name: str, env: Environment | None, ctx: QueryContext) -> str:
    if name == "wave.name":
        return ctx.wave_name
    if name == "wave.envs_regex":
        return envs_regex(ctx.wave_envs)
    if name in _ROLLOUT_NAMES:
        value = ctx.module if name == "rollout.module" else ctx.version
        if not value:
            raise TemplateError(f"{{{{ {name} }}}} has no value here")
        return value
    if name == _WINDOW:
        if ctx.window_seconds is None:
            raise TemplateError("{{ window }} has no value here")
        return f"{max(ctx.window_seconds, 1)}s"
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
    module: str = "",
    version: str = "",
    window_seconds: int | None = None,
) -> str:
    """Fill in a query template for one environment (scope env) or a whole wave (scope wave)."""
    check_template(template, scope)
    ctx = QueryContext(wave_name, wave_envs, module, version, window_seconds)
    out: list[str] = []
    for piece in _parse(template):
        if isinstance(piece, str):
            out.append(piece)
        elif piece.name == _WINDOW:
            out.append(_value(piece.name, env, ctx))  # a duration Estate makes: digits and "s", nothing to escape
        else:
            assert piece.quote is not None  # check_template refused placeholders outside strings
            out.append(_quote_escape(_value(piece.name, env, ctx), piece.quote))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# What to ask Prometheus
# ---------------------------------------------------------------------------------------------


def wave_subject(wave_name: str) -> str:
    """The subject name of a scope-wave gate's single query."""
    return f"wave/{wave_name}"


@dataclass(frozen=True)
class PlannedQuery:
    """One subject's queries in a sampling round; `error` when a template cannot be filled in. With `landed`,
    that query runs first and the sample counts only if it returns data."""

    subject: str  # "project/env", or "wave/<name>" for scope wave
    query: str
    error: str | None = None
    landed: str | None = None
    baseline: bool = False  # a compare gate's baseline environment (on the previous version)


@dataclass(frozen=True)
class SamplingRound:
    """What one sampling round of a metric gate covers: the wave's environments (a compare gate's new cohort),
    a compare gate's baseline, the rollout's module and target version, and each environment's window (seconds
    since its deployment finished, as of the round's planned time; the baseline shares the wave's)."""

    gate: MetricGate
    wave_name: str
    round: int
    envs: Sequence[Environment]
    baseline: Sequence[Environment] = ()
    module: str = ""
    version: str = ""
    windows: Mapping[EnvRef, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def wave_window(self) -> int | None:
        """Seconds since the wave's last deployment finished."""
        return min((self.windows[e.ref] for e in self.envs if e.ref in self.windows), default=None)


def subjects(gate: MetricGate, wave_name: str, envs: Sequence[str]) -> tuple[str, ...]:
    """Who every sampling round must report on: each environment (`project/env`), or the wave."""
    if isinstance(gate, PrometheusGate) and gate.scope == GateScope.WAVE:
        return (wave_subject(wave_name),)
    return tuple(envs)


def plan_queries(round: SamplingRound) -> tuple[PlannedQuery, ...]:
    """The queries of one sampling round: one per environment (and per baseline environment), or one for the
    wave; each with its `landed` query when the gate has one (never for the baseline: it is on the old version)."""
    gate = round.gate
    scope = gate.scope if isinstance(gate, PrometheusGate) else GateScope.ENV
    targets: list[tuple[str, Environment | None, bool]] = []
    if scope == GateScope.WAVE:
        targets.append((wave_subject(round.wave_name), None, False))
    else:
        targets += [(str(e.ref), e, False) for e in round.envs]
        targets += [(str(e.ref), e, True) for e in round.baseline]
    planned = []
    for subject, env, baseline in targets:
        window = round.windows.get(env.ref) if env is not None and not baseline else round.wave_window

        def fill(template: str, env: Environment | None = env, window: int | None = window) -> str:
            return render_query(
                template,
                wave_name=round.wave_name,
                wave_envs=round.envs,
                env=env,
                scope=scope,
                module=round.module,
                version=round.version,
                window_seconds=window,
            )

        try:
            query = fill(gate.query)
            landed = None if gate.landed is None or baseline else fill(gate.landed)
        except TemplateError as exc:
            planned.append(PlannedQuery(subject, "", f"query template: {exc}", baseline=baseline))
        else:
            planned.append(PlannedQuery(subject, query, landed=landed, baseline=baseline))
    return tuple(planned)


# ---------------------------------------------------------------------------------------------
# Observations and verdicts
# ---------------------------------------------------------------------------------------------


class Verdict(StrEnum):
    """The outcome of a gate (and of each environment under it)."""

    PASSED = "passed"  # every sample was observed; failures within failure_limit (compare: not worse)
    FAILED = "failed"  # more samples breached the condition than failure_limit allows (compare: worse)
    INCONCLUSIVE = "inconclusive"  # evidence is missing: Prometheus down, query error, NaN, no data, too few


class SampleStatus(StrEnum):
    """How one sample of one subject turned out."""

    OK = "ok"
    BREACH = "breach"
    NO_DATA = "no_data"
    ERROR = "error"
    NOT_LANDED = "not_landed"  # the new version had not reported yet: the sample does not count


@dataclass(frozen=True)
class Sample:
    """What one sampling round saw for one subject: a value per returned series, or an error."""

    subject: str
    round: int  # 0-based
    query: str  # the query as sent
    values: tuple[float, ...] = ()  # empty: the query returned no data
    error: str | None = None  # Prometheus unreachable, bad query, template error
    landed: bool | None = None  # the gate's landed query returned data (None: the gate has none)
    baseline: bool = False  # a compare gate's baseline environment

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
    baseline: bool = False  # a compare gate's baseline environment


@dataclass(frozen=True)
class CohortSummary:
    """One cohort of a compare gate: how many environments and samples counted, and their middle."""

    envs: int
    samples: int
    median: float | None = None
    mean: float | None = None


@dataclass(frozen=True)
class Comparison:
    """A compare gate's statistics: both cohorts, the one-sided Mann-Whitney U test of "the new cohort is worse
    than the baseline by more than the tolerance", and the effect size (rank-biserial correlation: +1 when every
    new sample is worse than every baseline sample, 0 when neither cohort tends to be worse, -1 when better)."""

    new: CohortSummary
    baseline: CohortSummary
    better: str  # lower | higher
    tolerance: float  # in the metric's unit
    confidence: float
    statistic: float | None = None  # U of the new cohort against the baseline moved by the tolerance
    p_value: float | None = None
    effect_size: float | None = None
    median_change: float | None = None  # new median - baseline median
    relative_change: float | None = None  # median_change / |baseline median|


@dataclass(frozen=True)
class Judgement:
    """The verdict of a metric gate: the most severe of its subjects' verdicts (a compare gate: its test's)."""

    verdict: Verdict
    reason: str
    subjects: tuple[SubjectJudgement, ...]
    comparison: Comparison | None = None


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


NOT_LANDED_DETAIL = "not counted: the landed query returned no data (the new version had not reported yet)"


def judge_sample(gate: MetricGate, obs: Sample) -> JudgedSample:
    """Classify one observation; NaN counts as an error because it proves nothing, and a sample taken before
    the new version reported (its landed query returned no data) does not count, whatever it shows."""
    if obs.error is not None:
        return JudgedSample(obs.round, SampleStatus.ERROR, detail=obs.error)
    if obs.landed is False:
        return JudgedSample(obs.round, SampleStatus.NOT_LANDED, obs.values, NOT_LANDED_DETAIL)
    if any(math.isnan(v) for v in obs.values):
        return JudgedSample(obs.round, SampleStatus.ERROR, detail="the query returned NaN")
    if not obs.values:
        return JudgedSample(obs.round, SampleStatus.NO_DATA, detail="the query returned no data")
    breach = isinstance(gate, PrometheusGate) and any(_breaches(gate, v) for v in obs.values)
    return JudgedSample(obs.round, SampleStatus.BREACH if breach else SampleStatus.OK, obs.values)


def shown(s: JudgedSample) -> str:
    """A sample as the evidence shows it: its value(s), `no data`, `error`; `(not landed)` when it did not count."""
    if s.status == SampleStatus.NO_DATA:
        return "no data"
    if s.status == SampleStatus.ERROR:
        return "error"
    text = _num(s.values[0]) if len(s.values) == 1 else "[" + ", ".join(_num(v) for v in s.values) + "]"
    return f"{text} (not landed)" if s.status == SampleStatus.NOT_LANDED else text


def _counts_as(gate: PrometheusGate, s: JudgedSample) -> SampleStatus:
    """What a sample weighs in the verdict: no data counts as the gate's no_data policy says."""
    if s.status != SampleStatus.NO_DATA:
        return s.status
    return {NoData.FAIL: SampleStatus.BREACH, NoData.PASS: SampleStatus.OK}.get(gate.no_data, SampleStatus.ERROR)


def counted(samples: Sequence[JudgedSample]) -> list[JudgedSample]:
    """The samples that count: all but those taken before the new version reported."""
    return [s for s in samples if s.status != SampleStatus.NOT_LANDED]


def _subject_verdict(gate: PrometheusGate, judged: Sequence[JudgedSample]) -> tuple[Verdict, str, int]:
    samples = counted(judged)
    failing = [s for s in samples if _counts_as(gate, s) == SampleStatus.BREACH]
    unknown = [s for s in samples if _counts_as(gate, s) == SampleStatus.ERROR]
    observed = "observed " + ", ".join(shown(s) for s in judged)
    cond = condition_text(gate)
    if len(failing) > gate.failure_limit:
        why = f"{len(failing)} of {len(samples)} samples failed {cond} (failure_limit {gate.failure_limit}); {observed}"
        return Verdict.FAILED, why, len(failing)
    if unknown:
        first = unknown[0]
        return Verdict.INCONCLUSIVE, f"sample {first.round + 1}: {first.detail}", len(failing)
    if len(samples) < gate.count:
        if len(samples) < len(judged):
            why = (
                f"only {len(samples)} of {gate.count} samples counted: the landed query returned no data in "
                f"{len(judged) - len(samples)} round(s) (the new version did not report in time); {observed}"
            )
            return Verdict.INCONCLUSIVE, why, len(failing)
        return Verdict.INCONCLUSIVE, f"only {len(samples)} of {gate.count} samples taken", len(failing)
    if gate.max is None and gate.min is None:
        return Verdict.INCONCLUSIVE, "the gate has no condition (max or min)", 0
    tolerated = f" ({len(failing)} failed, failure_limit {gate.failure_limit})" if failing else ""
    return Verdict.PASSED, f"{len(samples)} samples within {cond}{tolerated}; {observed}", len(failing)


def judged_samples(gate: MetricGate, observations: Sequence[Sample]) -> tuple[tuple[JudgedSample, ...], str]:
    """One subject's observations judged, in round order (a round repeated after a crash: the last one counts),
    and the query last sent."""
    latest = {o.round: o for o in observations}
    ordered = [latest[i] for i in sorted(latest)]
    return tuple(judge_sample(gate, o) for o in ordered), (ordered[-1].query if ordered else "")


def _judge_subject(gate: PrometheusGate, subject: str, observations: Sequence[Sample]) -> SubjectJudgement:
    samples, query = judged_samples(gate, observations)
    verdict, reason, failures = _subject_verdict(gate, samples)
    return SubjectJudgement(subject, query, verdict, reason, samples, failures)


def group(observations: Iterable[Sample], expected: Sequence[str] = ()) -> dict[str, list[Sample]]:
    """Observations by subject; every expected subject is there, observed or not."""
    grouped: dict[str, list[Sample]] = {s: [] for s in expected}
    for obs in observations:
        grouped.setdefault(obs.subject, []).append(obs)
    return grouped


def more_rounds(gate: MetricGate, rounds: int, observations: Iterable[Sample], expected: Sequence[str]) -> bool:
    """Whether another sampling round is due: until `count` rounds are in, and with a `landed` query until every
    expected subject has `count` samples that count, or `landed_timeout` has passed (its rounds are spent)."""
    if rounds < gate.count:
        return True
    if gate.landed is None:
        return False
    limit = gate.count + math.ceil(gate.landed_timeout_seconds / max(gate.interval_seconds, 1))
    if rounds >= limit:
        return False
    grouped = group((o for o in observations if not o.baseline), expected)
    return any(len(counted(judged_samples(gate, grouped[s])[0])) < gate.count for s in expected)


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
    grouped = group(observations, expected)
    subjects = tuple(_judge_subject(gate, s, grouped[s]) for s in sorted(grouped))
    verdicts = {s.verdict for s in subjects}
    if Verdict.FAILED in verdicts:
        verdict = Verdict.FAILED
    elif Verdict.INCONCLUSIVE in verdicts or not subjects:
        verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.PASSED
    return Judgement(verdict, _summary(verdict, subjects), subjects)
