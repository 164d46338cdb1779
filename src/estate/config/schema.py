"""The estate-as-code document format (pydantic), the source of `estate schema`'s JSON Schema."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from estate.domain.alerts import parse_matchers
from estate.domain.change_windows import parse_clock, parse_days, zone
from estate.domain.ids import ID_RULE
from estate.errors import InputError

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


class OidcSettings(_Strict):
    issuer: str = Field(min_length=1, description="the `iss` every token must carry, e.g. https://sso.example/realms/x")
    audience: str = Field(min_length=1, description="the `aud` every token must carry (the client id)")
    jwks_url: str = Field(pattern=r"^https?://", description="where the issuer publishes its signing keys")
    subject_claim: str = "preferred_username"
    groups_claim: str = "groups"


class AlertmanagerSettings(_Strict):
    """Which labels of an alert name its environment (POST /api/v1/hooks/alertmanager)."""

    project_label: str = Field("project", min_length=1, description="the label holding the project id")
    env_label: str = Field("env", min_length=1, description="the label holding the environment id")
    estate_env_label: str = Field(
        "estate_env", min_length=1, description='one label holding "project/env"; wins over the two above'
    )


class Settings(_Strict):
    runner: RunnerSettings = RunnerSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    oidc: OidcSettings | None = Field(None, description="accept bearer JWTs of this identity provider (SSO)")
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


_LANDED = (
    "PromQL template that returns data once the new version reports, e.g. "
    'pg_operator_info{env="{{ env.id }}", version="{{ rollout.version }}"}; until it does, samples do not count'
)


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
    landed: str | None = Field(None, min_length=1, description=_LANDED)
    landed_timeout: Duration = Field(600, description="how long to wait for `landed` before the gate is inconclusive")

    @model_validator(mode="after")
    def _has_condition(self) -> PrometheusGateDoc:
        if self.max is None and self.min is None:
            raise ValueError("a prometheus gate needs a condition: max, min or both")
        return self


RoleName = Literal["viewer", "deployer", "operator", "approver", "admin"]
Subject = Annotated[
    str,
    Field(
        pattern=r"^(group:)?[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$",
        description="a user name (as the identity provider or token says it), or group:NAME",
    ),
]


class CompareGateDoc(_Strict):
    """The wave's environments (new version) against a baseline cohort still on the previous version."""

    query: str = Field(min_length=1, description="PromQL template evaluated for every environment of both cohorts")
    better: Literal["lower", "higher"] = Field("lower", description="which way the metric is healthier")
    tolerance: Annotated[float, Field(ge=0)] | Annotated[str, Field(pattern=r"^\d+(\.\d+)?%$")] = Field(
        0, description="how much worse the new cohort may be: in the metric's unit, or '10%' of the baseline median"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="of the one-sided Mann-Whitney U test")
    interval: Duration = 10
    count: int = Field(3, ge=1, description="sampling rounds (every environment of both cohorts each round)")
    min_samples: int = Field(6, ge=2, description="per cohort; fewer is inconclusive")
    baseline: SelectorDoc | None = Field(
        None, description="default: environments of the wave's env types that this rollout has not changed"
    )
    baseline_limit: int = Field(50, ge=1, le=1000, description="baseline environments sampled at most")
    url: str | None = None
    landed: str | None = Field(None, min_length=1, description=_LANDED)
    landed_timeout: Duration = Field(600, description="how long to wait for `landed` before the gate is inconclusive")


class ApprovalGateDoc(_Strict):
    role: RoleName = Field("approver", description="who may approve: anyone holding this role for the wave")
    four_eyes: bool = Field(
        False, description="the approver must be neither who started the rollout nor who last retargeted it"
    )


class GateDoc(_Strict):
    bake: Duration | None = None
    prometheus: PrometheusGateDoc | None = None
    compare: CompareGateDoc | None = None
    approval: ApprovalGateDoc | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GateDoc:
        given = [k for k in ("bake", "prometheus", "compare", "approval") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a gate is exactly one of: bake, prometheus, compare, approval")
        return self


def _input_error_as_value_error(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except InputError as exc:
        raise ValueError(exc.message) from None


class ChangeWindowDoc(_Strict):
    """Weekly hours in which the wave may start deployments (local time of `timezone`)."""

    days: list[str] = Field(["mon-sun"], min_length=1, description="weekdays or ranges: [mon-fri], [sat, sun]")
    start: str = Field(description="HH:MM (or HH:MM:SS), 24-hour local time")
    end: str = Field(description="HH:MM; at or before `start`, the window runs past midnight")
    timezone: str = Field("UTC", description="an IANA time zone, e.g. Europe/Berlin")

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        _input_error_as_value_error(parse_days, value)
        return value

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        _input_error_as_value_error(parse_clock, value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        _input_error_as_value_error(zone, value)
        return value


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
    change_windows: list[ChangeWindowDoc] = Field(
        [], description="deploys start only inside one of these (default: any time); rollbacks are never held"
    )


class RolloutPlanDoc(_Strict):
    id: Id
    description: str = ""
    destructive: Literal["block", "warn"] = "block"
    waves: list[WaveDoc] = Field(min_length=1)
    alert_selector: str | None = Field(
        None,
        min_length=1,
        description='which firing alerts stop the line, as label matchers: severity=~"critical|page" (default: all)',
    )
    mark_defective_on_failure: bool = Field(
        False, description="a version that fails a wave's gates (or an alert) is marked defective"
    )

    @field_validator("alert_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None:
            _input_error_as_value_error(parse_matchers, value)
        return value


class AccessScopeDoc(_Strict):
    projects: list[Id] | None = Field(None, description="only these projects (default: all)")
    env_types: list[Id] | None = Field(None, description="only these env types (default: all)")


class AccessBindingDoc(_Strict):
    role: RoleName
    subjects: list[Subject] = Field(min_length=1)
    scope: AccessScopeDoc = AccessScopeDoc()


class Document(_Strict):
    """An estate-as-code document (one file, or the merge of a directory of *.yaml)."""

    settings: Settings = Settings()
    access: list[AccessBindingDoc] = []
    roles: dict[RoleName, list[Subject]] = Field(
        {}, description="shorthand: `approver: [bob]` is `access: [{role: approver, subjects: [bob]}]`"
    )
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
