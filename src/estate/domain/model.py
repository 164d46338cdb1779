"""The estate: env types, projects, environments, modules and their versions.

Plain frozen dataclasses; the store and the YAML loader map onto them from outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from estate.domain.access import Binding
from estate.domain.ids import EnvRef
from estate.domain.lifecycle import Lifecycle
from estate.domain.plans import RolloutPlan
from estate.domain.rules import ModuleRule
from estate.domain.runner_rules import RunnerRule
from estate.errors import NotFoundError

JSON = Any
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class EnvType:
    """An ordered risk class; lower rank means less risk (ephemeral=0 ... production=3)."""

    id: str
    rank: int


@dataclass(frozen=True)
class Resource:
    """One entry of a project's manifest: `alias -> {type, params}`."""

    alias: str
    type: str
    params: Mapping[str, JSON] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class Project:
    """An application or team scope owning environments and a manifest of resources."""

    id: str
    owner: str
    resources: tuple[Resource, ...] = ()


@dataclass(frozen=True)
class Environment:
    """`project/env` with one env type and free labels."""

    project: str
    id: str
    type: str
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def ref(self) -> EnvRef:
        return EnvRef(self.project, self.id)


@dataclass(frozen=True)
class ModuleVersion:
    """An immutable published version of a module: where its code is and which inputs it gets."""

    module: str
    version: str
    source: str
    inputs: Mapping[str, JSON] = field(default_factory=lambda: _EMPTY)
    lifecycle: Lifecycle = Lifecycle.PUBLISHED
    lifecycle_reason: str = ""


@dataclass(frozen=True)
class Module:
    """A Terraform/OpenTofu module implementing one resource type."""

    id: str
    resource_type: str
    versions: tuple[ModuleVersion, ...] = ()

    def version(self, version: str) -> ModuleVersion | None:
        return next((v for v in self.versions if v.version == version), None)


@dataclass(frozen=True)
class Estate:
    """Everything estate-as-code declares, as one value."""

    env_types: tuple[EnvType, ...] = ()
    projects: tuple[Project, ...] = ()
    environments: tuple[Environment, ...] = ()
    modules: tuple[Module, ...] = ()
    rules: tuple[ModuleRule, ...] = ()
    plans: tuple[RolloutPlan, ...] = ()
    access: tuple[Binding, ...] = ()  # who holds which role where
    settings: Mapping[str, JSON] = field(default_factory=lambda: _EMPTY)
    runner_rules: tuple[RunnerRule, ...] = ()  # which runner pool runs each environment's Terraform

    def env_type_rank(self) -> dict[str, int]:
        return {t.id: t.rank for t in self.env_types}

    def project(self, project_id: str) -> Project | None:
        return next((p for p in self.projects if p.id == project_id), None)

    def module(self, module_id: str) -> Module | None:
        return next((m for m in self.modules if m.id == module_id), None)

    def require_module(self, module_id: str) -> Module:
        """The module; NotFoundError naming where to look when there is none."""
        found = self.module(module_id)
        if found is None:
            raise NotFoundError(f"unknown module '{module_id}'", hint="see `estate module list`")
        return found

    def plan(self, plan_id: str) -> RolloutPlan | None:
        return next((p for p in self.plans if p.id == plan_id), None)

    def require_plan(self, plan_id: str) -> RolloutPlan:
        """The rollout plan; NotFoundError naming where to look when there is none."""
        found = self.plan(plan_id)
        if found is None:
            raise NotFoundError(f"unknown rollout plan '{plan_id}'", hint="see `estate plan list`")
        return found

    def environment(self, ref: EnvRef) -> Environment | None:
        return next((e for e in self.environments if e.ref == ref), None)
