"""Grafana annotations (`POST /api/annotations`), so dashboards show when each wave happened.

Best effort by design: a Grafana outage (HTTP error, timeout, refused connection) must never hold a
rollout up, so `annotate` logs a warning and returns False instead of raising.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


def annotation_tags(rollout: str, wave: str, module: str, extra: Sequence[str] = ()) -> list[str]:
    """The tags every Estate annotation carries; dashboards filter on `estate`."""
    return ["estate", f"rollout:{rollout}", f"wave:{wave}", f"module:{module}", *extra]


def annotation_body(text: str, tags: Sequence[str], time_ms: int, time_end_ms: int | None = None) -> dict[str, Any]:
    """The JSON body Grafana's Create Annotation API documents (epoch milliseconds; timeEnd for a region)."""
    body: dict[str, Any] = {"time": time_ms, "tags": list(tags), "text": text}
    if time_end_ms is not None:
        body["timeEnd"] = time_end_ms
    return body


@dataclass(frozen=True)
class GrafanaAnnotator:
    """Posts organization annotations (no dashboard or panel id: every dashboard can query them by tag)."""

    url: str
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    problem: str | None = None

    @classmethod
    def from_settings(
        cls, grafana: Mapping[str, Any], environ: Mapping[str, str], *, timeout: float = DEFAULT_TIMEOUT
    ) -> GrafanaAnnotator | None:
        """Build from `settings.grafana`; None when no URL is set (annotations are then off)."""
        url = grafana.get("url")
        if not url:
            return None
        token_env = grafana.get("token_env")
        token = environ.get(token_env) if token_env else None
        if token_env and not token:
            return cls(url, None, timeout, f"environment variable {token_env} (settings.grafana.token_env) is not set")
        return cls(url, token, timeout)

    def annotate(
        self,
        text: str,
        *,
        rollout: str,
        wave: str,
        module: str,
        time_ms: int,
        time_end_ms: int | None = None,
        extra_tags: Sequence[str] = (),
    ) -> bool:
        """Create one annotation; True when Grafana accepted it, False (and a warning) otherwise."""
        if self.problem:
            log.warning("grafana annotation skipped: %s", self.problem)
            return False
        tags = annotation_tags(rollout, wave, module, extra_tags)
        return self.post(annotation_body(text, tags, time_ms, time_end_ms))

    def post(self, body: Mapping[str, Any]) -> bool:
        """Send a prepared annotation body; never raises for a Grafana outage."""
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}/api/annotations", data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            log.warning("grafana annotation failed: %s answered HTTP %s %s", self.url, exc.code, exc.reason)
            return False
        except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: a malformed URL
            log.warning("grafana annotation failed: %s unreachable: %s", self.url, getattr(exc, "reason", exc))
            return False
        return True
