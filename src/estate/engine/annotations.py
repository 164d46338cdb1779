"""Grafana annotations for a rollout's milestones: wave start and end, gate results, rollbacks.

Posting happens on a background thread with a short timeout, so a Grafana outage never blocks or fails
a rollout; it is logged and the rollout goes on.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from estate.domain.rollout_events import SubjectKind, Transition
from estate.domain.rollout_state import RolloutState, WavePhase
from estate.gates.grafana import GrafanaAnnotator

log = logging.getLogger(__name__)
_WAVE_MILESTONES = frozenset(
    {
        WavePhase.DEPLOYING,
        WavePhase.SUCCEEDED,
        WavePhase.FAILED,
        WavePhase.INCONCLUSIVE,
        WavePhase.ERRORED,
        WavePhase.ROLLING_BACK,
        WavePhase.ROLLED_BACK,
        WavePhase.AWAITING_PROMOTION,
        WavePhase.AWAITING_APPROVAL,
    }
)


def milestone(state: RolloutState, t: Transition) -> tuple[str, str] | None:
    """(wave name, text) when `t` is worth a mark on every dashboard; None otherwise."""
    number = t.subject.wave
    if number is None or not 1 <= number <= len(state.waves):
        return None
    wave = state.spec(number).name
    if t.subject.kind is SubjectKind.WAVE and t.after in _WAVE_MILESTONES:
        what = "started" if t.after == WavePhase.DEPLOYING else t.after.replace("_", " ")
        text = f"{state.id}: wave {number} ({wave}) {what}"
    elif t.subject.kind is SubjectKind.GATE:
        text = f"{state.id}: wave {number} ({wave}) gate {t.subject.gate} {t.after}"
    else:
        return None
    return wave, text + (f": {t.reason}" if t.reason else "") + f" [{state.module} {state.version}]"


class GrafanaObserver:
    """Sends rollout milestones to Grafana without ever holding the engine up."""

    def __init__(self, annotator: GrafanaAnnotator, *, pause_after_failure: float = 60.0) -> None:
        self.annotator = annotator
        self.pause_after_failure = pause_after_failure
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="estate-grafana")
        self._down_until = 0.0  # monotonic time before which a failing Grafana is not asked again

    def __call__(self, state: RolloutState, t: Transition) -> None:
        found = milestone(state, t)
        if found is None:
            return
        wave, text = found
        self._pool.submit(self._post, text, state.id, wave, state.module, t.at)

    def _post(self, text: str, rollout: str, wave: str, module: str, at: datetime) -> None:
        # After a failure, milestones are dropped for a while: a Grafana that hangs must not keep the CLI
        # from exiting while queued posts time out one by one.
        if time.monotonic() < self._down_until:
            log.warning("grafana annotation skipped (Grafana failed recently): %s", text)
            return
        try:
            ok = self.annotator.annotate(
                text, rollout=rollout, wave=wave, module=module, time_ms=int(at.timestamp() * 1000)
            )
        except Exception:  # an observer must never take the engine down
            log.warning("grafana annotation failed", exc_info=True)
            ok = False
        if not ok:
            self._down_until = time.monotonic() + self.pause_after_failure

    def close(self) -> None:
        self._pool.shutdown(wait=True)
