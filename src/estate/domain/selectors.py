"""Selectors: which environments a wave (or a CLI filter) picks.

All given criteria must hold (AND); a list within one criterion is any-of (OR). An empty
selector matches every environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, TypeVar

from estate.errors import InputError


class SelectableEnv(Protocol):
    """What a selector looks at."""

    @property
    def project(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...


E = TypeVar("E", bound=SelectableEnv)


class LabelOp(StrEnum):
    """Operators of a label expression (Kubernetes' set-based requirements)."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class LabelExpression:
    """`key op values`; `Exists`/`DoesNotExist` take no values."""

    key: str
    op: LabelOp
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.op:
            case LabelOp.IN:
                return value is not None and value in self.values
            case LabelOp.NOT_IN:
                return value is None or value not in self.values
            case LabelOp.EXISTS:
                return value is not None
            case LabelOp.DOES_NOT_EXIST:
                return value is None


@dataclass(frozen=True)
class Selector:
    """A conjunction of criteria on env type, labels, project and environment name."""

    env_types: frozenset[str] | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    expressions: tuple[LabelExpression, ...] = ()
    projects: frozenset[str] | None = None
    envs: frozenset[str] | None = None  # "project/env" or a bare env id (any project)

    def matches(self, env: SelectableEnv) -> bool:
        if self.env_types is not None and env.type not in self.env_types:
            return False
        if self.projects is not None and env.project not in self.projects:
            return False
        if self.envs is not None and not ({env.id, f"{env.project}/{env.id}"} & self.envs):
            return False
        if any(env.labels.get(k) != v for k, v in self.labels.items()):
            return False
        return all(e.holds(env.labels) for e in self.expressions)

    def select(self, envs: Iterable[E]) -> list[E]:
        return [e for e in envs if self.matches(e)]


def parse_labels(items: Iterable[str], *, what: str) -> dict[str, str]:
    """`key=value` texts as labels to select by; InputError naming (as `what`, e.g. `--label`) a malformed one."""
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{what} '{item}' is not of the form key=value")
        found[key] = value
    return found
