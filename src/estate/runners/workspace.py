"""One environment's Terraform working directory: render, init (skipped when nothing changed), plan, apply.

`plan` saves its plan where the runner keeps saved plans (one file per plan deployment, outside the work
directory, so a later plan of the same environment does not overwrite it); `apply` applies such a file, or
plans and applies in one process (`-auto-approve`), whose `planned_change` events record the plan it applied.

Every command runs with the runner's own environment: the passed-through variables (PATH, HOME,
TF_CLI_CONFIG_FILE for a `filesystem_mirror`, ...), the shared plugin cache, no checkpoint calls,
and ESTATE_HOME (modules write demo status files under it). Output lines go to `sink` as events.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from estate.domain.graph import ResolvedGraph
from estate.runners import render
from estate.runners.config import RunnerConfig
from estate.runners.events import Raw, TerraformEvent, parse_line, step_event
from estate.runners.module_outputs import module_outputs
from estate.runners.process import CancelToken, ProcessResult, run_process
from estate.runners.toolchain import Toolchain

Sink = Callable[[TerraformEvent, Raw], None]
INIT_MARKER = ".estate-init"
LOCK_FILE = ".terraform.lock.hcl"


class Workspace:
    """Render and run Terraform for one environment's graph."""

    def __init__(self, config: RunnerConfig, toolchain: Toolchain, graph: ResolvedGraph) -> None:
        self.config = config
        self.toolchain = toolchain
        self.graph = graph
        self.dir = config.work_dir(graph.env)
        self.state_dir = config.state_dir(graph.env)

    def environ(self) -> dict[str, str]:
        return {
            **self.config.environ,
            "TF_PLUGIN_CACHE_DIR": str(self.config.plugin_cache),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            "ESTATE_HOME": str(self.config.home),
        }

    def render(self) -> None:
        """Write `main.tf.json` and `terraform.tfvars.json` (owner-only: inputs may be secret)."""
        for path in (self.dir, self.state_dir, self.config.plugin_cache):
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        backend = render.backend_block(self.config.backend, self.graph.env, self.state_dir / "terraform.tfstate")
        main, tfvars = render.root_module(self.graph, backend)
        render.write_json(self.dir / render.MAIN, main)
        render.write_json(self.dir / render.TFVARS, tfvars)

    def init_needed(self) -> bool:
        marker = self.dir / INIT_MARKER
        return not (self.dir / ".terraform").is_dir() or not marker.exists() or marker.read_text() != self._hash()

    def _hash(self) -> str:
        # What init depends on: the rendered sources/backend, the provider lock file, the binary.
        digest = hashlib.sha256(str(self.toolchain).encode())
        for name in (render.MAIN, LOCK_FILE):
            path = self.dir / name
            digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"") + b"\0")
        return digest.hexdigest()

    def init(self, sink: Sink, deadline: float, cancel: CancelToken) -> ProcessResult | None:
        """`terraform init` unless the marker says it is current; None when skipped."""
        if not self.init_needed():
            sink(*step_event("init skipped: sources, backend and lock file unchanged"))
            return None
        (self.dir / INIT_MARKER).unlink(missing_ok=True)
        (self.dir / render.OUTPUTS).unlink(missing_ok=True)  # may name outputs of the old modules
        with self._cold_cache_lock():
            result = self._run(["init", "-input=false", "-no-color", "-reconfigure"], sink, deadline, cancel)
        if result.returncode == 0:
            (self.dir / INIT_MARKER).write_text(self._hash())
        return result

    @contextmanager
    def _cold_cache_lock(self) -> Iterator[None]:
        # Terraform's plugin cache is not safe for concurrent first installs: the first init fills
        # it alone; once warm, inits only link from it and run in parallel.
        warm = self.config.plugin_cache / ".estate-warm"
        if warm.exists():
            yield
            return
        with open(self.config.plugin_cache / ".estate-init.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            if warm.exists():  # filled while we waited: no need to hold others up
                fcntl.flock(handle, fcntl.LOCK_UN)
                yield
                return
            try:
                yield
            finally:
                if any(p.is_dir() for p in self.config.plugin_cache.iterdir()):
                    warm.touch()
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_outputs(self) -> list[str]:
        """Declare one root output per child-module output (modules are on disk after init).

        Returns the references to outputs that no module declares, so they fail before `plan`.
        """
        found = module_outputs(self.dir)
        render.write_json(self.dir / render.OUTPUTS, render.root_outputs(self.graph, found))
        return render.unknown_references(self.graph, found)

    def plan(self, out: Path, sink: Sink, deadline: float, cancel: CancelToken) -> ProcessResult:
        """`plan -json -detailed-exitcode -out=OUT`: exit 0 no changes, 2 changes, 1 error."""
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        args = ["plan", "-json", "-input=false", "-detailed-exitcode", f"-out={out}", *self._lock_timeout()]
        return self._run(args, sink, deadline, cancel)

    def apply(self, sink: Sink, deadline: float, cancel: CancelToken, saved: Path | None = None) -> ProcessResult:
        """`apply -json` of the `saved` plan, or (none given) of the plan it makes itself, without asking."""
        plan = [str(saved)] if saved is not None else ["-auto-approve"]
        return self._run(["apply", "-json", "-input=false", *self._lock_timeout(), *plan], sink, deadline, cancel)

    def _lock_timeout(self) -> list[str]:
        seconds = self.config.lock_timeout_seconds
        return [f"-lock-timeout={seconds:g}s"] if seconds > 0 else []

    def _run(self, args: Sequence[str], sink: Sink, deadline: float, cancel: CancelToken) -> ProcessResult:
        sink(*step_event(f"{self.toolchain.product} {' '.join(args)}"))
        result = run_process(
            [str(self.toolchain.path), *args],
            cwd=self.dir,
            env=self.environ(),
            on_line=lambda line: sink(*parse_line(line)),
            deadline=deadline,
            cancel=cancel,
            grace=self.config.kill_grace_seconds,
        )
        for line in result.stderr.splitlines():
            if line.strip():
                sink(*parse_line(line))
        return result
