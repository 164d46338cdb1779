"""Gate adapters: Prometheus instant queries and Grafana annotations (the pure logic is in
`estate.domain.gate_eval`)."""

from estate.gates.grafana import GrafanaAnnotator, annotation_body, annotation_tags
from estate.gates.prometheus import (
    InstantQuerier,
    PrometheusClient,
    PrometheusSampler,
    PrometheusUnreachable,
    parse_response,
)

__all__ = [
    "GrafanaAnnotator",
    "InstantQuerier",
    "PrometheusClient",
    "PrometheusSampler",
    "PrometheusUnreachable",
    "annotation_body",
    "annotation_tags",
    "parse_response",
]
