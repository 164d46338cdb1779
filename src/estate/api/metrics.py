"""`GET /metrics`: the estate as the store says (collected on each scrape, the same on every server sharing one
database) and this server's HTTP requests (process-local), in Prometheus' exposition format."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from estate.app.metrics import EstateMetrics, environments_by_state


class EstateCollector(Collector):
    """The application's metrics snapshot as metric families."""

    def __init__(self, metrics: EstateMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snap = self.metrics.snapshot()
        rollouts = GaugeMetricFamily("estate_rollouts", "Rollouts by phase.", labels=["phase"])
        for phase, n in sorted(snap.rollouts_by_phase.items()):
            rollouts.add_metric([phase], n)
        yield rollouts
        envs = GaugeMetricFamily(
            "estate_rollout_environments",
            "Environments of the latest rollout of each module, by their state in it.",
            labels=["rollout", "state"],
        )
        for (rollout, state), n in sorted(environments_by_state(snap.environments).items()):
            envs.add_metric([rollout, state], n)
        yield envs
        info = InfoMetricFamily(
            "estate_rollout_environment",
            "Wave membership of the latest rollout of each module: one series per environment, its version and state.",
            labels=["rollout", "module", "wave", "project", "env", "version", "state"],
        )
        for s in snap.environments:
            info.add_metric([s.rollout, s.module, str(s.wave), s.project, s.env, s.version, s.state], {})
        yield info
        deployments = GaugeMetricFamily("estate_deployments", "Deployments by status.", labels=["status"])
        for status, n in sorted(snap.deployments_by_status.items()):
            deployments.add_metric([status], n)
        yield deployments
        durations = HistogramMetricFamily(
            "estate_deployment_duration_seconds",
            "Time from queued to the end of finished deployments.",
            labels=["kind", "status"],
        )
        for (kind, status), histogram in sorted(snap.durations.items()):
            durations.add_metric([kind, status], histogram.cumulative(), histogram.sum)
        yield durations
        gates = GaugeMetricFamily(
            "estate_gate_evaluations", "Gate evaluations by result (every verdict reached).", labels=["result"]
        )
        for result, n in sorted(snap.gate_results.items()):
            gates.add_metric([result], n)
        yield gates
        yield GaugeMetricFamily(
            "estate_engine_turn_lag_seconds",
            "How long the oldest command queued for a rollout has waited for an engine to decide it (0: none waits).",
            value=snap.command_lag_seconds,
        )


class HttpMetrics:
    """Counts and times this server's requests by method, route template and status (ASGI middleware)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry, prefix: str) -> None:
        self.app = app
        self.prefix = prefix
        self.requests = Counter(
            "estate_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "estate_http_request_duration_seconds",
            "Time to the response's first byte.",
            ["method", "route"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                route = self._route(scope)
                self.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
                self.requests.labels(scope["method"], route, str(status)).inc()
            await send(message)

        await self.app(scope, receive, record)

    def _route(self, scope: Scope) -> str:
        """The matched route's template (routers included under the prefix know only their own part)."""
        route = getattr(scope.get("route"), "path", None)
        if route is None:
            return "unmatched"
        prefixed = scope["path"].startswith(self.prefix + "/") and not str(route).startswith(self.prefix)
        return f"{self.prefix}{route}" if prefixed else str(route)
