"""Wiring for rollout commands: one place builds the runner, the gate runner and the engine from settings."""

from __future__ import annotations

import os
import time

from rich.markup import escape

from estate.cli.context import Context, utcnow
from estate.cli.output import stderr
from estate.engine.annotations import GrafanaObserver
from estate.engine.driver import EngineConfig
from estate.engine.gates import PrometheusGates
from estate.engine.service import RolloutService
from estate.gates.grafana import GrafanaAnnotator
from estate.gates.prometheus import PrometheusClient
from estate.runners import DeploymentService


def _progress(rollout_id: str, line: str) -> None:
    stderr.print(f"[dim]{utcnow():%H:%M:%S}[/] [bold]{escape(rollout_id)}[/] {escape(line)}")


def rollout_service(ctx: Context, *, quiet: bool = False) -> RolloutService:
    """The rollout service on this invocation's store, with the real Terraform runner and Prometheus."""
    runner = DeploymentService(ctx.store, ctx.settings, now=utcnow)
    runner.recover()
    store = ctx.store

    def engine() -> EngineConfig:
        estate_settings = store.load_estate().settings
        client = PrometheusClient.from_settings(
            dict(estate_settings.get("prometheus") or {}), os.environ, url=ctx.settings.prometheus_url
        )
        gates = PrometheusGates(client, store.load_estate, utcnow, time.sleep)
        annotator = GrafanaAnnotator.from_settings(dict(estate_settings.get("grafana") or {}), os.environ)
        return EngineConfig(
            store,
            runner,
            utcnow,
            max_parallel=runner.config.max_parallel,
            gates=gates,
            on_log=(lambda rollout_id, line: None) if quiet else _progress,
            observers=(GrafanaObserver(annotator),) if annotator else (),
        )

    return RolloutService(store, runner, engine, now=utcnow, max_parallel=runner.config.max_parallel)
