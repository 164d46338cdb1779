"""The one place that wires Estate: settings -> store -> runner -> gate sampler -> observers -> engine ->
use cases, from an injectable mapping (the process environment for the CLI and the server, a dict in tests).

Nothing is built at import time; the store opens when `bootstrap` is called, and the Terraform runner and
the engine when first used (a command that only reads never checks for a Terraform binary). `App.close`
stops the observers' threads and the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

from estate.app.access import AccessControl
from estate.app.alerts import Alerts
from estate.app.audit import AuditTrail
from estate.app.deployments import Deployments
from estate.app.engines import EmbeddedEngine, EngineGateway, HostedEngine
from estate.app.feed import Feed
from estate.app.freezes import Freezes
from estate.app.identity import Identity
from estate.app.inventory import Inventory
from estate.app.jobs import Jobs
from estate.app.metrics import EstateMetrics
from estate.app.rollouts import Rollouts
from estate.app.status import Dashboards
from estate.app.workers import Workers
from estate.domain.gate_eval import Sample, SamplingRound
from estate.engine.annotations import GrafanaObserver
from estate.engine.config import EngineConfig, GateSampler, Observer
from estate.engine.host import EngineHost
from estate.gates.grafana import GrafanaAnnotator
from estate.gates.prometheus import PrometheusClient, PrometheusSampler
from estate.runners import DeploymentService
from estate.runners.events import TerraformEvent
from estate.runners.ports import Runner
from estate.runners.shared_locks import StoreLocks
from estate.settings import Settings
from estate.store import Store
from estate.store.holders import process_identity
from estate.temporal.client import TemporalSettings, engine_kind
from estate.temporal.gateway import TemporalEngine

LOCK_TTL = timedelta(hours=2)  # an environment lock held by a live process that long is surely stale


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Wiring:
    """What a caller may replace: the clock, the runner, the sampler, and where progress goes."""

    now: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    runner: Callable[[Store, Settings], Runner] | None = None  # default: real Terraform (DeploymentService)
    sampler: GateSampler | None = None  # default: Prometheus from settings
    on_log: Callable[[str, str], None] = lambda rollout_id, line: None  # engine log lines, as they happen
    listener: Callable[[int, TerraformEvent], None] | None = None  # Terraform events, as they happen
    observers: Sequence[Observer] = ()  # more engine observers (e.g. the server's event stream)
    hosted: bool = False  # an engine host drives every rollout (the server); else the CLI drives its own


@dataclass
class App:
    """Estate, wired: the use cases every entry point calls."""

    settings: Settings
    store: Store
    wiring: Wiring
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @cached_property
    def audit(self) -> AuditTrail:
        return AuditTrail(self.store, self.wiring.now)

    @cached_property
    def access(self) -> AccessControl:
        return AccessControl(self.store)

    @cached_property
    def identity(self) -> Identity:
        return Identity(self.store, self.audit, self.access, self.wiring.now)

    @cached_property
    def inventory(self) -> Inventory:
        return Inventory(self.settings, self.store, self.audit, self.access, self.wiring.now)

    @cached_property
    def deployments(self) -> Deployments:
        return Deployments(lambda: self.terraform, self.audit, self.access, self.store, self.wiring.now)

    @cached_property
    def freezes(self) -> Freezes:
        return Freezes(self.store, self.audit, self.access, self.wiring.now, poke=self._poke)

    @cached_property
    def alerts(self) -> Alerts:
        return Alerts(self.store, self.audit, self.access, self.wiring.now, poke=self._poke)

    def _poke(self) -> None:
        """Hosted or on Temporal: make the engine read its rollouts' inboxes (and the freezes) now."""
        if self.wiring.hosted or self.temporal is not None:
            self.gateway.poke()

    @cached_property
    def rollouts(self) -> Rollouts:
        return Rollouts(
            self.store,
            lambda: self.terraform,
            lambda: self.gateway,
            self.audit,
            self.access,
            now=self.wiring.now,
            boards=self.dashboards,
        )

    @cached_property
    def jobs(self) -> Jobs:
        """Background jobs of a server (their worker threads run here; any server reads them)."""
        jobs = Jobs(self.store, self.wiring.now, self.engine.holder)
        self._closers.append(jobs.close)
        return jobs

    @cached_property
    def feed(self) -> Feed:
        return Feed(self.store)

    @cached_property
    def metrics(self) -> EstateMetrics:
        return EstateMetrics(self.store, self.wiring.now)

    @cached_property
    def workers(self) -> Workers:
        return Workers(self)

    # -- the engine gateway: local (embedded or hosted) or Temporal, by settings --------------------------

    @property
    def temporal(self) -> TemporalSettings | None:
        """Where Temporal is, when `settings.engine.kind` (or ESTATE_ENGINE_KIND) says the engine is temporal."""
        stored = dict(self.store.settings().get("engine") or {})
        if engine_kind(self.settings.environ, stored) != "temporal":
            return None
        return TemporalSettings.build(self.settings.environ, stored)

    @cached_property
    def gateway(self) -> EngineGateway:
        temporal = self.temporal
        if temporal is not None:
            gateway = TemporalEngine(temporal, self.store, now=self.wiring.now, on_log=self.wiring.on_log)
            self._closers.append(gateway.close)
            return gateway
        if self.wiring.hosted:
            return HostedEngine(self.host, self.engine, self.wiring.now, self.wiring.sleep)
        return EmbeddedEngine(self.engine, self.wiring.now, self.wiring.sleep)

    # -- end of the engine gateway ------------------------------------------------------------------------

    @cached_property
    def terraform(self) -> DeploymentService:
        """The real Terraform runner; recovers runs whose process died before anything else uses it."""
        # With Temporal, runners on other machines lock environments in the store: so does this process.
        locks = StoreLocks(self.store, process_identity(), self.wiring.now, LOCK_TTL) if self.temporal else None
        service = DeploymentService(
            self.store, self.settings, now=self.wiring.now, listener=self.wiring.listener, locks=locks
        )
        service.recover()
        return service

    @cached_property
    def engine(self) -> EngineConfig:
        runner: Runner = self.wiring.runner(self.store, self.settings) if self.wiring.runner else self.terraform
        observers = list(self.wiring.observers)
        stored = self.store.settings()
        annotator = GrafanaAnnotator.from_settings(dict(stored.get("grafana") or {}), self.settings.environ)
        if annotator is not None:
            grafana = GrafanaObserver(annotator)
            self._closers.append(grafana.close)
            observers.append(grafana)
        return EngineConfig(
            self.store,
            runner,
            self.wiring.now,
            sampler=self.wiring.sampler or StoredSettingsSampler(self.store, self.settings),
            max_parallel=int(dict(stored.get("runner") or {}).get("max_parallel") or 4),
            on_log=self.wiring.on_log,
            observers=observers,
            lease_ttl=self.settings.lease_ttl,
            sleep=self.wiring.sleep,
        )

    @cached_property
    def host(self) -> EngineHost:
        """The engine host of a server: drives every active rollout (run it on a thread of its own)."""
        return EngineHost(self.engine)

    def dashboards(self) -> Dashboards:
        stored = self.store.settings()
        prometheus = dict(stored.get("prometheus") or {})
        grafana = dict(stored.get("grafana") or {})
        return Dashboards(self.settings.prometheus_url or prometheus.get("url"), grafana.get("url"))

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self.store.close()


class StoredSettingsSampler:
    """Samples with the Prometheus that `settings.prometheus` names now (estate-as-code may change it while a
    server runs); `ESTATE_PROMETHEUS_URL` wins over the stored URL, secrets come from the environment."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def sample(self, round: SamplingRound) -> list[Sample]:
        stored = dict(self.store.settings().get("prometheus") or {})
        client = PrometheusClient.from_settings(stored, self.settings.environ, url=self.settings.prometheus_url)
        return PrometheusSampler(client).sample(round)


def bootstrap(environ: Mapping[str, str], wiring: Wiring | None = None) -> App:
    """Estate on the store that `environ` names (ESTATE_HOME / ESTATE_DATABASE_URL), migrated to head."""
    settings = Settings.from_environ(environ)
    return App(settings, Store.open(settings.database_url), wiring or Wiring())
