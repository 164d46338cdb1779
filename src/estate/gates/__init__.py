"""Gate adapters: Prometheus instant queries and Grafana annotations (the pure logic is in
`estate.domain.gate_eval`)."""

from estate.gates.grafana import GrafanaAnnotator, annotation_body, annotation_tags
from estate.gates.prometheus import (
    InstantQuerier,
    PrometheusClient,
    PrometheusUnreachable,
    parse_response,
    sample,
)

__all__ = [
    "GrafanaAnnotator",
    "InstantQuerier",
    "PrometheusClient",
    "PrometheusUnreachable",
    "annotation_body",
    "annotation_tags",
    "parse_response",
    "sample",
]
