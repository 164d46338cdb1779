"""Identity on a real store: API tokens (shown once, hashed, revoked at once, expiring), OIDC JWTs verified
against a local issuer's JWKS served over HTTP, and access control with audited denials."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from estate.app import App, Caller, bootstrap
from estate.app.audit import AuditFilter
from estate.domain.access import Action
from estate.domain.ids import EnvRef
from estate.errors import Forbidden, Unauthenticated
from tests.support.cli import EXAMPLE_ESTATE

ROOT = Caller("local:root")  # embedded: trusted


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    opened = bootstrap({"ESTATE_HOME": str(tmp_path / "home")})
    opened.inventory.apply(ROOT, EXAMPLE_ESTATE, dry_run=False, prune=False, force=False)
    yield opened
    opened.close()


def test_a_token_is_shown_once_stored_as_a_hash_and_authenticates_its_user(app: App) -> None:
    issued = app.identity.create_token(ROOT, "bob", groups=["sre"], description="laptop")
    stored = app.identity.tokens.get(issued.id)
    assert issued.token not in json.dumps(stored.__dict__, default=str), "the store keeps no secret"
    caller = app.identity.authenticate(issued.token, source="10.0.0.7", request_id="r1")
    assert (caller.subject, caller.auth, caller.groups, caller.source) == (
        "bob",
        "token",
        frozenset({"sre"}),
        "10.0.0.7",
    )
    assert not caller.trusted
    listed = app.identity.list_tokens(ROOT)
    assert [(t.id, t.state, t.last_used_at is not None) for t in listed] == [(issued.id, "active", True)]
    assert "token" not in listed[0].model_dump(), "a listed token has no secret"


def test_revoked_expired_malformed_and_forged_tokens_are_refused(app: App) -> None:
    issued = app.identity.create_token(ROOT, "bob")
    app.identity.authenticate(issued.token, source="t")
    app.identity.revoke_token(ROOT, issued.id)
    with pytest.raises(Unauthenticated, match=f"API token {issued.id} was revoked"):
        app.identity.authenticate(issued.token, source="t")
    short = app.identity.create_token(ROOT, "carol", expires_in=timedelta(seconds=-1))
    with pytest.raises(Unauthenticated, match="expired"):
        app.identity.authenticate(short.token, source="t")
    for bad in ("est_nothex_x", "Basic Ym9i", issued.token[:-2] + "AA"):
        with pytest.raises(Unauthenticated) as caught:
            app.identity.authenticate(bad, source="t")
        assert issued.token not in caught.value.message
    secret = issued.token.removeprefix(f"est_{issued.id}_")  # (a secret may itself contain "_")
    forged = f"est_{'0' * 16}_{secret}"
    with pytest.raises(Unauthenticated, match="unknown API token"):
        app.identity.authenticate(forged, source="t")


def test_callers_outside_their_role_or_scope_are_forbidden_and_the_denial_is_audited(app: App, tmp_path: Path) -> None:
    estate = tmp_path / "estate"
    estate.mkdir()
    for f in EXAMPLE_ESTATE.glob("*.yaml"):
        (estate / f.name).write_text(f.read_text().replace("../modules/", f"{EXAMPLE_ESTATE.parent / 'modules'}/"))
    (estate / "access.yaml").write_text(
        "access:\n"
        "  - {role: admin, subjects: [root]}\n"
        "  - {role: deployer, subjects: ['group:team-atlas'], scope: {projects: [checkout]}}\n"
        "  - {role: viewer, subjects: [vera]}\n"
    )
    app.inventory.apply(ROOT, estate, dry_run=False, prune=False, force=False)
    atlas = Caller("dana", "token", "10.0.0.9", None, frozenset({"team-atlas"}))
    with pytest.raises(
        Forbidden, match="needs role deployer in a scope covering project payments / env type ephemeral"
    ):
        app.deployments.deploy(atlas, [EnvRef.parse("payments/eph-1")])
    with pytest.raises(Forbidden, match="that needs role admin everywhere"):
        app.identity.create_token(Caller("vera", "token"), "vera")
    with pytest.raises(Forbidden):
        app.inventory.apply(Caller("vera", "oidc"), estate, dry_run=True, prune=False, force=False)
    app.access.require(Caller("vera", "token"), Action.READ)  # a viewer reads
    denied = app.audit.entries(AuditFilter(outcome="denied"))
    assert [(e.actor, e.action) for e in denied] == [
        ("vera", "apply --dry-run"),
        ("vera", "token create"),
        ("dana", "deploy"),
    ]
    assert denied[-1].source == "10.0.0.9" and "payments" in denied[-1].reason


class Issuer:
    """A local OIDC issuer: its own RSA keys, a JWKS endpoint on loopback, and tokens signed on demand."""

    def __init__(self) -> None:
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "k2")}
        self.published = {"k1"}
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                keys = [
                    {
                        **RSAAlgorithm.to_jwk(issuer.keys[k].public_key(), as_dict=True),
                        "kid": k,
                        "use": "sig",
                        "alg": "RS256",
                    }
                    for k in sorted(issuer.published)
                ]
                body = json.dumps({"keys": keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def token(self, *, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": "estate", "exp": now + 300, "nbf": now - 5, "iat": now}
        body.update({"preferred_username": "olga", "groups": ["platform"]}, **claims)
        return jwt.encode(body, self.keys[kid], algorithm=alg, headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_oidc_tokens_of_the_configured_issuer_are_verified_against_its_jwks(
    app: App, issuer: Issuer, tmp_path: Path
) -> None:
    settings = (
        (EXAMPLE_ESTATE / "estate.yaml")
        .read_text()
        .replace(
            "settings:\n",
            f"settings:\n  oidc: {{issuer: '{issuer.url}', audience: estate, jwks_url: '{issuer.url}/jwks'}}\n",
        )
    )
    folder = tmp_path / "oidc"
    folder.mkdir()
    for f in EXAMPLE_ESTATE.glob("*.yaml"):
        text = settings if f.name == "estate.yaml" else f.read_text()
        (folder / f.name).write_text(text.replace("../modules/", f"{EXAMPLE_ESTATE.parent / 'modules'}/"))
    app.inventory.apply(ROOT, folder, dry_run=False, prune=False, force=False)

    caller = app.identity.authenticate(issuer.token(), source="10.1.1.1")
    assert (caller.subject, caller.auth, caller.groups) == ("olga", "oidc", frozenset({"platform"}))
    now = int(time.time())
    refused = {
        "expired": issuer.token(exp=now - 120),
        "not yet valid": issuer.token(nbf=now + 600),
        "wrong audience": issuer.token(aud="someone-else"),
        "wrong issuer": issuer.token(iss="https://evil.example"),
        "unknown key": issuer.token(kid="k2"),
        "alg none": jwt.encode(
            {"iss": issuer.url, "aud": "estate", "exp": now + 60, "preferred_username": "x"},
            None,
            algorithm="none",
            headers={"kid": "k1"},
        ),
        "no subject": issuer.token(preferred_username=None),
    }
    for why, token in refused.items():
        with pytest.raises(Unauthenticated, match="OIDC token"):
            app.identity.authenticate(token, source="t")
        assert token not in why
    issuer.published.add("k2")  # the issuer rotates its keys: an unknown kid fetches the JWKS again
    verifier = app.identity._verifier()
    assert verifier is not None
    verifier._keys.cooldown_duration = 0  # the default waits 10 s between forced fetches
    assert app.identity.authenticate(issuer.token(kid="k2"), source="t").subject == "olga"
    assert issuer.fetches == 2, "the JWKS is cached; only the unknown key fetched it again"
