"""Cross-reference checks of a schema-valid document: unique IDs, known references, semver, rule ties."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from estate.config.convert import environments as to_environments
from estate.config.convert import runner_rule
from estate.config.schema import Document, SelectorDoc
from estate.config.yamlpos import Located, Path_
from estate.domain.gate_eval import TemplateError, check_template
from estate.domain.ids import EnvRef
from estate.domain.plans import GateScope
from estate.domain.rules import ModuleRule, find_ties
from estate.domain.runner_rules import find_ties as find_runner_ties
from estate.domain.versions import Version
from estate.errors import Problem


class _Checker:
    def __init__(self, doc: Document, located: Located, published: Mapping[str, set[str]]) -> None:
        self.doc = doc
        self.located = located
        self.problems: list[Problem] = []
        self.env_types = {t.id for t in doc.env_types}
        self.projects = {p.id: p for p in doc.projects}
        self.modules = {m.id: m for m in doc.modules}
        self.versions = {m.id: {v.version for v in m.versions} | published.get(m.id, set()) for m in doc.modules}
        self.resource_types = {m.resource_type for m in doc.modules}

    def add(self, path: Path_, message: str) -> None:
        self.problems.append(self.located.problem(path, message))

    def unique(self, section: Path_, ids: Iterable[Any], what: str, field: str = "id") -> None:
        seen: set[Any] = set()
        for index, value in enumerate(ids):
            if value in seen:
                self.add((*section, index, field), f"duplicate {what} '{value}'")
            seen.add(value)

    def run(self) -> list[Problem]:
        self.unique(("env_types",), (t.id for t in self.doc.env_types), "env type")
        self.unique(("env_types",), (t.rank for t in self.doc.env_types), "env type rank", "rank")
        self.unique(("modules",), (m.id for m in self.doc.modules), "module")
        self.unique(("projects",), (p.id for p in self.doc.projects), "project")
        self.unique(("rollout_plans",), (p.id for p in self.doc.rollout_plans), "rollout plan")
        self.check_modules()
        self.check_projects()
        self.check_rules()
        self.check_runner_rules()
        self.check_plans()
        self.check_access()
        return self.problems

    def check_access(self) -> None:
        for bi, binding in enumerate(self.doc.access):
            here: Path_ = ("access", bi, "scope")
            for pi, project in enumerate(binding.scope.projects or []):
                if project not in self.projects:
                    self.add((*here, "projects", pi), f"unknown project '{project}'")
            for ti, env_type in enumerate(binding.scope.env_types or []):
                if env_type not in self.env_types:
                    self.add((*here, "env_types", ti), f"unknown env type '{env_type}'")

    def check_modules(self) -> None:
        for mi, module in enumerate(self.doc.modules):
            self.unique(("modules", mi, "versions"), (v.version for v in module.versions), "version", "version")
            for vi, version in enumerate(module.versions):
                try:
                    Version.parse(version.version)
                except ValueError as exc:
                    self.add(("modules", mi, "versions", vi, "version"), str(exc))

    def check_projects(self) -> None:
        for pi, project in enumerate(self.doc.projects):
            self.unique(("projects", pi, "environments"), (e.id for e in project.environments), "environment")
            for alias, resource in project.resources.items():
                if resource.type not in self.resource_types:
                    self.add(
                        ("projects", pi, "resources", alias, "type"),
                        f"no module implements resource type '{resource.type}'",
                    )
            for ei, env in enumerate(project.environments):
                if env.type not in self.env_types:
                    self.add(("projects", pi, "environments", ei, "type"), f"unknown env type '{env.type}'")

    def check_rules(self) -> None:
        for ri, rule in enumerate(self.doc.module_rules):
            here: Path_ = ("module_rules", ri)
            module = self.modules.get(rule.module)
            if module is None:
                self.add((*here, "module"), f"unknown module '{rule.module}'")
            elif rule.version not in self.versions[rule.module]:
                known = ", ".join(sorted(self.versions[rule.module], key=_version_key)) or "none"
                self.add(
                    (*here, "version"), f"module '{rule.module}' has no version '{rule.version}' (published: {known})"
                )
            if module is not None and module.resource_type != rule.resource_type:
                self.add(
                    (*here, "resource_type"),
                    f"module '{rule.module}' implements '{module.resource_type}', not '{rule.resource_type}'",
                )
            self.check_rule_scope(here, rule.project, rule.env_type, rule.env)
        rules = _rules(self.doc)
        for first, second in find_ties(rules):
            tied = rules[first]
            scope = " (global)" if tied.scope_text == "global" else f" for {tied.scope_text}"
            self.add(
                ("module_rules", second),
                f"ties with module_rules[{first}] ({tied.resource_type} -> {tied.module}@{tied.version}{scope}); "
                "the most specific rule must be unique",
            )

    def check_runner_rules(self) -> None:
        for ri, rule in enumerate(self.doc.runner_rules):
            self.check_rule_scope(("runner_rules", ri), rule.project, rule.env_type, rule.env)
        rules = [runner_rule(r) for r in self.doc.runner_rules]
        for first, second, why in find_runner_ties(rules, to_environments(self.doc)):
            self.add(
                ("runner_rules", second),
                f"ties with runner_rules[{first}] ({rules[first].scope_text} -> {rules[first].pool}): {why}; "
                "the most specific runner rule must be unique",
            )

    def check_rule_scope(self, here: Path_, project: str | None, env_type: str | None, env: str | None) -> None:
        if project is not None and project not in self.projects:
            self.add((*here, "project"), f"unknown project '{project}'")
        if env_type is not None and env_type not in self.env_types:
            self.add((*here, "env_type"), f"unknown env type '{env_type}'")
        problem = ModuleRule("x", "x", "x", project, env_type, env).scope_problem()
        if problem:
            self.add((*here, "env"), problem)
        elif (
            env is not None
            and project in self.projects
            and env not in {e.id for e in self.projects[project].environments}
        ):
            self.add((*here, "env"), f"project '{project}' has no environment '{env}'")

    def check_plans(self) -> None:
        for pi, plan in enumerate(self.doc.rollout_plans):
            self.unique(("rollout_plans", pi, "waves"), (w.name for w in plan.waves), "wave", "name")
            for wi, wave in enumerate(plan.waves):
                self.check_selector(("rollout_plans", pi, "waves", wi, "select"), wave.select)
                for gi, gate in enumerate(wave.gates):
                    here: Path_ = ("rollout_plans", pi, "waves", wi, "gates", gi)
                    metric = gate.prometheus or gate.compare
                    if metric is None:
                        continue
                    kind = "prometheus" if gate.prometheus is not None else "compare"
                    scope = GateScope(gate.prometheus.scope) if gate.prometheus is not None else GateScope.ENV
                    for field in ("query", "landed"):
                        template = getattr(metric, field)
                        try:
                            if template is not None:
                                check_template(template, scope)
                        except TemplateError as exc:
                            self.add((*here, kind, field), str(exc))
                    if gate.compare is not None and gate.compare.baseline is not None:
                        self.check_selector((*here, "compare", "baseline"), gate.compare.baseline)

    def check_selector(self, here: Path_, sel: SelectorDoc) -> None:
        types = [sel.env_type] if isinstance(sel.env_type, str) else (sel.env_type or [])
        for t in types:
            if t not in self.env_types:
                self.add((*here, "env_type"), f"unknown env type '{t}'")
        for i, project in enumerate(sel.projects or []):
            if project not in self.projects:
                self.add((*here, "projects", i), f"unknown project '{project}'")
        all_envs = {(p.id, e.id) for p in self.doc.projects for e in p.environments}
        for i, name in enumerate(sel.envs or []):
            if not self._env_exists(name, all_envs):
                self.add((*here, "envs", i), f"no environment '{name}'")
        for i, expr in enumerate(sel.match_expressions):
            needs_values = expr.operator in ("In", "NotIn")
            if needs_values != bool(expr.values):
                self.add(
                    (*here, "match_expressions", i, "values"),
                    f"operator {expr.operator} {'needs' if needs_values else 'takes no'} values",
                )

    @staticmethod
    def _env_exists(name: str, all_envs: set[tuple[str, str]]) -> bool:
        if "/" in name:
            try:
                ref = EnvRef.parse(name)
            except ValueError:
                return False
            return (ref.project, ref.env) in all_envs
        return any(env == name for _, env in all_envs)


def _version_key(text: str) -> tuple[int, Any]:
    try:
        return (0, Version.parse(text))
    except ValueError:
        return (1, text)


def _rule(r: Any) -> ModuleRule:
    return ModuleRule(r.resource_type, r.module, r.version, r.project, r.env_type, r.env)


def _rules(doc: Document) -> list[ModuleRule]:
    return [_rule(r) for r in doc.module_rules]


def check_references(doc: Document, located: Located, published: Mapping[str, set[str]]) -> list[Problem]:
    """Every cross-reference problem of `doc`, located in its files."""
    return _Checker(doc, located, published).run()
