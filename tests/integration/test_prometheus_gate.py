"""Prometheus gates against a real Prometheus scraping the demo exporter every second.

The status files the example Terraform module would write are written by hand, so each test
controls exactly which version each environment runs. Sampling rounds are spaced by one second
(the scrape interval) where a test needs Prometheus to see a change between rounds.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from estate.domain.gate_eval import Judgement, Sample, SamplingRound, Verdict, evaluate
from estate.domain.model import Environment
from estate.domain.plans import GateScope, NoData, PrometheusGate
from estate.gates.prometheus import InstantQuerier, PrometheusClient, PrometheusSampler
from estate.testing.services import DemoExporter, PrometheusServer, start_exporter, stop_exporter

ENVS = [
    Environment("checkout", "eph-1", "ephemeral", {"region": "eu"}),
    Environment("checkout", "eph-2", "ephemeral", {"region": "us"}),
    Environment("payments", "eph-1", "ephemeral", {"region": "eu"}),
    Environment("search", "eph-1", "ephemeral", {"region": "us"}),
    Environment("search", "eph-2", "ephemeral", {"region": "eu"}),
]
ERRORS = 'max(pg_errors_ratio{project="{{ env.project }}", env="{{ env.id }}"})'
GATE = PrometheusGate(ERRORS, max=0.05, count=2, interval_seconds=1)


def deploy_all(exporter: DemoExporter, prometheus: PrometheusServer, versions: dict[str, str]) -> None:
    """Put every env of ENVS on a version (default 1.0.0) and wait until Prometheus has scraped it all."""
    for env in ENVS:
        exporter.deploy(env.project, env.id, versions.get(str(env.ref), "1.0.0"), env.type)
    prometheus.wait_until("count(pg_up)", lambda r: bool(r) and r[0]["value"][1] == str(len(ENVS)))


def run_gate(
    gate: PrometheusGate, client: PrometheusClient, envs: list[Environment] = ENVS, *, wave: str = "ephemeral"
) -> tuple[Judgement, list[Sample]]:
    """What the engine does: `count` rounds `interval_seconds` apart, then the pure evaluator."""
    observations: list[Sample] = []
    for i in range(gate.count):
        if i:
            time.sleep(gate.interval_seconds)
        observations += _sample(gate, envs, wave, client, i)
    return evaluate(gate, observations), observations


def client_for(prometheus: PrometheusServer) -> PrometheusClient:
    return PrometheusClient.from_settings({"url": prometheus.url}, {}, timeout=2.0)


@pytest.mark.slow
def test_healthy_envs_pass(demo_exporter: DemoExporter, prometheus: PrometheusServer) -> None:
    deploy_all(demo_exporter, prometheus, {})
    result, _ = run_gate(GATE, client_for(prometheus))
    assert result.verdict == Verdict.PASSED, result.reason
    assert [s.subject for s in result.subjects] == sorted(str(e.ref) for e in ENVS)
    for subject in result.subjects:
        assert subject.query.startswith('max(pg_errors_ratio{project="')
        assert all(0 < v < 0.01 for s in subject.samples for v in s.values)
    up = PrometheusGate('min(pg_up{env=~"{{ wave.envs_regex }}"})', min=1, scope=GateScope.WAVE)
    assert run_gate(up, client_for(prometheus))[0].verdict == Verdict.PASSED


@pytest.mark.slow
def test_an_env_on_the_broken_version_fails_with_its_observed_value(
    demo_exporter: DemoExporter, prometheus: PrometheusServer
) -> None:
    deploy_all(demo_exporter, prometheus, {"search/eph-2": "2.0.0"})
    result, _ = run_gate(GATE, client_for(prometheus))
    assert result.verdict == Verdict.FAILED
    failed = [s for s in result.subjects if s.verdict == Verdict.FAILED]
    assert [s.subject for s in failed] == ["search/eph-2"]
    assert all(0.2 < s.values[0] < 0.3 for s in failed[0].samples)
    assert result.reason.startswith("1 of 5 failed: search/eph-2: 2 of 2 samples failed max 0.05")
    wave_gate = PrometheusGate('max(pg_errors_ratio{env=~"{{ wave.envs_regex }}"})', max=0.05, scope=GateScope.WAVE)
    wave_result, _ = run_gate(wave_gate, client_for(prometheus))
    assert wave_result.verdict == Verdict.FAILED
    assert wave_result.subjects[0].subject == "wave/ephemeral"


@pytest.mark.slow
def test_failure_limit_tolerates_a_flapping_env_among_five(
    demo_exporter: DemoExporter, prometheus: PrometheusServer
) -> None:
    deploy_all(demo_exporter, prometheus, {"payments/eph-1": "2.0.0"})
    client = client_for(prometheus)
    gate = replace(GATE, count=3, failure_limit=1)
    observations = _sample(gate, ENVS, "ephemeral", client, 0)
    demo_exporter.deploy("payments", "eph-1", "2.0.1")  # patched before the next rounds
    prometheus.wait_until(
        'pg_errors_ratio{project="payments", env="eph-1"}',
        lambda r: [s["metric"]["version"] for s in r] == ["2.0.1"],
    )
    for i in (1, 2):
        observations += _sample(gate, ENVS, "ephemeral", client, i)
    tolerated = evaluate(gate, observations)
    assert tolerated.verdict == Verdict.PASSED, tolerated.reason
    flapping = next(s for s in tolerated.subjects if s.subject == "payments/eph-1")
    assert flapping.failures == 1 and "(1 failed, failure_limit 1)" in flapping.reason
    strict = evaluate(replace(gate, failure_limit=0), observations)
    assert strict.verdict == Verdict.FAILED
    assert strict.reason.startswith("1 of 5 failed: payments/eph-1: 1 of 3 samples failed")


@pytest.mark.slow
def test_prometheus_down_is_inconclusive_never_passed(
    demo_exporter: DemoExporter, prometheus: PrometheusServer
) -> None:
    deploy_all(demo_exporter, prometheus, {})
    client = client_for(prometheus)
    observations = _sample(GATE, ENVS, "ephemeral", client, 0)
    prometheus.stop()
    observations += _sample(GATE, ENVS, "ephemeral", client, 1)
    result = evaluate(GATE, observations)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert all(s.verdict == Verdict.INCONCLUSIVE for s in result.subjects)
    assert "unreachable" in result.subjects[0].reason
    # even a gate that tolerates every failure cannot pass on no evidence
    lenient = replace(GATE, count=1, failure_limit=5, no_data=NoData.PASS)
    assert evaluate(lenient, _sample(lenient, ENVS, "ephemeral", client, 0)).verdict == (Verdict.INCONCLUSIVE)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("policy", "verdict"),
    [(NoData.INCONCLUSIVE, Verdict.INCONCLUSIVE), (NoData.FAIL, Verdict.FAILED), (NoData.PASS, Verdict.PASSED)],
)
def test_no_data_policies(
    demo_exporter: DemoExporter, prometheus: PrometheusServer, policy: NoData, verdict: Verdict
) -> None:
    deployed, never_deployed = ENVS[0], Environment("checkout", "eph-9", "ephemeral")
    demo_exporter.deploy(deployed.project, deployed.id, "1.0.0")
    prometheus.wait_for_metric("pg_errors_ratio", project="checkout", env="eph-1")
    gate = replace(GATE, count=1, no_data=policy)
    result, _ = run_gate(gate, client_for(prometheus), [deployed, never_deployed])
    assert result.verdict == verdict, result.reason
    missing = next(s for s in result.subjects if s.subject == "checkout/eph-9")
    assert missing.samples[0].status == "no_data"


@pytest.mark.slow
def test_bad_queries_and_hostile_labels_never_pass(demo_exporter: DemoExporter, prometheus: PrometheusServer) -> None:
    deploy_all(demo_exporter, prometheus, {})
    client = client_for(prometheus)
    broken = replace(GATE, query='max(pg_errors_ratio{env="{{ env.id }}"}', count=1)
    result, _ = run_gate(broken, client, ENVS[:1])
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "HTTP 400: bad_data" in result.reason
    range_vector = replace(GATE, query='pg_errors_ratio{env="{{ env.id }}"}[1m]', count=1)
    assert "returned a matrix" in run_gate(range_vector, client, ENVS[:1])[0].reason
    # A label trying to escape its string literal stays a (non-matching) label value: real Prometheus
    # parses the query and finds no data, instead of running `or vector(0)`.
    hostile = Environment("checkout", "eph-1", "ephemeral", {"region": 'eu"} or vector(0) #\n\\'})
    gate = replace(GATE, query='max(pg_errors_ratio{region="{{ env.labels.region }}"})', count=1)
    result, observations = run_gate(gate, client, [hostile])
    assert observations[0].error is None and observations[0].values == ()
    assert result.verdict == Verdict.INCONCLUSIVE


# --- the client's auth and TLS settings, against a local stand-in for Prometheus' query API ---------

ANSWER = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}}'


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "headers": dict(self.headers)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_prometheus() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
        server.shutdown()
        thread.join()


def test_bearer_token_comes_from_the_env_var_named_in_settings(
    fake_prometheus: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = fake_prometheus
    client = PrometheusClient.from_settings({"url": url, "bearer_token_env": "PROM_TOKEN"}, {"PROM_TOKEN": "s3cret"})
    assert client.query('up{job="x"}') == (0.5,)
    assert seen[0]["headers"]["Authorization"] == "Bearer s3cret"
    assert seen[0]["path"] == "/api/v1/query?query=up%7Bjob%3D%22x%22%7D"


def test_basic_auth_and_a_missing_secret(fake_prometheus: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = fake_prometheus
    settings = {"url": url, "basic_auth_user": "estate", "basic_auth_password_env": "PROM_PASSWORD"}
    assert PrometheusClient.from_settings(settings, {"PROM_PASSWORD": "pw"}).query("up") == (0.5,)
    assert seen[0]["headers"]["Authorization"] == "Basic ZXN0YXRlOnB3"  # base64("estate:pw")
    gate = PrometheusGate('x{env="{{ env.id }}"}', max=1)
    (obs,) = _sample(gate, ENVS[:1], "w", PrometheusClient.from_settings(settings, {}), 0)
    assert obs.error is not None and "PROM_PASSWORD" in obs.error
    assert len(seen) == 1  # nothing was sent without the secret


def test_credentials_do_not_follow_a_gate_url_to_another_host(
    fake_prometheus: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = fake_prometheus
    client = PrometheusClient.from_settings({"url": "http://prom.example:9090", "bearer_token_env": "T"}, {"T": "x"})
    gate = PrometheusGate('x{env="{{ env.id }}"}', max=1, url=url)
    (obs,) = _sample(gate, ENVS[:1], "w", client, 0)
    assert obs.values == (0.5,)
    assert "Authorization" not in seen[0]["headers"]


def test_no_url_is_an_observation_error() -> None:
    nowhere = PrometheusClient.from_settings({}, {})
    (obs,) = _sample(PrometheusGate('x{env="{{ env.id }}"}', max=1), ENVS[:1], "w", nowhere, 0)
    assert obs.error is not None and "no URL" in obs.error


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_custom_ca_file(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            url = f"https://127.0.0.1:{server.server_address[1]}"
            assert PrometheusClient.from_settings({"url": url, "ca_file": str(cert_file)}, {}).query("up") == (0.5,)
            (obs,) = _sample(GATE, ENVS[:1], "w", PrometheusClient.from_settings({"url": url}, {}), 0)
            assert obs.error is not None and "CERTIFICATE_VERIFY_FAILED" in obs.error
        finally:
            server.shutdown()
            thread.join()
    bad = PrometheusClient.from_settings({"url": "https://x", "ca_file": str(tmp_path / "nope.pem")}, {})
    (obs,) = _sample(GATE, ENVS[:1], "w", bad, 0)
    assert obs.error is not None and "ca_file" in obs.error


@pytest.mark.slow
def test_the_demo_exporter_serves_what_is_deployed_and_stops_on_sigterm(tmp_path: Path) -> None:
    process, port = start_exporter(tmp_path)
    try:
        exporter = DemoExporter(process, port, tmp_path)
        broken = exporter.deploy("checkout", "eph-1", "2.0.0")
        exporter.deploy("checkout", "prod", "1.0.0", env_type="production")
        (tmp_path / "checkout" / "junk.json").write_text("{not json")
        deployed_at = time.time() - 25
        os.utime(broken, (deployed_at, deployed_at))
        metrics = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in exporter.scrape().splitlines()
            if not line.startswith("#")
        }
        bad = 'project="checkout",env="eph-1",env_type="ephemeral",version="2.0.0"'
        good = 'project="checkout",env="prod",env_type="production",version="1.0.0"'
        assert 0.23 <= metrics[f"pg_errors_ratio{{{bad}}}"] <= 0.27
        assert metrics[f"pg_errors_ratio{{{good}}}"] < 0.002
        assert metrics[f"pg_restarts_total{{{bad}}}"] == 2  # one restart per 10 s since the apply
        assert metrics[f"pg_restarts_total{{{good}}}"] == 0
        assert metrics[f"pg_up{{{good}}}"] == 1
        assert len(metrics) == 6  # the broken file is skipped
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        stop_exporter(process)


def _sample(
    gate: PrometheusGate, envs: list[Environment], wave: str, client: InstantQuerier, round: int
) -> list[Sample]:
    return PrometheusSampler(client).sample(SamplingRound(gate, wave, round, envs))
