"""Links to a query over a time range in Prometheus' graph page and in Grafana Explore (pure)."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime

# RFC 3986 unreserved characters; everything else is percent-encoded. (urllib is off limits in the
# domain by the import contract, and this is all of it we would use.)
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _quote(text: str) -> str:
    return "".join(c if c in _UNRESERVED else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def _query_string(params: dict[str, str]) -> str:
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params.items())


def _epoch_ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("link times must be timezone-aware")
    return round(t.timestamp() * 1000)


def prometheus_graph_url(base_url: str, query: str, start: datetime, end: datetime) -> str:
    """Prometheus' /graph page showing `query` from `start` to `end` (UTC end time, range in seconds)."""
    seconds = max(1, (_epoch_ms(end) - _epoch_ms(start)) // 1000)
    end_text = end.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    params = {
        "g0.expr": query,
        "g0.tab": "0",  # the graph tab (both the classic and the 3.x UI read "0" as graph)
        "g0.range_input": f"{seconds}s",
        "g0.end_input": end_text,
        "g0.moment_input": end_text,
    }
    return f"{base_url.rstrip('/')}/graph?{_query_string(params)}"


def grafana_explore_url(
    base_url: str,
    query: str,
    start: datetime,
    end: datetime,
    *,
    datasource_uid: str = "prometheus",
    org_id: int = 1,
) -> str:
    """Grafana Explore (schemaVersion 1 panes) running `query` on a Prometheus data source over the range."""
    datasource = {"type": "prometheus", "uid": datasource_uid}
    pane = {
        "datasource": datasource_uid,
        "queries": [{"refId": "A", "expr": query, "datasource": datasource}],
        "range": {"from": str(_epoch_ms(start)), "to": str(_epoch_ms(end))},
    }
    panes = json.dumps({"estate": pane}, separators=(",", ":"), sort_keys=True)
    params = {"schemaVersion": "1", "panes": panes, "orgId": str(org_id)}
    return f"{base_url.rstrip('/')}/explore?{_query_string(params)}"
