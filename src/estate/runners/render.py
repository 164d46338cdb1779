"""Render an environment's root module in Terraform JSON syntax: never HCL by string pasting.

- `main.tf.json`: the backend, one root variable per literal input, one `module` block per resource.
  Literal inputs arrive through `terraform.tfvars.json` (values, not templates: exact types, no
  injection); inputs that reference another resource's outputs are templates already escaped by the
  graph (`${module.db.host}`), which is how Terraform learns the order.
- `outputs.tf.json`: one root output per child-module output (`<alias>__<name>`), sensitive where
  the module says so. It is written after `init`, when the modules are on disk to be read.

The backend is a template: every string in `runner.backend` has `{project}` and `{env}` replaced.
Without one, the local backend keeps state at `$ESTATE_HOME/state/<project>/<env>/terraform.tfstate`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from estate.domain.graph import ResolvedGraph, ResolvedResource
from estate.domain.ids import EnvRef

MAIN = "main.tf.json"
TFVARS = "terraform.tfvars.json"
OUTPUTS = "outputs.tf.json"
SEPARATOR = "__"
_MODULE_REF = re.compile(r"(?<!\$)\$\{module\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\}")


@dataclass(frozen=True)
class ModuleOutput:
    name: str
    sensitive: bool


def variable_name(resource: ResolvedResource, input_name: str) -> str:
    return f"{resource.name}{SEPARATOR}{input_name}"


def backend_block(template: Mapping[str, Any] | None, env: EnvRef, state_path: Path) -> dict[str, Any]:
    """`{type: settings}` for `env`: the configured template filled in, or the local default."""
    if not template:
        return {"local": {"path": str(state_path)}}
    filled: dict[str, Any] = _fill(dict(template), env)
    return filled


def _fill(value: Any, env: EnvRef) -> Any:
    if isinstance(value, str):
        return value.replace("{project}", env.project).replace("{env}", env.env)
    if isinstance(value, Mapping):
        return {k: _fill(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, env) for v in value]
    return value


def root_module(graph: ResolvedGraph, backend: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`main.tf.json`, `terraform.tfvars.json`) for `graph`."""
    variables: dict[str, Any] = {}
    tfvars: dict[str, Any] = {}
    modules: dict[str, Any] = {}
    for res in graph.resources:
        block: dict[str, Any] = {"source": res.source}
        for name, value in res.inputs.items():
            var = variable_name(res, name)
            variables[var] = {"description": f"{res.alias}.{name}"}
            tfvars[var] = value
            block[name] = f"${{var.{var}}}"
        block.update(res.references)
        modules[res.name] = block
    main: dict[str, Any] = {"terraform": {"backend": dict(backend)}}
    if variables:
        main["variable"] = variables
    if modules:
        main["module"] = modules
    return main, tfvars


def root_outputs(graph: ResolvedGraph, found: Mapping[str, tuple[ModuleOutput, ...] | None]) -> dict[str, Any]:
    """`outputs.tf.json`; a module whose outputs could not be read is exposed whole, as sensitive."""
    outputs: dict[str, Any] = {}
    for res in graph.resources:
        listed = found.get(res.name)
        if listed is None:  # unknown shape: safe default, nothing leaks
            outputs[res.name] = {"value": f"${{module.{res.name}}}", "sensitive": True}
            continue
        for out in listed:
            block: dict[str, Any] = {"value": f"${{module.{res.name}.{out.name}}}"}
            if out.sensitive:
                block["sensitive"] = True
            outputs[f"{res.name}{SEPARATOR}{out.name}"] = block
    return {"output": outputs} if outputs else {}


def unknown_references(graph: ResolvedGraph, found: Mapping[str, tuple[ModuleOutput, ...] | None]) -> list[str]:
    """References to outputs a module does not declare (only for modules whose outputs are known)."""
    problems = []
    for res in graph.resources:
        for name, value in res.references.items():
            for module, output in _MODULE_REF.findall(json.dumps(value)):
                declared = found.get(module)
                if declared is not None and output not in {o.name for o in declared}:
                    target = next((r for r in graph.resources if r.name == module), None)
                    what = f"{target.module}@{target.version}" if target else module
                    known = ", ".join(o.name for o in declared) or "none"
                    problems.append(
                        f"resource '{res.alias}' input '{name}' refers to output '{output}' of '{module}', "
                        f"which {what} does not declare (it declares: {known})"
                    )
    return problems


def output_key(graph: ResolvedGraph, root_name: str) -> str:
    """`db__host` -> `db.host`: how outputs are shown and stored."""
    module, sep, output = root_name.partition(SEPARATOR)
    alias = next((r.alias for r in graph.resources if r.name == module), module)
    return f"{alias}.{output}" if sep else alias


def write_json(path: Path, data: Mapping[str, Any]) -> bool:
    """Write `data` as pretty JSON; False (and no write) when the file already holds exactly that."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True
