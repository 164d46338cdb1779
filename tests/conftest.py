"""Shared fixtures: every module in tests/support/ is a pytest plugin (real components: Terraform,
PostgreSQL, Prometheus), so a test asks for a fixture by name and nothing else."""

from pathlib import Path

from hypothesis import settings

pytest_plugins = sorted(
    f"tests.support.{p.stem}" for p in (Path(__file__).parent / "support").glob("*.py") if p.stem != "__init__"
)

# Property tests share 2 cores with real Terraform and Prometheus in CI: no per-example deadline.
settings.register_profile("estate", deadline=None)
settings.load_profile("estate")
