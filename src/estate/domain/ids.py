"""Identifiers: DNS-label IDs and `project/env` references, so nothing like `../x` or `a/b` gets in."""

from __future__ import annotations

import re
from dataclasses import dataclass

from estate.errors import InputError

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ID_RULE = "lowercase letters, digits and '-', 1-63 characters, starting and ending alphanumeric"


def is_valid_id(value: str) -> bool:
    """True when `value` is a DNS label (RFC 1123), the form of every Estate ID."""
    return bool(_LABEL.match(value))


class InvalidId(InputError, ValueError):
    """Text that is not an Estate ID or a `project/env` reference (a ValueError too, for validators)."""


@dataclass(frozen=True, order=True)
class EnvRef:
    """An environment's full name, `project/env`."""

    project: str
    env: str

    def __str__(self) -> str:
        return f"{self.project}/{self.env}"

    @classmethod
    def parse(cls, text: str) -> EnvRef:
        """Parse `project/env`; InvalidId naming what is wrong."""
        project, sep, env = text.partition("/")
        if not sep:
            raise InvalidId(f"'{text}' is not of the form PROJECT/ENV")
        for part in (project, env):
            if not is_valid_id(part):
                raise InvalidId(f"'{part}' in '{text}' is not a valid ID ({ID_RULE})")
        return cls(project, env)
