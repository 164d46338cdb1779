"""`estate worker`: run Temporal workers (rollout workflows, runner pools) in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from estate.cli.context import get_context
from estate.cli.output import stderr


def worker(
    pool: Annotated[
        list[str] | None, typer.Option("--pool", help="Run Terraform for this runner pool (repeatable).")
    ] = None,
    rollouts: Annotated[
        bool, typer.Option("--rollouts", help="Also run rollout workflows (state machine, store, gates).")
    ] = False,
    grace: Annotated[
        float, typer.Option(help="On SIGTERM, seconds a Terraform run may take to finish before it is handed back.")
    ] = 60.0,
    max_runs: Annotated[int, typer.Option(help="Terraform runs at once per pool in this process.")] = 4,
    local_state: Annotated[
        bool, typer.Option(help="Allow local Terraform state (every worker of the pool runs on this machine).")
    ] = False,
) -> None:
    """Serve the Temporal engine: rollout workflows (--rollouts) and/or runner pools (--pool NAME), until
    SIGTERM or Ctrl-C; then finish (or hand back) the runs in flight.

    Example: estate worker --pool eu --pool eu-gpu
    """
    pools = pool or []
    served = ", ".join([*(["rollouts"] if rollouts else []), *(f"pool {p}" for p in pools)])
    stderr.print(f"worker: serving {served}")
    get_context().app.workers.run(pools, rollouts=rollouts, grace=grace, max_runs=max_runs, local_state=local_state)
    stderr.print("worker: stopped")


def register(app: typer.Typer) -> None:
    app.command()(worker)
