"""Real services for tests and the demo: the Prometheus server (Debian package `prometheus`), Alertmanager
(`prometheus-alertmanager`) and the demo metrics exporter (examples/exporter), on free loopback ports, stopped
by their PIDs."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import urlencode

EXPORTER = Path(__file__).resolve().parents[3] / "examples" / "exporter" / "estate_demo_exporter.py"
DEFAULT_BINARY = "/usr/bin/prometheus"
ALERTMANAGER_BINARY = "/usr/bin/prometheus-alertmanager"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

Vector = list[dict[str, Any]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, b""


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM by PID, then SIGKILL if it does not exit in time; always reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@dataclass
class DemoExporter:
    """The running demo exporter; `deploy`/`undeploy` write what the example Terraform module would."""

    process: subprocess.Popen[str]
    port: int
    status_dir: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def deploy(
        self, project: str, env: str, version: str, env_type: str = "ephemeral", module: str = "postgres"
    ) -> Path:
        path = self.status_dir / project / f"{env}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"module": module, "version": version, "project": project, "env": env, "env_type": env_type}
        tmp = path.with_suffix(".tmp")  # write then rename, so a scrape never reads half a file
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(path)
        return path

    def undeploy(self, project: str, env: str) -> None:
        (self.status_dir / project / f"{env}.json").unlink(missing_ok=True)

    def scrape(self) -> str:
        return http_get(self.url)[1].decode()


class _Daemon:
    """What Prometheus and Alertmanager share: a process on a free loopback port (chosen again when it is taken
    before the process binds it), ready when `/-/ready` answers 200, its output in `<workdir>/<name>.log`,
    stopped by its PID."""

    name: ClassVar[str]
    workdir: Path
    port: int
    process: subprocess.Popen[bytes] | None
    log: IO[bytes] | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _launch(self, command: Callable[[], list[str]], before: Callable[[], None] = lambda: None) -> None:
        for _attempt in range(3):
            before()
            self.port = free_port()
            self.log = (self.workdir / f"{self.name}.log").open("ab")
            self.process = subprocess.Popen(
                command(), stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT
            )
            if _ready(f"{self.url}/-/ready", self.process):
                return
            self.stop()
        raise RuntimeError(f"{self.name} did not become ready; its log:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); safe to call twice."""
        if self.process is not None:
            stop_process(self.process)
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@dataclass
class PrometheusServer(_Daemon):
    """A Prometheus server started for one test; stop it to simulate an outage."""

    name: ClassVar[str] = "prometheus"

    binary: str
    workdir: Path
    targets: Sequence[str]
    bearer_targets: Mapping[str, str] = field(default_factory=dict)  # target -> token (e.g. Estate's /metrics)
    rules: str = ""  # a rule file (YAML) to evaluate every second
    alertmanagers: Sequence[str] = ()  # host:port of the Alertmanagers its alerts go to
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> PrometheusServer:
        config = self.workdir / "prometheus.yml"
        targets = json.dumps(list(self.targets))
        jobs = f"  - job_name: estate-test\n    static_configs: [{{targets: {targets}}}]\n"
        for n, (target, token) in enumerate(self.bearer_targets.items()):
            jobs += (
                f"  - job_name: estate-test-{n}\n    authorization: {{credentials: {json.dumps(token)}}}\n"
                f"    static_configs: [{{targets: [{json.dumps(target)}]}}]\n"
            )
        extra = ""
        if self.rules:
            (self.workdir / "rules.yml").write_text(self.rules, encoding="utf-8")
            extra += "rule_files: [rules.yml]\n"
        if self.alertmanagers:
            alerting = {"alertmanagers": [{"static_configs": [{"targets": list(self.alertmanagers)}]}]}
            extra += f"alerting: {json.dumps(alerting)}\n"
        config.write_text(
            f"global: {{scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 1s}}\n{extra}"
            f"scrape_configs:\n{jobs}",
            encoding="utf-8",
        )
        # A fresh TSDB: samples kept from a previous run would linger without staleness markers.
        self._launch(lambda: self._command(config), lambda: shutil.rmtree(self.workdir / "data", ignore_errors=True))
        return self

    def _command(self, config: Path) -> list[str]:
        return [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url=http://127.0.0.1:{self.port}/",
            "--rules.alert.resend-delay=1s",  # a dropped notification is sent again within a second
            "--log.level=warn",
        ]

    def query(self, promql: str) -> Vector:
        """The instant vector `promql` returns now ([] on no data)."""
        status, body = http_get(f"{self.url}/api/v1/query?{urlencode({'query': promql})}")
        if status != 200:
            raise AssertionError(f"query {promql!r} answered HTTP {status}")
        return list(json.loads(body)["data"]["result"])

    def wait_until(self, promql: str, predicate: Callable[[Vector], bool], timeout: float = 30.0) -> Vector:
        """Poll `promql` until `predicate(result)` holds; fail the test with the last result otherwise."""
        deadline = time.monotonic() + timeout
        result: Vector = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if predicate(result):
                return result
            time.sleep(0.2)
        raise TimeoutError(f"timed out after {timeout}s waiting on {promql!r}; last result: {result}")

    def wait_for_alertmanagers(self, timeout: float = 30.0) -> None:
        """Prometheus learns its Alertmanagers by service discovery, throttled to once in 5 s: alerts that fire
        before that are dropped. Wait until it knows them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = http_get(f"{self.url}/api/v1/alertmanagers")
            if status == 200 and json.loads(body)["data"]["activeAlertmanagers"]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"Prometheus did not discover its Alertmanagers in {timeout}s")

    def wait_for_metric(self, metric: str, timeout: float = 30.0, **labels: str) -> Vector:
        """Wait until Prometheus holds at least one sample of `metric` with these label values."""
        matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return self.wait_until(f"{metric}{{{matchers}}}", bool, timeout)


@dataclass
class AlertmanagerServer(_Daemon):
    """Alertmanager routing every alert to one webhook at once (group_wait 0s), clustering off."""

    name: ClassVar[str] = "alertmanager"
    binary: str
    workdir: Path
    webhook: str  # the receiver's URL
    http_config: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"authorization": {"credentials": T}}
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> AlertmanagerServer:
        receiver: dict[str, Any] = {"url": self.webhook, "send_resolved": True}
        if self.http_config:
            receiver["http_config"] = dict(self.http_config)
        config = {
            "route": {
                "receiver": "estate",
                "group_by": ["alertname", "project", "env"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "estate", "webhook_configs": [receiver]}],
        }
        path = self.workdir / "alertmanager.yml"
        path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
        self._launch(
            lambda: [
                self.binary,
                f"--config.file={path}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.external-url=http://127.0.0.1:{self.port}/",
                "--cluster.listen-address=",  # no gossip, no second port
                "--log.level=warn",
            ]
        )
        return self


def _ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if http_get(url, timeout=1.0)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def start_exporter(status_dir: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, str(EXPORTER), "--port", "0", "--status-dir", str(status_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "estate-demo-exporter listening on http://127.0.0.1:PORT/metrics"
    if "listening on" not in line:
        stop_exporter(process)
        raise RuntimeError(f"the demo exporter did not start: {line!r}")
    return process, int(line.rsplit(":", 1)[1].split("/")[0])


def stop_exporter(process: subprocess.Popen[str]) -> None:
    stop_process(process)
    if process.stdout is not None:
        process.stdout.close()


def prometheus_binary_path() -> str | None:
    """The Prometheus server binary, or None when it is not installed."""
    found = shutil.which("prometheus") or "/usr/bin/prometheus"
    return found if Path(found).is_file() else None


def alertmanager_binary_path() -> str | None:
    """The Alertmanager binary (Debian names it prometheus-alertmanager), or None when it is not installed."""
    found = shutil.which("prometheus-alertmanager") or ALERTMANAGER_BINARY
    return found if Path(found).is_file() else None
