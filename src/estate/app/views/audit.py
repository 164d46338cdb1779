"""Views of the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from estate.app.views import View


class AuditEntryView(View):
    id: int
    at: datetime
    actor: str
    auth: str
    source: str
    request_id: str | None
    action: str
    target: str
    outcome: str  # ok | refused | failed | denied
    reason: str
    details: dict[str, Any]
