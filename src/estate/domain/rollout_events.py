"""What goes into the rollout state machine (commands, observations) and what comes out (actions, log).

Every event is one frozen dataclass, so fields can be added later without breaking callers.

- **Commands** come from a human (CLI, API) and carry the `actor`.
- **Observations** come from the engine: what a runner or a gate reported, that time passed, that the
  freezes changed; or, through the rollout's inbox, that Alertmanager reported a firing alert.
- **Actions** are what the engine must do next. Each carries a deterministic `key`; performing an
  action twice with one key must have the effect of performing it once, so an engine that crashed
  after persisting the state can simply perform the outstanding actions again.
- **Transitions** are the entries of the append-only rollout event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from estate.domain.alerts import Alert
from estate.domain.deployments import DeploymentKind, DeploymentStatus
from estate.domain.freezes import Freeze
from estate.domain.gate_eval import Sample
from estate.domain.ids import EnvRef
from estate.domain.plans import MetricGate

# -- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Begin with wave 1."""

    actor: str


@dataclass(frozen=True)
class Promote:
    """Accept the current wave (its exit gates passed) and move on to the next one."""

    actor: str


@dataclass(frozen=True)
class Approve:
    """Approve the current wave's entry approval gates that `actor` may approve (a role in `roles`;
    with `four_eyes`, not the one who started the rollout). With `override`, also accept a halted
    wave (failed or inconclusive) as if it had passed; it then awaits promotion."""

    actor: str
    override: bool = False
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Pause:
    """Start nothing new; in-flight deployments finish and are recorded."""

    actor: str


@dataclass(frozen=True)
class Resume:
    """Undo `Pause`: carry on where the rollout stands."""

    actor: str


@dataclass(frozen=True)
class Abort:
    """End the rollout: nothing new starts; in-flight deployments finish and are recorded."""

    actor: str


@dataclass(frozen=True)
class Rollback:
    """Roll a wave (default: the current one) back: each environment this rollout changed there goes
    back to its own previous version. Rolling back an earlier wave makes it current again."""

    actor: str
    wave: int | None = None


@dataclass(frozen=True)
class Retarget:
    """Use `version` for every deployment started from now on (in-flight ones keep theirs)."""

    actor: str
    version: str


@dataclass(frozen=True)
class Rerun:
    """Run a settled wave (default: the current one) again; it becomes the current wave. With
    `only_failed`, environments that succeeded in its last run are kept."""

    actor: str
    wave: int | None = None
    only_failed: bool = False


Command = Start | Promote | Approve | Pause | Resume | Abort | Rollback | Retarget | Rerun
COMMANDS: tuple[type[Command], ...] = (Start, Promote, Approve, Pause, Resume, Abort, Rollback, Retarget, Rerun)

# -- observations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentStarted:
    """The engine started the deployment of action `key` for `env`; the runner calls it `deployment_id`."""

    key: str
    env: EnvRef
    deployment_id: str


@dataclass(frozen=True)
class DeploymentFinished:
    """The deployment of action `key` for `env` ended in `status` (succeeded, failed, errored or cancelled).

    Only *failed* judges the change; *errored* says something technical prevented the attempt, and
    `retryable` that it may pass by itself (a busy environment), so the machine tries again later."""

    key: str
    env: EnvRef
    deployment_id: str
    status: DeploymentStatus
    reason: str = ""
    retryable: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status is DeploymentStatus.SUCCEEDED


@dataclass(frozen=True)
class GateSampled:
    """The engine took sampling round `round` of exit gate `gate_index` of `wave` for the `SampleGate` action
    `key`; `samples` holds what each subject's query returned (errors included, as data)."""

    key: str
    wave: int
    gate_index: int
    round: int
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Tick:
    """Time passed: bakes, sampling intervals, retry back-offs, freezes and change windows may have ended."""


@dataclass(frozen=True)
class FreezesChanged:
    """The freezes in force are now `freezes` (the engine read them from the store)."""

    freezes: tuple[Freeze, ...]


