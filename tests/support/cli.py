"""Run the `estate` CLI in-process, as a user would type it, against a throwaway ESTATE_HOME."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from estate.cli.app import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_ESTATE = REPO / "examples" / "estate"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., CliResult]


@pytest.fixture
def estate_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "estate-home"
    monkeypatch.setenv("ESTATE_HOME", str(home))
    monkeypatch.delenv("ESTATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("ESTATE_ACTOR", "alex")
    return home


@pytest.fixture
def cli(estate_home: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli("env", "list", "-o", "json")` -> CliResult(code, out, err)."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
