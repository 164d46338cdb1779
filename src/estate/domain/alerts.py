"""Alerts from Alertmanager, the pure part: which environment an alert is about, whether a plan's alert selector
takes it, and what is kept of it as a wave's evidence.

An alert names its environment through labels: `project` and `env` by default, or one `estate_env="project/env"`
label (the names are configurable, `AlertRouting`). A plan's selector is a list of Prometheus label matchers
(`severity=~"critical|page"`), all of which must hold; regular expressions are anchored, as in Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from estate.domain.ids import EnvRef, InvalidId
from estate.errors import InputError

_EMPTY: Mapping[str, str] = MappingProxyType({})


class MatchOp(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class LabelMatcher:
    """`name op "value"`, as in PromQL and Alertmanager routes; a missing label matches as the empty string."""

    name: str
    op: MatchOp
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        found = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return found == self.value
        if self.op is MatchOp.NE:
            return found != self.value
        hit = re.fullmatch(self.value, found) is not None
        return hit if self.op is MatchOp.RE else not hit

    def __str__(self) -> str:
        value = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{value}"'


_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_matchers(text: str) -> tuple[LabelMatcher, ...]:
    """`severity=~"critical|page", team="db"` (braces optional) -> matchers; InputError saying where it breaks."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    found = []
    pos = 0
    while pos < len(body) and body[pos:].strip():
        m = _MATCHER.match(body, pos)
        if m is None:
            raise InputError(
                f"alert selector {text!r}: cannot read a matcher at character {pos + 1} "
                '(expected name="value", name!="value", name=~"regex" or name!~"regex", separated by commas)'
            )
        value = re.sub(r"\\(.)", r"\1", m.group(3))
        op = MatchOp(m.group(2))
        if op in (MatchOp.RE, MatchOp.NRE):
            try:
                re.compile(value)
            except re.error as exc:
                raise InputError(f"alert selector {text!r}: bad regular expression {value!r}: {exc}") from exc
        found.append(LabelMatcher(m.group(1), op, value))
        pos = m.end()
    if not found:
        raise InputError(f"alert selector {text!r} has no matcher")
    return tuple(found)


def selected(selector: Sequence[LabelMatcher], labels: Mapping[str, str]) -> bool:
    """Every matcher holds (an empty selector takes every alert)."""
    return all(m.matches(labels) for m in selector)


@dataclass(frozen=True)
class AlertRouting:
    """Which labels of an alert name the environment it is about."""

    project_label: str = "project"
    env_label: str = "env"
    ref_label: str = "estate_env"  # one label holding "project/env"; wins over the two above

    def env_of(self, labels: Mapping[str, str]) -> EnvRef | None:
        """The environment the labels name, or None when they name none (or a malformed one)."""
        try:
            if labels.get(self.ref_label):
                return EnvRef.parse(labels[self.ref_label])
            project, env = labels.get(self.project_label), labels.get(self.env_label)
            return EnvRef.parse(f"{project}/{env}") if project and env else None
        except InvalidId:
            return None


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    """One alert of an Alertmanager notification (webhook payload version 4)."""

    name: str  # the `alertname` label
    status: AlertStatus
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    starts_at: datetime | None = None
    generator_url: str = ""
    fingerprint: str = ""

    @property
    def key(self) -> str:
        """One firing of one alert: a notification repeated for it has the same key, a new firing does not."""
        identity = self.fingerprint or ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{identity}@{self.starts_at.isoformat() if self.starts_at else ''}"

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k != "alertname")
        return f"{self.name} {{{shown}}}"


class AlertEffect(StrEnum):
    """What an alert did to the rollout it reached."""

    FAILED_WAVE = "failed_wave"  # counted as a gate failure of the current wave (on_failure applied)
    PAUSED = "paused"  # an already promoted wave: the rollout was paused
    RECORDED = "recorded"  # kept as evidence only (the wave had already stopped)


@dataclass(frozen=True)
class FiredAlert:
    """An alert a wave received, as evidence: the alert, its environment, when it arrived, what it did."""

    alert: Alert
    env: EnvRef
    received_at: datetime
    effect: AlertEffect
    run: int  # the wave's run it arrived in
