"""Load estate-as-code (a file or a directory of *.yaml) into a validated `Estate`.

Every problem found is collected with its file, line, column and field path, then raised together
as one `ConfigError`, so a user fixes everything in one round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from estate.config.convert import to_estate
from estate.config.references import check_references
from estate.config.schema import Document
from estate.config.yamlpos import Located, load_yaml
from estate.domain.model import Estate
from estate.errors import ConfigError, Problem

_LIST_KEYS = ("env_types", "modules", "module_rules", "projects", "rollout_plans")
_MAP_KEYS = ("settings", "roles")


@dataclass(frozen=True)
class LoadedEstate:
    """A validated estate and the files it came from."""

    estate: Estate
    files: tuple[Path, ...]


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not found:
            raise ConfigError([Problem("directory contains no *.yaml files", file=str(path))])
        return found
    if not path.exists():
        raise ConfigError([Problem("no such file or directory", file=str(path))])
    return [path]


def _merge(docs: list[tuple[Path, Located]]) -> Located:
    """Concatenate the top-level lists of several files, keeping every value's original position."""
    merged = Located({})
    offsets: dict[str, int] = dict.fromkeys(_LIST_KEYS, 0)
    for path, doc in docs:
        merged.problems.extend(doc.problems)
        data = doc.data
        if data is None:
            continue
        if not isinstance(data, dict):
            merged.problems.append(doc.problem((), "the top level must be a mapping of sections"))
            continue
        base = path.parent.resolve()
        for key, value in data.items():
            _merge_key(merged, doc, key, value, offsets, base)
    return merged


def _merge_key(merged: Located, doc: Located, key: str, value: Any,
               offsets: dict[str, int], base: Path) -> None:
    if key in _LIST_KEYS and isinstance(value, list):
        start = offsets[key]
        if key == "modules":
            value = [_absolute_sources(m, base) for m in value]
        merged.data.setdefault(key, []).extend(value)
        offsets[key] += len(value)
        for p, m in doc.marks.items():
            if p[:1] == (key,) and len(p) > 1 and isinstance(p[1], int):
                merged.marks[(key, p[1] + start, *p[2:])] = m
        merged.marks.setdefault((key,), doc.marks[(key,)])
        return
    if key in _MAP_KEYS and key in merged.data:
        merged.problems.append(doc.problem((key,), f"'{key}' is already given in another file"))
        return
    merged.data[key] = value
    for p, m in doc.marks.items():
        if p[:1] == (key,):
            merged.marks[p] = m


def _absolute_sources(module: Any, base: Path) -> Any:
    """Make `./x` and `../x` module sources absolute, relative to the declaring file."""
    if not isinstance(module, dict) or not isinstance(module.get("versions"), list):
        return module
    versions = []
    for v in module["versions"]:
        src = v.get("source") if isinstance(v, dict) else None
        if isinstance(src, str) and src.startswith(("./", "../")):
            v = {**v, "source": str((base / src).resolve())}
        versions.append(v)
    return {**module, "versions": versions}


_TYPE_TAGS = frozenset({"int", "str", "float", "bool", "dict", "list", "none"})


def _data_path(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop pydantic's union/validator tags from an error location, keeping real keys and indexes."""
    path: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif i == len(loc) - 1 and isinstance(part, str) and part.isidentifier() and part not in _TYPE_TAGS:
            pass  # a missing field: name it
        else:
            continue
        path.append(part)
    return tuple(path)


def _schema_problems(located: Located, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path = _data_path(located.data, err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(located.problem(path, message))
    return problems


def load_estate(path: Path, published: Mapping[str, set[str]] | None = None) -> LoadedEstate:
    """Load and validate `path`; `published` adds module versions already in the store."""
    files = _files(path)
    located = _merge([(f, load_yaml(f)) for f in files])
    if located.problems:
        raise ConfigError(located.problems)
    try:
        document = Document.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(_schema_problems(located, exc)) from None
    problems = check_references(document, located, published or {})
    if problems:
        raise ConfigError(problems)
    return LoadedEstate(to_estate(document), tuple(files))
