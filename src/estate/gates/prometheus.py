"""The Prometheus gate adapter: send instant queries (`GET /api/v1/query`) and return observations.

Nothing here raises into the engine for a broken Prometheus: transport errors, HTTP errors and bad
answers become `Sample.error`, which the pure evaluator turns into an inconclusive verdict.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from estate.domain.gate_eval import Sample, SamplingRound, plan_queries
from estate.errors import ComponentError

DEFAULT_TIMEOUT = 5.0


class PrometheusUnreachable(ComponentError):
    """Prometheus could not be reached at all (refused, timeout, TLS); later queries would fail too."""


class InstantQuerier(Protocol):
    """The port the sampler needs: run an instant query, get one value per returned series."""

    def query(self, promql: str) -> tuple[float, ...]: ...

    def for_url(self, url: str) -> InstantQuerier: ...


def parse_response(body: bytes) -> tuple[float, ...]:
    """Values of an instant-query answer (vector or scalar); raise ComponentError for anything else."""
    try:
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise ComponentError("prometheus", f"{doc.get('errorType', 'error')}: {doc.get('error', 'no detail')}")
        kind, result = doc["data"]["resultType"], doc["data"]["result"]
        if kind == "vector":
            return tuple(float(series["value"][1]) for series in result)
        if kind == "scalar":
            return (float(result[1]),)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ComponentError("prometheus", f"unexpected answer from the query API: {exc}") from exc
    raise ComponentError(
        "prometheus",
        f"the query returned a {kind}; a gate needs an instant vector or a scalar "
        "(wrap a range selector in a function such as max_over_time(...[5m]))",
    )


def _http_error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read()
    finally:
        exc.close()
    try:
        doc = json.loads(body)
        return f"HTTP {exc.code}: {doc.get('errorType', 'error')}: {doc.get('error', '')}"
    except ValueError:
        return f"HTTP {exc.code} {exc.reason}"


@dataclass(frozen=True)
class PrometheusClient:
    """Instant queries against one Prometheus; a settings problem makes every query fail, clearly."""

    url: str
    headers: Mapping[str, str]
    ssl_context: ssl.SSLContext | None = None
    timeout: float = DEFAULT_TIMEOUT
    tls_problem: str | None = None
    auth_problem: str | None = None

    @classmethod
    def from_settings(
        cls,
        prometheus: Mapping[str, Any],
        environ: Mapping[str, str],
        *,
        url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PrometheusClient:
        """Build from `settings.prometheus`; secrets come from `environ` under the names the settings give."""
        headers = {"Accept": "application/json"}
        auth, auth_problem = _authorization(prometheus, environ)
        if auth:
            headers["Authorization"] = auth
        context, tls_problem = _ssl_context(prometheus.get("ca_file"))
        return cls(url or prometheus.get("url") or "", headers, context, timeout, tls_problem, auth_problem)

    def for_url(self, url: str) -> PrometheusClient:
        """The same client for a gate's own URL; credentials go along only to the same host."""
        if urlsplit(url)[:2] == urlsplit(self.url)[:2]:
            return replace(self, url=url)
        headers = {k: v for k, v in self.headers.items() if k != "Authorization"}
        return replace(self, url=url, headers=headers, auth_problem=None)

    def query(self, promql: str) -> tuple[float, ...]:
        """Run one instant query; raise ComponentError (PrometheusUnreachable for transport failures)."""
        if not self.url:
            where = "settings.prometheus.url, ESTATE_PROMETHEUS_URL or the gate's url"
            raise ComponentError("prometheus", f"no URL: set {where}")
        if self.tls_problem or self.auth_problem:
            raise ComponentError("prometheus", "; ".join(p for p in (self.tls_problem, self.auth_problem) if p))
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}/api/v1/query?{urlencode({'query': promql})}", headers=dict(self.headers)
        )
        try:
            with self._opener().open(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            # Prometheus answers bad queries with 400/422 and a JSON error body worth showing.
            raise ComponentError("prometheus", _http_error_message(exc)) from exc
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise PrometheusUnreachable("prometheus", f"unreachable at {self.url}: {reason}") from exc
        except ValueError as exc:  # urllib's answer to a malformed URL
            raise PrometheusUnreachable("prometheus", f"bad URL {self.url!r}: {exc}") from exc
        return parse_response(body)

    def _opener(self) -> urllib.request.OpenerDirector:
        # No ambient proxies (environment variables are not read deep inside an adapter) and no
        # redirects (urllib would carry the Authorization header to whatever host they point at).
        return urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=self.ssl_context),
            _NoRedirect(),
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _authorization(prometheus: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The Authorization header value, or a problem naming the missing environment variable."""
    token_env = prometheus.get("bearer_token_env")
    user, password_env = prometheus.get("basic_auth_user"), prometheus.get("basic_auth_password_env")
    if token_env:
        token = environ.get(token_env)
        if not token:
            return None, f"environment variable {token_env} (settings.prometheus.bearer_token_env) is not set"
        return f"Bearer {token}", None
    if user or password_env:
        password = environ.get(password_env or "")
        if not user or password is None:
            return None, (
                "basic auth needs settings.prometheus.basic_auth_user and basic_auth_password_env naming a "
                f"set environment variable (got user={user!r}, password env={password_env!r})"
            )
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii"), None
    return None, None


def _ssl_context(ca_file: str | None) -> tuple[ssl.SSLContext | None, str | None]:
    if not ca_file:
        return None, None
    try:
        return ssl.create_default_context(cafile=ca_file), None
    except (OSError, ssl.SSLError) as exc:
        return None, f"settings.prometheus.ca_file {ca_file}: {exc}"


@dataclass(frozen=True)
class PrometheusSampler:
    """Takes one sampling round of a metric gate (the engine's `GateSampler` port): every planned query sent
    once (a gate's `landed` query first), failures returned as samples with an error, never raised."""

    client: InstantQuerier

    def sample(self, round: SamplingRound) -> list[Sample]:
        gate = round.gate
        target = self.client.for_url(gate.url) if gate.url else self.client
        down: str | None = None  # once Prometheus is unreachable, skip the remaining queries of the round
        samples = []
        for planned in plan_queries(round):
            values: tuple[float, ...] = ()
            landed: bool | None = None
            error = planned.error or down
            step = "landed query: "
            try:
                if error is None and planned.landed is not None:
                    landed = bool(target.query(planned.landed))
                step = ""
                if error is None:
                    values = target.query(planned.query)
            except PrometheusUnreachable as exc:
                error = down = exc.message
            except ComponentError as exc:
                error = step + exc.message
            samples.append(Sample(planned.subject, round.round, planned.query, values, error, landed, planned.baseline))
        return samples
