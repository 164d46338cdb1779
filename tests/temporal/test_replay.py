"""Recorded histories of the rollout workflow replay against the current code: a change that would make
running rollouts non-deterministic (another activity, timer or order) fails here, not in production.
The histories come from `record_histories.py` (a story with gates, refusals, a rollback, a retarget, a
rerun, approvals and continue-as-new, on two runner pools)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from estate.temporal.converter import data_converter
from estate.temporal.worker import sandbox
from estate.temporal.workflow import RolloutWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_recorded_histories_including_continued_runs() -> None:
    assert len(HISTORIES) >= 2, "run tests/temporal/record_histories.py"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_a_recorded_history_replays_on_the_current_workflow(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[RolloutWorkflow], data_converter=data_converter(), workflow_runner=sandbox())
    asyncio.run(replayer.replay_workflow(history))
