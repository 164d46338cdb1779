"""Where the CLI keeps the server it talks to and its token: `$XDG_CONFIG_HOME/estate/config.json` (default
`~/.config/estate/config.json`), readable by its owner only, like kubectl's kubeconfig or gh's hosts file.
`ESTATE_URL` and `ESTATE_TOKEN` override what is stored."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from estate.errors import InputError


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str | None


def config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "estate" / "config.json"


def current(environ: Mapping[str, str]) -> Credentials | None:
    """The server to talk to (None: embedded), with the token to present."""
    stored = _read(config_path(environ))
    url = environ.get("ESTATE_URL") or stored.get("url")
    if not url:
        return None
    token = environ.get("ESTATE_TOKEN") or (stored.get("token") if stored.get("url") == url else None)
    return Credentials(url, token)


def save(environ: Mapping[str, str], url: str, token: str) -> Path:
    """Store `url` and `token` (0600, written atomically); returns where."""
    path = config_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    partial.replace(path)
    return path


def forget(environ: Mapping[str, str]) -> bool:
    """Remove the stored server and token; False when there were none."""
    path = config_path(environ)
    if not path.exists():
        return False
    path.unlink()
    return True


def _read(path: Path) -> dict[str, str]:
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable CLI config: {exc}", hint="fix it, or run `estate logout`") from None
    return found if isinstance(found, dict) else {}
