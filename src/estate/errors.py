"""The one exception tree of Estate.

    EstateError                 (exit 1: an operation failed)
    ├── InputError              (exit 2: bad input; nothing was changed)
    │   ├── ConfigError         estate-as-code is invalid (carries file:line:column + field path)
    │   ├── GraphError          an environment's resource graph cannot be resolved
    │   ├── TemplateError       a gate's query template is malformed (estate.domain.gate_eval)
    │   ├── RuleTieError        two module rules of one scope match an environment (estate.domain.rules)
    │   ├── NotFoundError       a named object does not exist
    │   └── ConflictError       the request contradicts stored state (immutable version, busy module)
    │       ├── TransitionRefused   a deployment status change its table forbids (estate.domain.deployments)
    │       ├── EnvironmentBusy     another deployment holds the environment (estate.runners.locks)
    │       └── LeaseHeld           another engine drives the rollout (estate.engine.lease)
    ├── Unauthenticated         no credential, or a bad, expired or revoked one (HTTP 401)
    │   └── Throttled           too many failed attempts from one address; try again later (HTTP 429)
    ├── Forbidden               an authenticated subject without the role and scope needed (HTTP 403)
    ├── ComponentError          an external component failed (binary missing, database, Prometheus)
    └── OperationFailed         the operation ran and did not succeed (a failed apply, a drift check)
        └── Refused             the rollout state machine (or four-eyes) refused a command; nothing changed

`transient` says whether trying again later may succeed without anyone changing anything (a busy
environment, a database that is restarting): the engine retries those with backoff and never counts
them as failures. Adapters translate errors of other libraries into this tree (`raise ... from exc`);
entry points map them to exit codes and HTTP statuses in one place each.
"""

from __future__ import annotations

from dataclasses import dataclass


class EstateError(Exception):
    """Base of every error Estate reports to a user."""

    exit_code = 1
    transient = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InputError(EstateError):
    """The user's input is wrong; nothing was changed."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One finding in estate-as-code: where it is and what is wrong."""

    message: str
    path: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        field_path = f"{self.path}: " if self.path else ""
        return f"{where}{field_path}{self.message}"


class ConfigError(InputError):
    """Estate-as-code failed validation; `problems` lists every finding with its location."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid estate configuration ({count}):\n{lines}")


class NotFoundError(InputError):
    """A named object (environment, module, version, plan, deployment, rollout) does not exist."""


class ConflictError(InputError):
    """The request contradicts what is stored (immutable version, module owned by another rollout)."""


class Unauthenticated(EstateError):
    """The request carries no credential, or one that is malformed, expired, revoked or wrongly signed."""


class Throttled(Unauthenticated):
    """Too many failed authentications from one address in a short time; `retry_after` seconds to wait."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, hint=f"wait {retry_after} s, and check the token you present")
        self.retry_after = retry_after


class Forbidden(EstateError):
    """The subject is known but holds no role allowing this where it would act; the message names what was needed."""


class ComponentError(EstateError):
    """An external component (Terraform binary, database, Prometheus) is missing or failed."""

    def __init__(self, component: str, message: str, *, hint: str | None = None, transient: bool = False) -> None:
        super().__init__(f"{component}: {message}", hint=hint)
        self.component = component
        self.transient = transient


class OperationFailed(EstateError):
    """The operation ran but did not succeed (a failed apply, a drift check that found drift)."""


class Refused(OperationFailed):
    """The rollout state machine refused a command (it does not fit the phase, or four-eyes); nothing changed."""


class GraphError(InputError):
    """An environment's resource graph cannot be resolved (no rule, unknown placeholder, cycle).

    Raised before anything runs; `env` names the environment (`project/env`).
    """

    def __init__(self, env: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{env}: {message}", hint=hint)
        self.env = env
