"""YAML loading that remembers where every value came from, so errors can name file:line:column."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from estate.errors import Problem

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    """A position in a file (1-based line and column)."""

    file: str
    line: int
    column: int


@dataclass
class Located:
    """A parsed document and the position of every value in it, keyed by its path."""

    data: Any
    marks: dict[Path_, Mark] = field(default_factory=dict)  # where each value starts
    key_marks: dict[Path_, Mark] = field(default_factory=dict)  # where each mapping key starts
    problems: list[Problem] = field(default_factory=list)

    def mark(self, path: Path_) -> Mark | None:
        """The position of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.marks.get(path[:end])
            if found:
                return found
        return None

    def problem(self, path: Path_, message: str, *, at_key: bool = False) -> Problem:
        mark = (self.key_marks.get(path) if at_key else None) or self.mark(path)
        return Problem(
            message,
            path=format_path(path),
            file=mark.file if mark else None,
            line=mark.line if mark else None,
            column=mark.column if mark else None,
        )


def format_path(path: Path_) -> str:
    """`('projects', 2, 'environments', 0, 'type')` -> `projects[2].environments[0].type`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _walk(node: yaml.Node, path: Path_, name: str, out: Located) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = (*path, key)
            if key in seen:
                mark = _mark(key_node, name)
                out.problems.append(
                    Problem(f"duplicate key '{key}'", format_path(here), mark.file, mark.line, mark.column)
                )
            seen.add(key)
            out.marks[here] = _mark(value_node, name)
            out.key_marks[here] = _mark(key_node, name)
            _walk(value_node, here, name, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out.marks[(*path, index)] = _mark(item, name)
            _walk(item, (*path, index), name, out)


def _mark(node: yaml.Node, name: str) -> Mark:
    return Mark(name, node.start_mark.line + 1, node.start_mark.column + 1)


# libyaml's parser keeps the same marks, and reads a 100,000-environment estate several times faster
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str, name: str) -> Located:
    """Parse one YAML document named `name` (its file); syntax errors become problems with their position,
    never exceptions."""
    try:
        loader = _LOADER(text)
    except yaml.YAMLError as exc:  # a ReaderError: characters YAML does not allow
        return Located(None, problems=[Problem(f"YAML error: {exc}", "", name)])
    try:
        node = loader.get_single_node()
        located = Located(None, {(): _mark(node, name)} if node else {})
        if node is not None:
            _walk(node, (), name, located)
            located.data = loader.construct_document(node)
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        reason = exc.problem or exc.context or "invalid YAML"
        return Located(None, problems=[Problem(f"YAML syntax error: {reason}", "", name, line, column)])
    except yaml.YAMLError as exc:  # a ReaderError further in
        return Located(None, problems=[Problem(f"YAML error: {exc}", "", name)])
    finally:
        loader.dispose()
