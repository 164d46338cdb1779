"""Request bodies: strict about types and unknown fields, so a body that breaks the documented schema is
refused (422, naming the field) instead of being coerced (`false` is not 0, `"3"` is not 3)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"  # a DNS label, as every Estate ID
ENV_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?/[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"  # project/env
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,127}$"
ROLLOUT_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,78}[a-z0-9])?$"  # <module>-<n>
WAVE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"  # a wave's number or name


def _json_integer(value: Any) -> Any:
    # JSON Schema calls 3.0 an integer; pydantic's strict mode would refuse it, lax mode would take "3" and true.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a JSON integer")
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


def _date_time(value: Any) -> Any:
    # An RFC 3339 string with a time zone (Alertmanager writes nanoseconds: the digits past micro are dropped).
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'{value}' is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"'{value}' has no time zone (add Z or +HH:MM)")
    return parsed


DateTime = Annotated[datetime, BeforeValidator(_date_time), Field(json_schema_extra={"format": "date-time"})]
Id = Annotated[str, Field(pattern=ID_PATTERN)]
Version = Annotated[str, Field(pattern=VERSION_PATTERN)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SourceIn(Body):
    """One YAML file of estate-as-code: its name (a path: errors name it, `./` sources are relative to it)."""

    name: str = Field(min_length=1, max_length=4096)
    content: str = Field(max_length=4 * 1024 * 1024)


class ApplyIn(Body):
    documents: list[SourceIn] = Field(min_length=1, max_length=1000)
    dry_run: bool = False
    prune: bool = False
    force: bool = False


class PublishIn(Body):
    version: Version
    source: str = Field(min_length=1, max_length=4096)
    inputs_from: Version | None = None


class DeployIn(Body):
    envs: list[Annotated[str, Field(pattern=ENV_PATTERN)]] = Field(min_length=1, max_length=10_000)
    plan_only: bool = False


class DriftIn(Body):
    envs: list[Annotated[str, Field(pattern=ENV_PATTERN)]] | None = Field(default=None, max_length=100_000)
    fail_on_drift: bool = False


class EnvRollbackIn(Body):
    to: JsonInt = Field(ge=1, description="the deployment whose resolved graph to apply again")


class PreviewIn(Body):
    module: Id
    version: Version
    plan: Id
    preflight: bool = True


class StartIn(PreviewIn):
    allow_uncovered: bool = False
    allow_destroy: bool = False


class ApproveIn(Body):
    override: bool = False


WaveRef = Annotated[str, Field(pattern=WAVE_PATTERN)] | Annotated[JsonInt, Field(ge=1)]


class RollbackIn(Body):
    wave: WaveRef | None = Field(default=None, description="the wave's 1-based number or its name; default: current")


class RerunIn(RollbackIn):
    only_failed: bool = False


class RetargetIn(Body):
    version: Version
    allow_destroy: bool = False
    preflight: bool = True


class FreezeIn(Body):
    reason: str = Field(min_length=1, max_length=2000)
    env_type: Id | None = Field(None, description="freeze only this env type (default: every environment)")
    until: DateTime | None = Field(None, description="when the freeze ends by itself (default: when lifted)")


class UnfreezeIn(Body):
    env_type: Id | None = Field(None, description="lift the freezes of this env type (default: estate-wide ones)")
    id: JsonInt | None = Field(None, ge=1, le=2**53, description="lift this freeze")


class LifecycleIn(Body):
    reason: str = Field(min_length=1, max_length=2000)


class _Foreign(BaseModel):
    """A document another program writes: unknown fields are ignored, known ones checked."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


Label = Annotated[str, Field(max_length=4096)]


class AlertIn(_Foreign):
    status: Literal["firing", "resolved"]
    labels: dict[Label, Label] = Field(max_length=256)
    annotations: dict[Label, Label] = Field({}, max_length=256)
    starts_at: DateTime | None = Field(None, alias="startsAt")
    ends_at: DateTime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL", max_length=8192)
    fingerprint: str = Field("", max_length=128)


class AlertmanagerIn(_Foreign):
    """Alertmanager's webhook payload, version 4."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = Field("", max_length=255)
    alerts: list[AlertIn] = Field(max_length=10_000)
