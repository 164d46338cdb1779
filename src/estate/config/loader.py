"""Load estate-as-code (a file or a directory of *.yaml) into a validated `Estate`.

Every problem found is collected with its file, line, column and field path, then raised together
as one `ConfigError`, so a user fixes everything in one round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from estate.config.convert import to_estate
from estate.config.references import check_references
from estate.config.schema import Document
from estate.config.yamlpos import Located, parse_yaml
from estate.domain.model import Estate
from estate.errors import ConfigError, Problem

_LIST_KEYS = ("env_types", "modules", "module_rules", "runner_rules", "projects", "rollout_plans", "access")
_MAP_KEYS = ("settings", "roles")


@dataclass(frozen=True)
class LoadedEstate:
    """A validated estate and the files it came from."""

    estate: Estate
    files: tuple[str, ...]


@dataclass(frozen=True)
class SourceFile:
    """One YAML text of estate-as-code and its file name (errors name it; `./` module sources are relative to
    its directory)."""

    name: str
    text: str


def read_sources(path: Path) -> list[SourceFile]:
    """The YAML file `path`, or every *.yaml / *.yml in the directory `path`, sorted by name; ConfigError naming
    a missing, empty or unreadable one."""
    documents, problems = [], []
    for file in _files(path):
        try:
            documents.append(SourceFile(str(file), file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(f"cannot read file: {exc}", file=str(file)))
    if problems:
        raise ConfigError(problems)
    return documents


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not found:
            raise ConfigError([Problem("directory contains no *.yaml files", file=str(path))])
        return found
    if not path.exists():
        raise ConfigError([Problem("no such file or directory", file=str(path))])
    return [path]


def _merge(docs: list[tuple[str, Located]]) -> Located:
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
        base = Path(path).parent.resolve()
        for key, value in data.items():
            _merge_key(merged, doc, key, value, offsets, base)
    return merged


def _merge_key(merged: Located, doc: Located, key: str, value: Any, offsets: dict[str, int], base: Path) -> None:
    if key in _LIST_KEYS and isinstance(value, list):
        start = offsets[key]
        if key == "modules":
            value = [_absolute_sources(m, base) for m in value]
        merged.data.setdefault(key, []).extend(value)
        offsets[key] += len(value)
        for mine, theirs in ((merged.marks, doc.marks), (merged.key_marks, doc.key_marks)):
            for p, m in theirs.items():
                if p[:1] == (key,) and len(p) > 1 and isinstance(p[1], int):
                    mine[(key, p[1] + start, *p[2:])] = m
            mine.setdefault((key,), theirs[(key,)])
        return
    if key in _MAP_KEYS and key in merged.data:
        merged.problems.append(doc.problem((key,), f"'{key}' is already given in another file"))
        return
    merged.data[key] = value
    for mine, theirs in ((merged.marks, doc.marks), (merged.key_marks, doc.key_marks)):
        mine.update((p, m) for p, m in theirs.items() if p[:1] == (key,))


def _absolute_sources(module: Any, base: Path) -> Any:
    """Make `./x` and `../x` module sources absolute, relative to the declaring file."""
    if not isinstance(module, dict) or not isinstance(module.get("versions"), list):
        return module
    versions = []
    for version in module["versions"]:
        src = version.get("source") if isinstance(version, dict) else None
        if isinstance(src, str) and src.startswith(("./", "../")):
            version = {**version, "source": str((base / src).resolve())}  # noqa: PLW2901
        versions.append(version)
    return {**module, "versions": versions}


_TYPE_TAGS = frozenset({"int", "str", "float", "bool", "dict", "list", "none"})


def _child(data: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(data, dict) and part in data:
        return True, data[part]
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return True, data[part]
    return False, None


def _data_path(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop pydantic's union/validator tags from an error location, keeping real keys and indexes."""
    path: list[str | int] = []
    for i, part in enumerate(loc):
        found, child = _child(data, part)
        if found:
            data = child
        elif not (i == len(loc) - 1 and isinstance(part, str) and part.isidentifier() and part not in _TYPE_TAGS):
            continue  # a union or validator tag, not a place in the document
        path.append(part)
    return tuple(path)


def _schema_problems(located: Located, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path = _data_path(located.data, err["loc"])
        unknown = err["type"] == "extra_forbidden"
        message = "unknown field" if unknown else err["msg"].removeprefix("Value error, ")
        problems.append(located.problem(path, message, at_key=unknown))
    return problems


def load_estate(path: Path, published: Mapping[str, set[str]] | None = None) -> LoadedEstate:
    """Load and validate `path`; `published` adds module versions already in the store."""
    return load_sources(read_sources(path), published)


def load_sources(documents: Sequence[SourceFile], published: Mapping[str, set[str]] | None = None) -> LoadedEstate:
    """Validate estate-as-code given as texts (e.g. sent to the server); like `load_estate`."""
    if not documents:
        raise ConfigError([Problem("no documents given")])
    located = _merge([(d.name, parse_yaml(d.text, d.name)) for d in documents])
    if located.problems:
        raise ConfigError(located.problems)
    try:
        document = Document.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(_schema_problems(located, exc)) from None
    problems = check_references(document, located, published or {})
    if problems:
        raise ConfigError(problems)
    return LoadedEstate(to_estate(document), tuple(d.name for d in documents))
