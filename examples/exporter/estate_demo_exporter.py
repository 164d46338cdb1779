#!/usr/bin/env python3
"""A tiny Prometheus exporter for the Estate demo: health metrics derived from what is deployed.

The example Terraform module writes `DIR/<project>/<env>.json` ({module, version, project, env,
env_type}) when it applies. On every scrape this exporter re-reads those files and serves:

    pg_up{project, env, env_type, version}              1 for every deployed environment
    pg_errors_ratio{project, env, env_type, version}    ~0.25 on the broken 2.0.0, ~0.001 otherwise
    pg_restarts_total{project, env, env_type, version}  climbs on 2.0.0 (one restart per 10 s), else 0

Usage: python examples/exporter/estate_demo_exporter.py --port 9464 --status-dir DIR
(`--port 0` picks a free port; the first line on stdout says which.) Standard library only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

BROKEN_VERSIONS = frozenset({"2.0.0"})  # the release in the story whose operator misbehaves
RESTART_EVERY_SECONDS = 10
LABELS = ("project", "env", "env_type", "version")
HELP = {
    "pg_up": ("gauge", "1 when the environment has a deployed postgres module."),
    "pg_errors_ratio": ("gauge", "Share of failing queries (demo: derived from the deployed version)."),
    "pg_restarts_total": ("counter", "Database restarts since the current version was deployed."),
}


def read_status(status_dir: Path) -> list[dict[str, Any]]:
    """Every readable status file, sorted by project and env; broken files are skipped with a note."""
    found = []
    for path in sorted(status_dir.glob("*/*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            doc.setdefault("project", path.parent.name)
            doc.setdefault("env", path.stem)
            doc["_mtime"] = path.stat().st_mtime
            if isinstance(doc.get("version"), str):
                found.append(doc)
        except (OSError, ValueError, AttributeError) as exc:  # a file being rewritten, or not a JSON object
            print(f"skipping {path}: {exc}", file=sys.stderr)
    return found


def _jitter(key: str, spread: float) -> float:
    """A stable pseudo-random offset in [-spread, spread] per environment, so graphs are not flat lines."""
    return (zlib.crc32(key.encode()) % 2001 - 1000) / 1000 * spread


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def samples(status: dict[str, Any], now: float) -> dict[str, float]:
    """The metric values of one environment at `now`."""
    key = f"{status['project']}/{status['env']}"
    broken = status["version"] in BROKEN_VERSIONS
    errors = 0.25 + _jitter(key, 0.02) if broken else 0.001 + _jitter(key, 0.0005)
    restarts = int(max(0.0, now - status["_mtime"]) // RESTART_EVERY_SECONDS) if broken else 0
    return {"pg_up": 1.0, "pg_errors_ratio": round(errors, 6), "pg_restarts_total": float(restarts)}


def exposition(statuses: list[dict[str, Any]], now: float) -> str:
    """Render the text exposition format (version 0.0.4)."""
    values = [(s, samples(s, now)) for s in statuses]
    lines = []
    for metric, (kind, text) in HELP.items():
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}"]
        for status, metric_values in values:
            labels = ",".join(f'{k}="{_escape(status.get(k, ""))}"' for k in LABELS)
            lines.append(f"{metric}{{{labels}}} {metric_values[metric]:g}")
    return "\n".join(lines) + "\n"


def handler_for(status_dir: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "try /metrics")
                return
            body = exposition(read_status(status_dir), time.time()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--status-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(args.status_dir))
    server.daemon_threads = True

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, so it cannot run in this (the serving) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"estate-demo-exporter listening on http://{host}:{port}/metrics", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
