"""Generated estates of any size for benchmarks: 100 projects, four env types (10/20/30/40 %), one module."""

from __future__ import annotations

TYPES = (("ephemeral", 0.1), ("development", 0.2), ("staging", 0.3), ("production", 0.4))


def estate_yaml(n: int) -> dict[str, object]:
    """An estate of about `n` environments (labelled by region) and a four-wave plan `bench`, auto-promoted."""
    envs: list[tuple[str, str]] = []
    for env_type, share in TYPES:
        envs += [(env_type, f"{env_type[:4]}-{i}") for i in range(int(n * share))]
    projects = [
        {
            "id": f"p{k}",
            "owner": f"team-{k % 7}",
            "resources": {"db": {"type": "postgres"}},
            "environments": [
                {"id": e, "type": t, "labels": {"region": ("eu", "us")[i % 2]}} for i, (t, e) in enumerate(envs[k::100])
            ],
        }
        for k in range(100)
    ]
    return {
        "env_types": [{"id": t, "rank": i} for i, (t, _) in enumerate(TYPES)],
        "modules": [
            {
                "id": "postgres",
                "resource_type": "postgres",
                "versions": [{"version": "1.0.0", "source": "/srv/pg-1"}, {"version": "2.0.0", "source": "/srv/pg-2"}],
            }
        ],
        "module_rules": [{"resource_type": "postgres", "module": "postgres", "version": "1.0.0"}],
        "projects": projects,
        "rollout_plans": [
            {
                "id": "bench",
                "waves": [
                    {"name": t[:4], "select": {"env_type": t}, "max_parallel": 200, "auto_promote": True}
                    for t, _ in TYPES
                ],
            }
        ],
    }
