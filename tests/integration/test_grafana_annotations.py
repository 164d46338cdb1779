"""Grafana annotations, checked against a local HTTP server that plays Grafana's annotations API.

No Grafana server can be installed in CI, so the stand-in asserts the request exactly as Grafana's
HTTP API documents "Create Annotation": `POST /api/annotations`, `Authorization: Bearer <token>`,
`Content-Type: application/json`, and a JSON body with `time`/`timeEnd` as epoch milliseconds
(integers), `tags` as a list of strings and `text` (the one required field); without `dashboardUID`
and `panelId` it is an organization annotation that any dashboard can query by tag. It answers
`{"message": "Annotation added", "id": 1}` as the documentation shows.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from estate.gates.grafana import DEFAULT_TIMEOUT, GrafanaAnnotator

WAVE_START, WAVE_END = 1_740_830_400_000, 1_740_831_300_000


class _Grafana(http.server.BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]
    status: int = 200

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.requests.append({"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)})
        answer = b'{"message":"Annotation added","id":1}' if self.status == 200 else b'{"message":"boom"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(status: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []
    handler = type("Handler", (_Grafana,), {"requests": requests, "status": status})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
        server.shutdown()
        thread.join()


@pytest.fixture
def grafana() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield from _serve(200)


@pytest.fixture
def broken_grafana() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield from _serve(500)


@pytest.fixture
def silent_grafana() -> Iterator[str]:
    """A port that accepts connections (in the kernel backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def annotator(url: str, **kw: Any) -> GrafanaAnnotator:
    settings = {"url": url, "token_env": "GRAFANA_TOKEN"}
    client = GrafanaAnnotator.from_settings(settings, {"GRAFANA_TOKEN": "glsa_token"}, **kw)
    assert client is not None
    return client


def test_a_wave_region_is_posted_exactly_as_grafana_documents_it(grafana: tuple[str, list[dict[str, Any]]]) -> None:
    url, requests = grafana
    ok = annotator(url).annotate(
        "wave ephemeral of rollout r-42: postgres 2.0.0 on 5 environments",
        rollout="r-42",
        wave="ephemeral",
        module="postgres",
        time_ms=WAVE_START,
        time_end_ms=WAVE_END,
    )
    assert ok is True
    (request,) = requests
    assert request["path"] == "/api/annotations"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer glsa_token"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    body = json.loads(request["body"])
    assert set(body) == {"time", "timeEnd", "tags", "text"}
    assert type(body["time"]) is int and body["time"] == WAVE_START
    assert type(body["timeEnd"]) is int and body["timeEnd"] == WAVE_END
    assert body["tags"] == ["estate", "rollout:r-42", "wave:ephemeral", "module:postgres"]
    assert isinstance(body["text"], str) and body["text"].startswith("wave ephemeral")


def test_a_point_annotation_has_no_time_end(grafana: tuple[str, list[dict[str, Any]]]) -> None:
    url, requests = grafana
    assert annotator(url).annotate("started", rollout="r", wave="w", module="m", time_ms=WAVE_START)
    assert set(json.loads(requests[0]["body"])) == {"time", "tags", "text"}


def test_grafana_answering_500_returns_false_and_warns(
    broken_grafana: tuple[str, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    url, requests = broken_grafana
    with caplog.at_level(logging.WARNING, logger="estate.gates.grafana"):
        assert annotator(url).annotate("x", rollout="r", wave="w", module="m", time_ms=WAVE_START) is False
    assert len(requests) == 1
    assert "HTTP 500" in caplog.text
    assert "glsa_token" not in caplog.text


def test_grafana_that_never_answers_times_out_to_false(silent_grafana: str, caplog: pytest.LogCaptureFixture) -> None:
    assert DEFAULT_TIMEOUT == 2.0
    with caplog.at_level(logging.WARNING, logger="estate.gates.grafana"):
        client = annotator(silent_grafana, timeout=0.3)
        assert client.annotate("x", rollout="r", wave="w", module="m", time_ms=WAVE_START) is False
    assert "unreachable" in caplog.text


def test_grafana_refusing_connections_returns_false() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    assert annotator(f"http://127.0.0.1:{port}").annotate("x", rollout="r", wave="w", module="m", time_ms=1) is False


def test_settings_without_url_disable_annotations_and_a_missing_token_sends_nothing(
    grafana: tuple[str, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    url, requests = grafana
    assert GrafanaAnnotator.from_settings({"url": None}, {}) is None
    client = GrafanaAnnotator.from_settings({"url": url, "token_env": "GRAFANA_TOKEN"}, {})
    assert client is not None
    with caplog.at_level(logging.WARNING, logger="estate.gates.grafana"):
        assert client.annotate("x", rollout="r", wave="w", module="m", time_ms=1) is False
    assert "GRAFANA_TOKEN" in caplog.text
    assert requests == []
