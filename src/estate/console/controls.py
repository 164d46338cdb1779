"""The rollout page's controls and what each one's confirmation says will happen: which command goes to which
API route with which body, which environments it touches and from which version to which. The words come from
the rollout's view; whether it is allowed is the state machine's answer, shown verbatim if it refuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from estate.app.views.rollouts import RolloutEnvView, RolloutView, WaveView

ROLLOUT_COMMANDS = ("promote", "approve", "pause", "resume", "abort", "retarget")
WAVE_COMMANDS = ("rollback", "rerun", "rerun-failed")
LISTED = 20  # environments a confirmation names; the rest are counted
PAGE = 500  # environments of the wave read to find those


@dataclass(frozen=True)
class Change:
    env: str
    before: str
    after: str


@dataclass
class Confirmation:
    """What a confirmation dialog shows, and what its button sends."""

    title: str
    lines: list[str]
    api: str  # POST here
    body: dict[str, Any] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    more: int = 0  # environments not listed
    button: str = "Confirm"
    danger: bool = False
    versions: list[str] = field(default_factory=list)  # retarget: the versions to choose from
    allow_destroy: bool = False  # offer the allow_destroy checkbox
    job: bool = False  # the API answers 202 with a job (retarget's preflight)


def _wave(view: RolloutView, number: int) -> WaveView | None:
    return next((w for w in view.waves if w.number == number), None)


def _gates(wave: WaveView, kind: str | None = None) -> str:
    return "; ".join(g.spec for g in wave.gates if kind is None or (g.kind == kind))


def _total(wave: WaveView) -> int:
    return sum(wave.counts.values())


def _envs(n: int) -> str:
    """`its 3 environments`, `its environment`."""
    return "its environment" if n == 1 else f"its {n} environments"


def _in_flight(wave: WaveView) -> int:
    return wave.counts.get("deploying", 0) + wave.counts.get("rolling_back", 0)


def _deploys(wave: WaveView, version: str, *, total: int | None = None) -> tuple[list[Change], int]:
    n = _total(wave) if total is None else total
    listed = [Change(e.env, e.version, version) for e in wave.envs[:LISTED]]
    return listed, max(n - len(listed), 0)


def confirmation(
    view: RolloutView, command: str, *, wave: int | None = None, versions: list[str] | None = None
) -> Confirmation:
    """The confirmation of `command` (one of ROLLOUT_COMMANDS, or of WAVE_COMMANDS with `wave`); `view` lists the
    environments of the wave the command acts on (ValueError for an unknown command or wave)."""
    api = f"/api/v1/rollouts/{view.id}"
    current = _wave(view, view.current_wave)
    if current is None:
        raise ValueError(f"rollout {view.id} has no wave {view.current_wave}")
    if command in WAVE_COMMANDS:
        target = _wave(view, wave or 0)
        if target is None:
            raise ValueError(f"rollout {view.id} has no wave {wave}")
        return _wave_command(view, command, target, api)
    if command == "promote":
        return _promote(view, current, api)
    if command == "approve":
        return _approve(view, current, api)
    if command == "pause":
        return Confirmation(
            f"Pause rollout {view.id}",
            [
                f"No new deployment starts in wave {current.number} ({current.name}); the {_in_flight(current)} "
                "in flight finish. Gates and timers wait until you resume.",
            ],
            f"{api}/pause",
            button="Pause",
        )
    if command == "resume":
        return Confirmation(
            f"Resume rollout {view.id}",
            [f"Wave {current.number} ({current.name}) carries on where it stopped ({current.phase})."],
            f"{api}/resume",
            button="Resume",
        )
    if command == "abort":
        return Confirmation(
            f"Abort rollout {view.id}",
            [
                f"The rollout ends for good: nothing new starts, the {_in_flight(current)} deployments in flight "
                "finish, and every environment stays on the version it is on now.",
                f"The environments of wave {current.number} ({current.name}) that have not started are skipped; "
                "later waves never start. An aborted rollout cannot be resumed.",
            ],
            f"{api}/abort",
            button="Abort the rollout",
            danger=True,
        )
    if command == "retarget":
        total = sum(_total(w) for w in view.waves)
        return Confirmation(
            f"Retarget rollout {view.id}",
            [
                f"The rollout's target changes from {view.module} {view.version} to the version you choose.",
                f"Estate first plans that version on every one of the rollout's {total} environments (a preflight) "
                "and refuses destructive changes unless you allow them below.",
                "Nothing is deployed yet: rerun a wave (or promote) to deploy the new version.",
            ],
            f"{api}/retarget",
            button="Retarget",
            versions=[v for v in versions or [] if v != view.version],
            allow_destroy=True,
            job=True,
        )
    raise ValueError(f"unknown command '{command}'")


def _promote(view: RolloutView, current: WaveView, api: str) -> Confirmation:
    following = _wave(view, current.number + 1)
    if following is None:
        return Confirmation(
            f"Promote rollout {view.id}",
            [f"Wave {current.number} ({current.name}) is the last wave: there is no wave to promote to."],
            f"{api}/promote",
            button="Promote",
        )
    lines = [
        f"Wave {current.number} ({current.name}) is accepted as it is now.",
        f"Wave {following.number} ({following.name}) starts: {_envs(_total(following))} are deployed "
        f"with {view.module} {view.version}, at most {following.max_parallel} at a time.",
    ]
    if approvals := _gates(following, "approval"):
        lines.append(f"It first waits for an approval ({approvals}).")
    if exits := "; ".join(g.spec for g in following.gates if g.kind != "approval"):
        lines.append(f"Then its gates decide: {exits}.")
    changes, more = _deploys(following, view.version)
    return Confirmation(
        f"Promote to wave {following.number} ({following.name})",
        lines,
        f"{api}/promote",
        changes=changes,
        more=more,
        button=f"Promote to wave {following.number}",
    )


def _approve(view: RolloutView, current: WaveView, api: str) -> Confirmation:
    if view.phase == "halted":
        return Confirmation(
            f"Accept wave {current.number} ({current.name}) as it is",
            [
                f"Wave {current.number} is {current.phase}: {current.reason or view.reason}.",
                "Approving with override accepts it as it is: its environments that have not started are skipped "
                "and the rollout goes on as if its gates had passed.",
            ],
            f"{api}/approve",
            body={"override": True},
            button="Accept the wave (override)",
            danger=True,
        )
    lines = [
        f"Wave {current.number} ({current.name}) is approved in your name: "
        f"{_gates(current, 'approval') or 'it has no approval gate'}.",
        f"{_envs(_total(current)).capitalize()} are then deployed with {view.module} {view.version}, at most "
        f"{current.max_parallel} at a time.",
    ]
    if any(g.four_eyes for g in current.gates):
        lines.append(f"Four eyes: {view.started_by}, who started the rollout, may not approve it.")
    changes, more = _deploys(current, view.version)
    return Confirmation(
        f"Approve wave {current.number} ({current.name})",
        lines,
        f"{api}/approve",
        body={"override": False},
        changes=changes,
        more=more,
        button="Approve",
    )


def _wave_command(view: RolloutView, command: str, wave: WaveView, api: str) -> Confirmation:
    later = (
        f" Waves after {wave.number} are reset: they run again when promoted." if wave.number < len(view.waves) else ""
    )
    if command == "rollback":
        changed = [e for e in wave.envs if e.changed]
        lines = [
            f"Each environment of wave {wave.number} that this rollout changed is deployed back to its own "
            f"previous version (below); the ones it has not started are skipped.{later}",
        ]
        if len(wave.envs) < _total(wave):
            lines.append(
                f"The wave has {_total(wave)} environments; the list is drawn from the first {len(wave.envs)}."
            )
        return Confirmation(
            f"Roll back wave {wave.number} ({wave.name})",
            lines,
            f"{api}/rollback",
            body={"wave": wave.number},
            changes=[Change(e.env, e.version, e.previous_version) for e in changed[:LISTED]],
            more=max(len(changed) - LISTED, 0),
            button=f"Roll back wave {wave.number}",
            danger=True,
        )
    only_failed = command == "rerun-failed"
    chosen: list[RolloutEnvView] = [e for e in wave.envs if not only_failed or e.status != "succeeded"]
    total = _total(wave) - (wave.counts.get("succeeded", 0) if only_failed else 0)
    what = (
        f"the {total} environments that did not succeed are deployed again with {view.module} {view.version}; "
        f"the {wave.counts.get('succeeded', 0)} that succeeded stay as they are"
        if only_failed
        else f"all its {total} environments are deployed again with {view.module} {view.version}"
    )
    listed = [Change(e.env, e.version, view.version) for e in chosen[:LISTED]]
    return Confirmation(
        f"Rerun {'the failed environments of ' if only_failed else ''}wave {wave.number} ({wave.name})",
        [f"Wave {wave.number} runs again, gates included: {what}.{later}"],
        f"{api}/rerun",
        body={"wave": wave.number, "only_failed": only_failed},
        changes=listed,
        more=max(total - len(listed), 0),
        button=f"Rerun wave {wave.number}" + (" (only failed)" if only_failed else ""),
    )
