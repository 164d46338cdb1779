"""The lifecycle of a published module version: published, deprecated (deploying it warns) or defective (refused
for every new deployment, rollout start and retarget). Pure.

Every change takes a reason. Marking a version defective is reversible (`restore`), like deprecating it; a
rollback to a defective version stays allowed, because restoring what an environment ran before is how one
leaves a worse one.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING

from estate.errors import ConflictError, InputError

if TYPE_CHECKING:
    from estate.domain.model import ModuleVersion


class Lifecycle(StrEnum):
    PUBLISHED = "published"  # deployable
    DEPRECATED = "deprecated"  # deployable, with a warning: move off it
    DEFECTIVE = "defective"  # refused for every new deployment, rollout start and retarget

    @property
    def deployable(self) -> bool:
        """May a new deployment, rollout start or retarget use a version in this state?"""
        return self is not Lifecycle.DEFECTIVE


class DefectiveVersion(ConflictError):
    """A new deployment, rollout start or retarget would use a version marked defective."""


def check_deployable(version: ModuleVersion, where: str = "") -> str | None:
    """DefectiveVersion for a defective version; a warning for a deprecated one; None otherwise."""
    name = f"{version.module} {version.version}"
    scope = f" ({where})" if where else ""
    if not version.lifecycle.deployable:
        raise DefectiveVersion(
            f"{name} is defective{scope}: {version.lifecycle_reason or 'no reason given'}",
            hint="deploy a fixed version (publish one, or retarget the rollout to one); an admin can "
            f"undo the mark with: estate module restore {version.module} {version.version} --reason ...",
        )
    if version.lifecycle is Lifecycle.DEPRECATED:
        return f"{name} is deprecated{scope}: {version.lifecycle_reason or 'no reason given'}"
    return None


def check_all(versions: Iterable[tuple[ModuleVersion, str]]) -> list[str]:
    """`check_deployable` for each (version, where it would be deployed): raises for the first defective one,
    returns the warnings of the deprecated ones."""
    return [w for v, where in versions if (w := check_deployable(v, where)) is not None]


def check_change(current: Lifecycle, wanted: Lifecycle, reason: str) -> bool:
    """Whether moving `current` to `wanted` changes anything (False: it already is); InputError without a reason."""
    if not reason.strip():
        raise InputError(f"marking a version {wanted} needs a reason (--reason)")
    return current is not wanted
