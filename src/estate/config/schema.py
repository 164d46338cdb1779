"""The estate-as-code document format (pydantic), the source of `estate schema`'s JSON Schema."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from estate.domain.ids import ID_RULE

ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Id = Annotated[str, Field(pattern=ID_PATTERN, description=f"an ID: {ID_RULE}")]
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: object) -> int:
    """`90`, `90s`, `10m`, `1h30m` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 10s, 5m, 1h30m")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    m = _DURATION.match(str(value).strip())
    if not m or not any(m.groups()):
        raise ValueError(f"'{value}' is not a duration (use seconds or text like 10s, 5m, 1h30m)")
    hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds


Duration = Annotated[int, BeforeValidator(parse_duration), Field(json_schema_extra={"type": ["integer", "string"]})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunnerSettings(_Strict):
    binary: str = Field("terraform", description="terraform or tofu (a name on PATH or an absolute path)")
    max_parallel: int = Field(4, ge=1, le=256)
    timeout: Duration = Field(3600, description="per deployment; the whole process group is killed after it")
    lock_timeout: Duration = Field(0, description="how long plan/apply wait for a held state lock (0: fail at once)")
    backend: dict[str, Any] | None = Field(
        None, description="Terraform backend block, e.g. {pg: {conn_str: ..., schema_name: 'estate_{project}_{env}'}}"
    )


class PrometheusSettings(_Strict):
    url: str | None = None
    bearer_token_env: str | None = None
    basic_auth_user: str | None = None
    basic_auth_password_env: str | None = None
    ca_file: str | None = None


class GrafanaSettings(_Strict):
    url: str | None = None
    token_env: str | None = None


class TemporalTlsSettings(_Strict):
    ca_file: str | None = Field(None, description="CA bundle that signed the Temporal frontend's certificate")
    cert_file: str | None = Field(None, description="client certificate (mTLS)")
    key_file: str | None = Field(None, description="client private key (mTLS)")
    server_name: str | None = None


class EngineSettings(_Strict):
    kind: Literal["local", "temporal"] = Field(
        "local", description="local: a lease and one process drive each rollout; temporal: durable workflows"
    )
    address: str = Field("127.0.0.1:7233", description="Temporal frontend host:port")
    namespace: str = "default"
    task_queue: str = Field("estate", description="rollout workflows; runner pools use <task_queue>-pool-<pool>")
    tls: TemporalTlsSettings | None = None
    heartbeat_timeout: Duration = Field(30, description="a runner silent this long is presumed dead; its run moves")


class Settings(_Strict):
    runner: RunnerSettings = RunnerSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    engine: EngineSettings = EngineSettings()


class EnvTypeDoc(_Strict):
    id: Id
    rank: int = Field(ge=0)


class ModuleVersionDoc(_Strict):
    version: str = Field(description="semantic version, e.g. 2.0.1")
    source: str = Field(min_length=1, description="./path (relative to this file), git::...?ref=, or registry")
    inputs: dict[str, Any] = {}


class ModuleDoc(_Strict):
    id: Id
    resource_type: Id
    versions: list[ModuleVersionDoc] = []


class ModuleRuleDoc(_Strict):
    resource_type: Id
    module: Id
    version: str
    project: Id | None = None
    env_type: Id | None = None
    env: Id | None = None


class RunnerRuleDoc(_Strict):
    pool: Id = Field(description="the runner pool (`estate worker --pool NAME`) that runs these environments")
    project: Id | None = None
    env_type: Id | None = None
    env: Id | None = None
    labels: dict[str, str] = {}


class ResourceDoc(_Strict):
    type: Id
    params: dict[str, Any] = {}


class EnvironmentDoc(_Strict):
    id: Id
    type: Id
    labels: dict[str, str] = {}


class ProjectDoc(_Strict):
    id: Id
    owner: str = Field(min_length=1)
    resources: dict[Id, ResourceDoc] = {}
    environments: list[EnvironmentDoc] = []


class LabelExpressionDoc(_Strict):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []


class SelectorDoc(_Strict):
    env_type: Id | list[Id] | None = None
    labels: dict[str, str] = {}
    match_expressions: list[LabelExpressionDoc] = []
    projects: list[Id] | None = None
    envs: list[str] | None = Field(None, description="env IDs or project/env references")


class PrometheusGateDoc(_Strict):
    query: str = Field(min_length=1, description="PromQL template: {{ env.id }}, {{ env.labels.region }}, ...")
    max: float | None = None
    min: float | None = None
    interval: Duration = 10
    count: int = Field(1, ge=1)
    failure_limit: int = Field(0, ge=0)
    no_data: Literal["fail", "inconclusive", "pass"] = "inconclusive"
    scope: Literal["env", "wave"] = "env"
    url: str | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> PrometheusGateDoc:
        if self.max is None and self.min is None:
            raise ValueError("a prometheus gate needs a condition: max, min or both")
        return self


class ApprovalGateDoc(_Strict):
    role: str = Field(min_length=1)
    four_eyes: bool = False


class GateDoc(_Strict):
    bake: Duration | None = None
    prometheus: PrometheusGateDoc | None = None
    approval: ApprovalGateDoc | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GateDoc:
        given = [k for k in ("bake", "prometheus", "approval") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a gate is exactly one of: bake, prometheus, approval")
        return self


class WaveDoc(_Strict):
    name: Id
    select: SelectorDoc
    max_parallel: int = Field(1, ge=1)
    failure_tolerance: int | Annotated[str, Field(pattern=r"^\d+(\.\d+)?%$")] = Field(
        0, description="a count of environments, or a percent of the wave like '25%'"
    )
    gates: list[GateDoc] = []
    on_failure: Literal["halt", "rollback"] = "halt"
    auto_promote: bool = False


class RolloutPlanDoc(_Strict):
    id: Id
    description: str = ""
    destructive: Literal["block", "warn"] = "block"
    waves: list[WaveDoc] = Field(min_length=1)


class Document(_Strict):
    """An estate-as-code document (one file, or the merge of a directory of *.yaml)."""

    settings: Settings = Settings()
    roles: dict[str, list[str]] = {}
    env_types: list[EnvTypeDoc] = []
    modules: list[ModuleDoc] = []
    module_rules: list[ModuleRuleDoc] = []
    runner_rules: list[RunnerRuleDoc] = []
    projects: list[ProjectDoc] = []
    rollout_plans: list[RolloutPlanDoc] = []


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the estate-as-code format, for editors and CI linters."""
    schema = Document.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Estate estate-as-code"
    return schema
