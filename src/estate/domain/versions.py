"""Semantic versions (semver 2.0.0) with correct precedence, pre-releases included."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from estate.errors import InputError

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def _pre_key(part: str) -> tuple[int, int, str]:
    # Numeric identifiers sort before alphanumeric ones, numerically among themselves.
    return (0, int(part), "") if part.isdigit() else (1, 0, part)


class InvalidVersion(InputError, ValueError):
    """Text that is not a semantic version (a ValueError too, for validators)."""


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed semver; compares by precedence (build metadata ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse `MAJOR.MINOR.PATCH[-pre][+build]`; InvalidVersion otherwise."""
        m = _SEMVER.match(text)
        if not m:
            raise InvalidVersion(f"'{text}' is not a semantic version (MAJOR.MINOR.PATCH, e.g. 2.0.1)")
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre, m.group(5) or "")

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release sorts after all its pre-releases.
        return (
            self.major,
            self.minor,
            self.patch,
            0 if self.prerelease else 1,
            tuple(_pre_key(p) for p in self.prerelease),
        )

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        return text + (f"+{self.build}" if self.build else "")
