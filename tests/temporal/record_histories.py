"""Record the histories that `test_replay.py` replays: run rollouts on a real dev server with the fake runner
and save each workflow run's history as JSON under tests/temporal/histories/.

Run it again (and commit the new files next to the old ones) when the workflow changes on purpose, after
guarding the change with `workflow.patched(...)` so that the old histories still replay:

    .venv/bin/python -m tests.temporal.record_histories
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from estate.app import Caller, bootstrap
from estate.config import load_estate
from estate.domain.model import ModuleVersion
from estate.errors import Refused
from estate.temporal.client import TemporalSettings, connect
from estate.temporal.contract import Limits, workflow_id
from estate.testing.temporal_server import TemporalDevServer
from tests.integration.test_engine import PassingSampler
from tests.integration.test_temporal_engine import REGIONS, fake_runner
from tests.support.cli import EXAMPLE_ESTATE
from tests.support.temporal import engine_environ, workers_in_thread

HISTORIES = Path(__file__).parent / "histories"
ALEX, BOB = Caller("alex"), Caller("bob")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = TemporalDevServer(Path(tmp) / "temporal.db").start()
        try:
            environ = {"ESTATE_HOME": f"{tmp}/home", **engine_environ(server, "record")}
            app = bootstrap(environ)
            now = datetime.now(UTC)
            estate = replace(load_estate(EXAMPLE_ESTATE).estate, runner_rules=REGIONS)
            app.store.sync(estate, prune=False, force=False, dry_run=False, actor="alex", now=now)
            for version in ("2.0.0", "2.0.1"):
                app.store.publish(ModuleVersion("postgres", version, f"/srv/pg-{version}"), "alex", now)
            # Every run continues as new after a few hundred events, so the histories cover that too.
            app.gateway.limits = Limits(continue_after=300)  # type: ignore[attr-defined]
            with workers_in_thread(environ, ["eu", "us"], runner=fake_runner, sampler=PassingSampler()):
                story = app.rollouts.start(ALEX, "postgres", "2.0.0", "standard", preflight=False).id
                with contextlib.suppress(Refused):  # refused in the validator: not in the history
                    app.rollouts.approve(BOB, story)
                app.rollouts.pause(ALEX, story)
                app.rollouts.resume(ALEX, story)
                app.rollouts.rollback(ALEX, story)
                app.rollouts.retarget(ALEX, story, "2.0.1", preflight=False)
                app.rollouts.rerun(ALEX, story)
                for _ in range(3):
                    app.rollouts.promote(ALEX, story)
                app.rollouts.approve(BOB, story)
                assert str(app.rollouts.state(story).phase) == "completed", app.rollouts.state(story).reason
            asyncio.run(save(TemporalSettings.build(environ, {}), story))
            app.close()
        finally:
            server.stop()


async def save(settings: TemporalSettings, rollout: str) -> None:
    client = await connect(settings)
    HISTORIES.mkdir(exist_ok=True)
    query = f"WorkflowId = '{workflow_id(settings.task_queue, rollout)}'"
    async for execution in client.list_workflows(query):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        started = history.events[0].event_time.ToDatetime()
        path = HISTORIES / f"{rollout}-{started:%Y%m%dT%H%M%S%f}.json"
        path.write_text(history.to_json())
        print(f"{path.name}: {len(history.events)} events")


if __name__ == "__main__":
    main()
