"""Which outputs each child module declares, and which are sensitive, read from disk after `init`.

Terraform keeps no child-module outputs in state, so to report `db.host` we must declare a root
output per child output, which needs their names before `plan`. `init` has put every module on
disk (`.terraform/modules/modules.json` maps each module key to its directory); we read their
`*.tf.json` files as JSON and scan `*.tf` files for top-level `output "name" { ... }` blocks.
The scan understands strings, heredocs and comments, not full HCL; when it cannot make sense of a
module it returns None and the renderer exposes the whole module as one sensitive output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from estate.runners.render import ModuleOutput

_OUTPUT = re.compile(r'output\s+"([^"]+)"\s*\{')
_SENSITIVE = re.compile(r"^\s*sensitive\s*=\s*true\b", re.MULTILINE)
_HEREDOC = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_]*)\n")
_BLANK = str.maketrans({"{": " ", "}": " ", '"': " ", "\\": " "})


def module_outputs(work_dir: Path) -> dict[str, tuple[ModuleOutput, ...] | None]:
    """`module block name -> outputs` for the root's direct child modules."""
    try:
        listed = json.loads((work_dir / ".terraform" / "modules" / "modules.json").read_text())["Modules"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    found: dict[str, tuple[ModuleOutput, ...] | None] = {}
    for entry in listed:
        key = str(entry.get("Key", ""))
        if key and "." not in key:  # direct children only
            found[key] = read_outputs(work_dir / str(entry.get("Dir", "")))
    return found


def read_outputs(module_dir: Path) -> tuple[ModuleOutput, ...] | None:
    outputs: dict[str, bool] = {}
    try:
        for path in sorted(module_dir.glob("*.tf.json")):
            for name, spec in _json_outputs(json.loads(path.read_text())).items():
                outputs[name] = spec
        for path in sorted(module_dir.glob("*.tf")):
            outputs.update(scan_hcl(path.read_text()))
    except (OSError, ValueError):
        return None
    return tuple(ModuleOutput(n, s) for n, s in sorted(outputs.items()))


def _json_outputs(doc: object) -> dict[str, bool]:
    blocks = doc.get("output", {}) if isinstance(doc, dict) else {}
    items = blocks if isinstance(blocks, list) else [blocks]
    return {
        name: bool(isinstance(spec, dict) and spec.get("sensitive") is True)
        for block in items
        if isinstance(block, dict)
        for name, spec in block.items()
    }


def scan_hcl(text: str) -> dict[str, bool]:
    """`output name -> sensitive` for the top-level output blocks of one `.tf` file."""
    code = _strip(text)
    found: dict[str, bool] = {}
    depth = 0
    pos = 0
    while pos < len(code):
        char = code[pos]
        if depth == 0:
            m = _OUTPUT.match(code, pos)
            if m and (pos == 0 or code[pos - 1] in " \t\n"):
                end = _block_end(code, m.end())
                found[m.group(1)] = bool(_SENSITIVE.search(_top_level(code[m.end() : end])))
                pos = end + 1
                continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        pos += 1
    return found


def _block_end(code: str, start: int) -> int:
    depth = 1
    for i in range(start, len(code)):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        if depth == 0:
            return i
    raise ValueError("unbalanced braces")


def _top_level(body: str) -> str:
    """The block's body with nested blocks/objects removed, so `sensitive` is the block's own."""
    out, depth = [], 0
    for char in body:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0 and char != "}":
            out.append(char)
    return "".join(out)


def _strip(text: str) -> str:
    """Comments removed, heredocs emptied, braces and quotes inside strings blanked (so they do not count)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        heredoc = _HEREDOC.match(text, i) if char == "<" else None
        if heredoc:
            end = re.compile(rf"^\s*{heredoc.group(1)}\s*$", re.MULTILINE).search(text, heredoc.end())
            i = end.end() if end else len(text)
            out.append('""')
        elif char == '"':
            close = _string_end(text, i)
            out.append('"' + text[i + 1 : close - 1].translate(_BLANK) + '"')
            i = close
        elif char == "#" or text.startswith("//", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = len(text) if close < 0 else close + 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """Index after the closing quote of the string at `start`, skipping escapes and `${...}`."""
    i, depth = start + 1, 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if text.startswith("${", i) or text.startswith("%{", i):
            depth += 1
            i += 2
            continue
        if char == "}" and depth:
            depth -= 1
        elif char == '"' and not depth:
            return i + 1
        i += 1
    return i
