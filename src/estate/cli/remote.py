"""The CLI as a client of `estate server` (when ESTATE_URL is set): the same use cases as `estate.app.App`,
answered over HTTP with the same views, so every command renders, exits and prints JSON exactly as it does
embedded.

Long work (preflight plans, deploys, drift) runs as a job on the server; its progress drives the same
progress port as embedded. Commands return when the server's engine has answered; like the embedded CLI,
a command that follows the rollout waits until it needs a human, watching the event stream. Problems the
server returns become the same exceptions again (`estate.app.failures.restore`).
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from estate.app import Caller
from estate.app.audit import AuditFilter
from estate.app.failures import restore
from estate.app.inventory import read_sources
from estate.app.progress import Progress
from estate.app.views.audit import AuditEntryView
from estate.app.views.deployments import (
    BatchView,
    DeploymentSummaryView,
    DeploymentView,
    DriftReport,
    LogChunk,
)
from estate.app.views.events import EventView
from estate.app.views.guardrails import FreezeView
from estate.app.views.identity import IssuedTokenView, TokenView, WhoAmIView
from estate.app.views.inventory import (
    ApplyView,
    EnvironmentView,
    InitView,
    ModuleVersionView,
    ModuleView,
    PlanSummaryView,
    PlanView,
    PublishView,
    UsageView,
)
from estate.app.views.jobs import ErrorView, JobView
from estate.app.views.rollouts import (
    EnvQuery,
    PreviewView,
    RetargetView,
    RolloutSummaryView,
    RolloutView,
    StartView,
)
from estate.domain.ids import EnvRef
from estate.errors import ComponentError, EstateError, InputError
from estate.settings import Settings

V = TypeVar("V", bound=BaseModel)
API = "/api/v1"
PROBLEM_PREFIX = "urn:estate:problem:"
JOB_POLL_SECONDS = 0.5
PAGE_SIZE = 1000
#: Rollout phases in which the engine is still at work on its own.
MOVING = frozenset({"pending", "running"})


class Client:
    """One server: JSON requests, problems turned back into Estate's exceptions, jobs, the event stream."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        headers = {"User-Agent": "estate-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(method, path, json=body, params=clean)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response.json()

    def get(self, model: type[V], path: str, **params: Any) -> V:
        return model.model_validate(self.request("GET", path, params=params))

    def post(self, model: type[V], path: str, body: Mapping[str, Any] | None = None) -> V:
        return model.model_validate(self.request("POST", path, body=body))

    def pages(self, item: type[V], path: str, **params: Any) -> list[V]:
        """Every item of a paginated list, page after page."""
        adapter = TypeAdapter(list[item])  # type: ignore[valid-type]
        found: list[V] = []
        after = None
        while True:
            page = self.request("GET", path, params={**params, "limit": PAGE_SIZE, "after": after})
            found.extend(adapter.validate_python(page["items"]))
            after = page.get("next_cursor")
            if not after:
                return found

    def job(self, model: type[V], path: str, body: Mapping[str, Any], progress: Progress | None) -> V:
        """Submit long work, show its progress as it goes, and return its result (or raise its error)."""
        job = self.post(JobView, path, body)
        begun, shown = False, 0
        while True:
            if progress is not None and job.progress.label:
                if not begun:
                    progress.begin(job.progress.label, job.progress.total)
                    begun = True
                for done in job.progress.done[shown:]:
                    progress.advance(done.item, done.outcome)
                shown = len(job.progress.done)
            if job.status in ("succeeded", "failed", "interrupted"):
                break
            job = self.get(JobView, f"{API}/jobs/{job.id}", wait=JOB_POLL_SECONDS)
        if job.error is not None:
            raise restore(job.error)
        if not isinstance(job.result, model):
            raise ComponentError("server", f"job {job.id} ({job.kind}) returned no {model.__name__}")
        return job.result

    def events(self, *, rollout: str | None = None) -> Iterator[EventView | None]:
        """The event stream from now on: events as they come, None once connected and on every keep-alive
        (a chance to look around); reconnects with Last-Event-ID, so nothing is lost or repeated."""
        last: int | None = None
        while True:
            params: dict[str, Any] = {"rollout": rollout} if rollout else {}
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            timeout = httpx.Timeout(10.0, read=60.0)
            try:
                with self.http.stream(
                    "GET", f"{API}/events", params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise self._error(response)
                    yield None
                    for event_id, data in _sse(response.iter_lines()):
                        if data is None:
                            yield None
                            continue
                        last = event_id
                        yield EventView.model_validate_json(data)
            except httpx.HTTPError as exc:
                if last is None:
                    raise self._unreachable(exc) from exc
                time.sleep(1.0)  # the server went away mid-stream: reconnect where we were

    def _unreachable(self, exc: httpx.HTTPError) -> ComponentError:
        return ComponentError(
            "server",
            f"cannot reach {self.url}: {exc}",
            hint="is `estate server` running there? unset ESTATE_URL to work on the local store",
            transient=True,
        )

    def _error(self, response: httpx.Response) -> EstateError:
        try:
            problem = response.json()
        except json.JSONDecodeError:
            problem = {"detail": response.text[:500]}
        kind = str(problem.get("type") or "")
        detail = str(problem.get("detail") or problem.get("title") or f"HTTP {response.status_code}")
        if kind.startswith(PROBLEM_PREFIX):
            view = ErrorView(
                category=kind.removeprefix(PROBLEM_PREFIX),
                message=detail,
                hint=problem.get("hint"),
                problems=problem.get("errors") or [],
            )
            return restore(view)
        if response.status_code < 500:
            return InputError(detail)
        return ComponentError("server", f"HTTP {response.status_code}: {detail}", transient=True)


def _sse(lines: Iterator[str]) -> Iterator[tuple[int | None, str | None]]:
    """(id, data) per event of a text/event-stream; (None, None) for a comment (keep-alive)."""
    event_id: int | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event_id, "\n".join(data)
            data = []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "":
            yield None, None
        elif field == "id" and value.lstrip("-").isdigit():
            event_id = int(value)
        elif field == "data":
            data.append(value)


def settled(view: RolloutView) -> bool:
    """Nothing moves until a human acts (or the rollout is over), or until a freeze lifts or a change window
    opens (a held wave with nothing in flight): what embedded commands drive up to."""
    in_flight = any(w.counts.get("deploying") or w.counts.get("rolling_back") for w in view.waves)
    if view.phase in MOVING:
        current = view.waves[view.current_wave - 1]
        return view.phase == "running" and bool(current.hold) and current.phase == "deploying" and not in_flight
    return not in_flight


class RemoteInventory:
    def __init__(self, client: Client) -> None:
        self.client = client

    def init(self) -> InitView:
        self.client.request("GET", "/readyz")
        return InitView(home=self.client.url, database=f"{self.client.url} (the server's store)")

    def schema(self) -> dict[str, Any]:
        found: dict[str, Any] = self.client.request("GET", f"{API}/schema")
        return found

    def apply(self, caller: Caller, source: Path, *, dry_run: bool, prune: bool, force: bool) -> ApplyView:
        documents = [{"name": str(Path(s.name).absolute()), "content": s.text} for s in read_sources(source)]
        body = {"documents": documents, "dry_run": dry_run, "prune": prune, "force": force}
        return self.client.post(ApplyView, f"{API}/estate:apply", body)

    def environments(
        self, *, project: str | None = None, env_type: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[EnvironmentView]:
        label = [f"{k}={v}" for k, v in (labels or {}).items()] or None
        return self.client.pages(
            EnvironmentView, f"{API}/environments", project=project, env_type=env_type, label=label
        )

    def modules(self) -> list[ModuleView]:
        return self.client.pages(ModuleView, f"{API}/modules")

    def usage(self, module_id: str) -> UsageView:
        return self.client.get(UsageView, f"{API}/modules/{module_id}/usage")

    def publish(
        self, caller: Caller, module_id: str, version: str, source: str, *, inputs_from: str | None = None
    ) -> PublishView:
        local = Path(source)  # the server runs on this machine (loopback): local paths mean the same there
        if "::" not in source and "://" not in source and local.is_dir():
            source = str(local.resolve())
        body = {"version": version, "source": source, "inputs_from": inputs_from}
        return self.client.post(PublishView, f"{API}/modules/{module_id}/versions", body)

    def set_lifecycle(
        self, caller: Caller, module_id: str, version: str, lifecycle: str, reason: str
    ) -> ModuleVersionView:
        verb = {"deprecated": "deprecate", "defective": "mark-defective", "published": "restore"}.get(lifecycle)
        if verb is None:
            raise InputError(f"'{lifecycle}' is not a lifecycle: published, deprecated, defective")
        path = f"{API}/modules/{module_id}/versions/{version}/{verb}"
        return self.client.post(ModuleVersionView, path, {"reason": reason})

    def plans(self) -> list[PlanSummaryView]:
        return self.client.pages(PlanSummaryView, f"{API}/plans")

    def plan(self, plan_id: str) -> PlanView:
        return self.client.get(PlanView, f"{API}/plans/{plan_id}")


class RemoteDeployments:
    def __init__(self, client: Client) -> None:
        self.client = client

    def deploy(
        self, caller: Caller, refs: Sequence[EnvRef], *, plan_only: bool = False, progress: Progress | None = None
    ) -> BatchView:
        body = {"envs": [str(r) for r in refs], "plan_only": plan_only}
        return self.client.job(BatchView, f"{API}/deployments", body, progress)

    def rollback(self, caller: Caller, ref: EnvRef, to: int) -> BatchView:
        path = f"{API}/environments/{ref.project}/{ref.env}:rollback"
        return self.client.job(BatchView, path, {"to": to}, None)

    def drift(
        self,
        caller: Caller,
        refs: Sequence[EnvRef] | None,
        *,
        fail_on_drift: bool = False,
        progress: Progress | None = None,
    ) -> DriftReport:
        body = {"envs": None if refs is None else [str(r) for r in refs], "fail_on_drift": fail_on_drift}
        return self.client.job(DriftReport, f"{API}/deployments:drift", body, progress)

    def list(
        self, ref: EnvRef | None = None, *, limit: int = 50, before: int | None = None
    ) -> builtins.list[DeploymentSummaryView]:
        page = self.client.request(
            "GET",
            f"{API}/deployments",
            params={"env": str(ref) if ref else None, "limit": limit, "after": before},
        )
        return TypeAdapter(builtins.list[DeploymentSummaryView]).validate_python(page["items"])

    def show(self, deployment_id: int) -> DeploymentView:
        return self.client.get(DeploymentView, f"{API}/deployments/{deployment_id}")

    def log(self, deployment_id: int, after: int = -1) -> LogChunk:
        return self.client.get(LogChunk, f"{API}/deployments/{deployment_id}/logs", after=after)


class RemoteRollouts:
    def __init__(self, client: Client) -> None:
        self.client = client

    def status(self, rollout_id: str, *, history: int = 20, query: EnvQuery | None = None) -> RolloutView:
        q = query or EnvQuery()
        params = {
            "wave": None if q.wave is None else str(q.wave),
            "state": q.state,
            "limit": q.limit,
            "after": q.after,
            "summary": q.summary or None,
        }
        return self.client.get(RolloutView, f"{API}/rollouts/{rollout_id}", **params)

    def list(self, *, module: str | None = None, phase: str | None = None) -> builtins.list[RolloutSummaryView]:
        return self.client.pages(RolloutSummaryView, f"{API}/rollouts", module=module, phase=phase)

    def preview(
        self,
        caller: Caller,
        module: str,
        version: str,
        plan_id: str,
        *,
        preflight: bool = True,
        progress: Progress | None = None,
    ) -> PreviewView:
        body = {"module": module, "version": version, "plan": plan_id, "preflight": preflight}
        return self.client.job(PreviewView, f"{API}/rollouts:preview", body, progress)

    def start(
        self,
        caller: Caller,
        module: str,
        version: str,
        plan_id: str,
        *,
        allow_uncovered: bool = False,
        allow_destroy: bool = False,
        preflight: bool = True,
        progress: Progress | None = None,
        follow: bool = True,
    ) -> StartView:
        body = {
            "module": module,
            "version": version,
            "plan": plan_id,
            "preflight": preflight,
            "allow_uncovered": allow_uncovered,
            "allow_destroy": allow_destroy,
        }
        started = self.client.job(StartView, f"{API}/rollouts", body, progress)
        if follow:
            self.drive(started.id)
        return started

    def promote(self, caller: Caller, rollout_id: str, *, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, "promote", None, follow)

    def approve(self, caller: Caller, rollout_id: str, *, override: bool = False, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, "approve", {"override": override}, follow)

    def pause(self, caller: Caller, rollout_id: str, *, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, "pause", None, follow)

    def resume(self, caller: Caller, rollout_id: str, *, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, "resume", None, follow)

    def abort(self, caller: Caller, rollout_id: str, *, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, "abort", None, follow)

    def rollback(self, caller: Caller, rollout_id: str, *, wave: str | None = None, follow: bool = True) -> RolloutView:
        return self._command(caller, rollout_id, "rollback", {"wave": wave}, follow)

    def rerun(
        self,
        caller: Caller,
        rollout_id: str,
        *,
        wave: str | None = None,
        only_failed: bool = False,
        follow: bool = True,
    ) -> RolloutView:
        return self._command(caller, rollout_id, "rerun", {"wave": wave, "only_failed": only_failed}, follow)

    def retarget(
        self,
        caller: Caller,
        rollout_id: str,
        version: str,
        *,
        allow_destroy: bool = False,
        preflight: bool = True,
        progress: Progress | None = None,
        follow: bool = True,
    ) -> tuple[RolloutView, builtins.list[str]]:
        body = {"version": version, "allow_destroy": allow_destroy, "preflight": preflight}
        done = self.client.job(RetargetView, f"{API}/rollouts/{rollout_id}/retarget", body, progress)
        if follow:
            self.drive(rollout_id)
            return self.status(rollout_id), done.warnings
        return done.rollout, done.warnings

    def _command(
        self, caller: Caller, rollout_id: str, name: str, body: Mapping[str, Any] | None, follow: bool
    ) -> RolloutView:
        view = self.client.post(RolloutView, f"{API}/rollouts/{rollout_id}/{name}", body)
        if not follow:
            return view
        self.drive(rollout_id)
        return self.status(rollout_id)

    def drive(self, rollout_id: str) -> None:
        """Wait until the rollout needs a human or is over (the server's engine drives it), following its
        events; the stream is open before the first look, so no change can slip between the two."""
        summary = EnvQuery(summary=True)
        for _event in self.client.events(rollout=rollout_id):
            if settled(self.status(rollout_id, query=summary)):
                return

    def run_engine(self, rollouts: builtins.list[str] | None = None, *, once: bool = False) -> dict[str, str]:
        raise InputError(
            "the server's engine drives every rollout; `estate engine run` is for the embedded mode",
            hint="unset ESTATE_URL to drive rollouts of the local store",
        )


class RemoteFreezes:
    def __init__(self, client: Client) -> None:
        self.client = client

    def freeze(
        self, caller: Caller, *, reason: str, env_type: str | None = None, until: datetime | None = None
    ) -> FreezeView:
        body = {"reason": reason, "env_type": env_type, "until": until.isoformat() if until else None}
        return self.client.post(FreezeView, f"{API}/freezes", body)

    def unfreeze(
        self, caller: Caller, *, env_type: str | None = None, freeze_id: int | None = None
    ) -> list[FreezeView]:
        lifted = self.client.request("POST", f"{API}/freezes:lift", body={"env_type": env_type, "id": freeze_id})
        return TypeAdapter(list[FreezeView]).validate_python(lifted)

    def list(self) -> list[FreezeView]:
        return TypeAdapter(list[FreezeView]).validate_python(self.client.request("GET", f"{API}/freezes"))


class RemoteIdentity:
    def __init__(self, client: Client) -> None:
        self.client = client

    def whoami(self, caller: Caller) -> WhoAmIView:
        return self.client.get(WhoAmIView, f"{API}/whoami")

    def create_token(
        self,
        caller: Caller,
        user: str,
        *,
        groups: Sequence[str] = (),
        expires_in: timedelta | None = None,
        description: str = "",
    ) -> IssuedTokenView:
        seconds = int(expires_in.total_seconds()) if expires_in else None
        body = {"user": user, "groups": list(groups), "expires_in_seconds": seconds, "description": description}
        return self.client.post(IssuedTokenView, f"{API}/tokens", body)

    def list_tokens(self, caller: Caller) -> list[TokenView]:
        return TypeAdapter(list[TokenView]).validate_python(self.client.request("GET", f"{API}/tokens"))

    def revoke_token(self, caller: Caller, token_id: str) -> TokenView:
        return self.client.post(TokenView, f"{API}/tokens/{token_id}/revoke")


class RemoteAudit:
    def __init__(self, client: Client) -> None:
        self.client = client

    def entries(self, wanted: AuditFilter) -> list[AuditEntryView]:
        targets = dict(t.split(":", 1) for t in wanted.targets)
        page = self.client.request(
            "GET",
            f"{API}/audit",
            params={
                "subject": wanted.actor,
                "rollout": targets.get("rollout"),
                "env": targets.get("env"),
                "since": wanted.since.isoformat() if wanted.since else None,
                "until": wanted.until.isoformat() if wanted.until else None,
                "outcome": wanted.outcome,
                "limit": wanted.limit,
                "after": wanted.before_id,
            },
        )
        return TypeAdapter(list[AuditEntryView]).validate_python(page["items"])


class RemoteFeed:
    def __init__(self, client: Client) -> None:
        self.client = client

    def follow(self, *, rollout: str | None = None, after: int | None = None) -> Iterator[list[EventView]]:
        """Batches of new events (the server's event stream); an empty batch on each keep-alive."""
        for event in self.client.events(rollout=rollout):
            yield [] if event is None else [event]


class RemoteApp:
    """`estate.app.App`'s use cases, served by `estate server` at `url`."""

    def __init__(self, url: str, token: str | None, environ: Mapping[str, str]) -> None:
        self.settings = Settings.from_environ(environ)
        self.client = Client(url, token)
        self.inventory = RemoteInventory(self.client)
        self.deployments = RemoteDeployments(self.client)
        self.rollouts = RemoteRollouts(self.client)
        self.audit = RemoteAudit(self.client)
        self.identity = RemoteIdentity(self.client)
        self.feed = RemoteFeed(self.client)
        self.freezes = RemoteFreezes(self.client)

    def close(self) -> None:
        self.client.close()
