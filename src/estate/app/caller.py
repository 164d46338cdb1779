"""Who is asking: the subject every application call acts for, and how they got here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """The subject of a request, how it was authenticated and where it came from (all land in the audit)."""

    subject: str
    auth: str = "local"  # local (the embedded CLI: the OS account), token, oidc
    source: str = "cli"  # "cli", or the client's address
    request_id: str | None = None
