"""Who is asking: the subject every application call acts for, and how they got here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """The subject of a request, how it was authenticated and where it came from (all land in the audit).

    `auth="local"` is the embedded CLI on the store's own machine: like a database superuser, it is trusted
    with everything. Every other caller (a token, an OIDC identity) is checked against the access bindings.
    """

    subject: str
    auth: str = "local"  # local (the embedded CLI: the OS account), token, oidc
    source: str = "cli"  # "cli", or the client's address
    request_id: str | None = None
    groups: frozenset[str] = frozenset()  # what the token or the identity provider says

    @property
    def trusted(self) -> bool:
        return self.auth == "local"