@dataclass(frozen=True)
class AlertFired:
    """Alertmanager reported `alert` firing for `env` of this rollout; `actor` is who delivered it (the webhook's
    authenticated subject). Queued in the rollout's inbox like a command."""

    alert: Alert
    env: EnvRef
    actor: str


Observation = DeploymentStarted | DeploymentFinished | GateSampled | Tick | FreezesChanged | AlertFired
Event = Command | Observation
Queued = Command | AlertFired  # what a rollout's inbox holds

# -- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartDeployment:
    """Deploy `module@version` to `env`. Before running it the engine pins `env` to `version` with an
    env-scoped module rule owned by the rollout, so the deployment and every later resolution agree
    (a rollback therefore restores the previous pin). One deployment per key, whatever the retries."""

    key: str
    env: EnvRef
    module: str
    version: str
    kind: DeploymentKind


@dataclass(frozen=True)
class SampleGate:
    """Take sampling round `round` of metric exit gate `gate_index` of `wave` over `envs`, not before
    `not_before`, and report `GateSampled` with the same key. One query per subject, no waiting: the
    machine spaces the rounds `interval` apart and judges them once the last one is in. A compare gate also
    samples its baseline, picked among `candidates` (environments this rollout has not changed); `windows`
    gives each environment's seconds since its deployment finished, as of `not_before`."""

    key: str
    wave: int
    gate_index: int
    round: int
    gate: MetricGate
    envs: tuple[EnvRef, ...]
    not_before: datetime
    candidates: tuple[EnvRef, ...] = ()
    windows: tuple[tuple[EnvRef, int], ...] = ()
    module: str = ""
    version: str = ""


@dataclass(frozen=True)
class WakeAt:
    """Send a `Tick` at (or soon after) `when`: a bake ends, or a back-off after a transient error."""

    key: str
    when: datetime


@dataclass(frozen=True)
class Finalize:
    """Every wave succeeded: make `module@version` the estate's truth and release the rollout's pins."""

    key: str
    module: str
    version: str


@dataclass(frozen=True)
class MarkDefective:
    """`module@version` failed a wave's gates in a plan with `mark_defective_on_failure`: mark it defective with
    `reason` (in the transaction that records the failure; a version already defective stays as it is)."""

    key: str
    module: str
    version: str
    reason: str


Action = StartDeployment | SampleGate | WakeAt | Finalize | MarkDefective

# -- log -----------------------------------------------------------------------------------------


class SubjectKind(StrEnum):
    """What a log entry is about."""

    ROLLOUT = "rollout"  # the rollout's phase
    TARGET = "target"  # the target version (retarget)
    WAVE = "wave"  # a wave's phase
    GATE = "gate"  # a gate of a wave
    ENV = "env"  # an environment's status in the rollout


@dataclass(frozen=True)
class Subject:
    """Who a transition happened to, as typed fields; `str()` gives "wave 1 gate 0", "env checkout/eph-1"."""

    kind: SubjectKind
    wave: int | None = None
    gate: int | None = None
    env: EnvRef | None = None

    @classmethod
    def of_wave(cls, wave: int, gate: int | None = None) -> Subject:
        return cls(SubjectKind.WAVE if gate is None else SubjectKind.GATE, wave, gate)

    def __str__(self) -> str:
        if self.kind is SubjectKind.WAVE:
            return f"wave {self.wave}"
        if self.kind is SubjectKind.GATE:
            return f"wave {self.wave} gate {self.gate}"
        if self.kind is SubjectKind.ENV:
            return f"env {self.env}"
        return str(self.kind)


ROLLOUT = Subject(SubjectKind.ROLLOUT)
TARGET = Subject(SubjectKind.TARGET)


@dataclass(frozen=True)
class Transition:
    """One entry of the append-only rollout event log: `subject` went from `before` to `after` (phases,
    statuses, verdicts or versions, as their string values)."""

    at: datetime
    subject: Subject
    before: str
    after: str
    reason: str = ""
    actor: str | None = None

    def __str__(self) -> str:
        text = f"{self.subject} {self.before} -> {self.after}"
        if self.reason:
            text += f" ({self.reason})"
        return f"{text} by {self.actor}" if self.actor else text
