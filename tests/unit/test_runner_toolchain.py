"""Binary discovery: missing, too old, fine — with stand-in scripts, never the PATH's terraform."""

from __future__ import annotations

from pathlib import Path

import pytest

from estate.errors import ComponentError
from estate.runners.toolchain import find_toolchain


def fake(tmp_path: Path, name: str, output: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)
    return path


def test_missing_binary_names_it(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match="'tofu' was not found on PATH") as caught:
        find_toolchain("tofu", {"PATH": str(tmp_path)})
    assert caught.value.hint and "ESTATE_TF_BINARY" in caught.value.hint
    with pytest.raises(ComponentError, match="does not exist"):
        find_toolchain(str(tmp_path / "terraform"), {})


def test_too_old_and_unparseable_versions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match=r"terraform 0\.15\.5; Estate needs 1\.0 or newer"):
        find_toolchain(str(fake(tmp_path, "terraform", '{"terraform_version": "0.15.5"}')), {})
    with pytest.raises(ComponentError, match="does not report its version"):
        find_toolchain(str(fake(tmp_path, "weird", "not json")), {})


def test_tofu_and_terraform_on_the_runner_path(tmp_path: Path) -> None:
    fake(tmp_path, "tofu", '{"terraform_version": "1.6.2"}')
    found = find_toolchain("tofu", {"PATH": str(tmp_path)})
    assert (found.product, found.version, found.path) == ("tofu", "1.6.2", tmp_path / "tofu")
