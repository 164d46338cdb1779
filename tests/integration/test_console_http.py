"""The console over plain HTTP (a hosted App served on a thread; the fake runner): nothing without a session, the
session cookie's attributes, CSRF on cookie-authenticated API calls and form posts, where a login may send the
browser, errors as pages with the API's status, the headers that keep other origins out, and the live region."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from estate.api import session
from estate.app import App, Caller, Wiring
from estate.store.deployments import DeploymentRepository
from estate.testing.fake_runner import FakeRunner
from estate.testing.server import bearer, token_for
from tests.support.cli import EXAMPLE_ESTATE
from tests.support.oidc import Issuer
from tests.support.server import EstateServer

PAGES = ("/", "/modules", "/modules/postgres", "/rollouts", "/rollouts/postgres-1", "/audit", "/static/console.js")


@dataclass
class Site:
    url: str
    root: str
    vera: str
    app: App

    def client(self, credential: str | None = None) -> httpx.Client:
        cookies = {} if credential is None else {"Cookie": f"{session.COOKIE}={credential}"}
        return httpx.Client(base_url=self.url, headers=cookies, follow_redirects=False, timeout=30)


@pytest.fixture
def site(tmp_path: Path, estate_server: EstateServer) -> Iterator[Site]:
    environ = {"ESTATE_HOME": str(tmp_path / "estate")}
    root = token_for(environ, "root", estate=EXAMPLE_ESTATE)
    vera = token_for(environ, "vera")
    wiring = Wiring(runner=lambda store, _s: FakeRunner(DeploymentRepository(store), lambda: datetime.now(UTC)))
    server = estate_server(environ, wiring)
    with httpx.Client(base_url=server.url, headers=bearer(root), timeout=30) as api:
        body = {"module": "postgres", "version": "1.0.0", "plan": "standard", "preflight": False}
        job = api.get(api.post("/api/v1/rollouts", json=body).headers["location"], params={"wait": 20}).json()
        assert job["status"] == "succeeded", job
    yield Site(server.url, root, vera, server.app)


def test_nothing_is_served_without_a_session_but_the_login_page(site: Site) -> None:
    with site.client() as anonymous:
        for path in PAGES:
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == f"/login?next={path}"
        assert anonymous.get("/login").status_code == 200
        assert anonymous.get("/static/console.css").status_code == 200  # what the login page itself needs
        assert anonymous.get("/api/v1/rollouts").status_code == 401


def test_a_login_sets_a_cookie_scripts_cannot_read_and_goes_back_only_to_this_site(site: Site) -> None:
    with site.client() as browser:
        response = browser.post("/login", data={"token": site.vera, "next": "/audit?outcome=refused"})
        assert response.status_code == 303 and response.headers["location"] == "/audit?outcome=refused"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{session.COOKIE}={site.vera};")
        for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/", "Max-Age=28800"):
            assert attribute.lower() in cookie.lower(), cookie
        for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil.example", ""):
            response = browser.post("/login", data={"token": site.vera, "next": elsewhere})
            assert response.headers["location"] == "/", elsewhere


def test_a_bad_login_says_why_and_is_audited(site: Site) -> None:
    with site.client() as browser:
        response = browser.post("/login", data={"token": "est_0123456789abcdef_" + "x" * 43, "next": "/"})
        assert response.status_code == 401
        assert "unknown API token" in response.text and "set-cookie" not in response.headers
    with httpx.Client(base_url=site.url, headers=bearer(site.root), timeout=30) as api:
        denied = api.get("/api/v1/audit", params={"outcome": "denied"}).json()["items"]
    assert denied[0]["action"] == "authenticate" and denied[0]["target"] == "POST /login"


def test_a_form_posted_from_another_site_is_refused(site: Site) -> None:
    with site.client() as browser:
        response = browser.post("/login", data={"token": site.vera}, headers={"Origin": "https://evil.example"})
        assert response.status_code == 403 and "another site" in response.text
    with site.client(site.vera) as browser:
        assert browser.post("/logout", data={"csrf": "wrong"}).status_code == 403
        response = browser.post("/logout", data={"csrf": session.csrf_token(site.vera)})
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert f'{session.COOKIE}=""' in response.headers["set-cookie"]


def test_the_api_takes_the_session_cookie_with_its_csrf_token_for_changes(site: Site) -> None:
    with site.client(site.root) as browser:
        assert browser.get("/api/v1/rollouts/postgres-1").status_code == 200  # reading needs no CSRF token
        refused = browser.post("/api/v1/rollouts/postgres-1/pause")
        assert refused.status_code == 401 and "X-CSRF-Token" in refused.json()["detail"]
        forged = browser.post("/api/v1/rollouts/postgres-1/pause", headers={"X-CSRF-Token": "0" * 64})
        assert forged.status_code == 401
        paused = browser.post(
            "/api/v1/rollouts/postgres-1/pause", headers={"X-CSRF-Token": session.csrf_token(site.root)}
        )
        assert paused.status_code == 200 and paused.json()["phase"] == "paused"
        page = browser.get("/rollouts/postgres-1").text
        assert f'<meta name="csrf-token" content="{session.csrf_token(site.root)}">' in page


def test_pages_keep_other_origins_out(site: Site) -> None:
    with site.client(site.vera) as browser:
        response = browser.get("/rollouts/postgres-1")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == "no-store"
    assert not re.search(r"<script>|style=\"|on(click|load)=", response.text), "inline script or style"


def test_errors_are_pages_with_the_api_status(site: Site) -> None:
    with site.client(site.vera) as browser:
        missing = browser.get("/rollouts/postgres-99")
        assert missing.status_code == 404 and "no rollout &#39;postgres-99&#39;" in missing.text
        assert browser.get("/modules/nope").status_code == 404
        assert browser.get("/deployments/12345").status_code == 404
        bad = browser.get("/rollouts/postgres-1", params={"state": "sideways"})
        assert bad.status_code == 422 and "state" in bad.text
        assert browser.get("/audit", params={"since": "yesterday"}).status_code == 400
        assert browser.get("/", params={"label": "no-equals-sign"}).status_code == 400
        assert browser.get("/rollouts/postgres-1/confirm/launch").status_code == 400
        assert browser.get("/modules/postgres/preview", params={"job": 1}).status_code == 400  # a start job


def test_a_viewer_sees_every_control_disabled_with_the_reason(site: Site) -> None:
    with site.client(site.vera) as browser:
        page = browser.get("/rollouts/postgres-1").text
    controls = re.findall(r'class="control[^"]*" data-confirm="[^"]*" data-control="([^"]+)"', page)
    assert {"promote", "approve", "pause", "resume", "retarget", "abort", "rollback 1", "rerun 1"} <= set(controls)
    disabled = re.findall(r'data-control="([^"]+)" aria-disabled="true" title="vera may not (\w+)', page)
    assert {c for c, _ in disabled} == set(controls)


def test_the_live_region_alone_on_request(site: Site) -> None:
    with site.client(site.vera) as browser:
        whole = browser.get("/rollouts/postgres-1").text
        live = browser.get("/rollouts/postgres-1", headers={"X-Estate-Partial": "live"}).text
    assert whole.startswith("<!doctype html>") and 'id="live"' in whole
    assert live.lstrip().startswith('<header class="page-head"') and "<html" not in live
    assert "Wave 1 · ephemeral" in live


def test_permissions_follow_the_scope_of_each_binding(site: Site) -> None:
    """examples/estate: alex operates everywhere and approves production; bob approves production only."""
    alex, bob, root = (Caller(who, auth="token") for who in ("alex", "bob", "root"))
    assert set(site.app.rollouts.permissions(root, "postgres-1").values()) == {None}
    mine = site.app.rollouts.permissions(alex, "postgres-1")
    assert {k for k, why in mine.items() if why} == {"approve"}  # wave 1 is ephemeral
    assert mine["approve"].startswith("alex may not approve checkout/eph-1, checkout/eph-2")
    assert "needs role approver in a scope covering" in mine["approve"]
    bobs = site.app.rollouts.permissions(bob, "postgres-1")
    assert all(why and why.startswith("bob may not") for why in bobs.values())
    assert site.app.rollouts.start_denial(alex, "postgres", "1.0.0", "standard") is None
    assert "bob may not operate" in (site.app.rollouts.start_denial(bob, "postgres", "1.0.0", "standard") or "")


def test_an_oidc_token_logs_in_when_an_issuer_is_configured(
    tmp_path: Path, estate_server: EstateServer, issuer: Issuer
) -> None:
    folder = tmp_path / "oidc"
    folder.mkdir()
    oidc = f"settings:\n  oidc: {{issuer: '{issuer.url}', audience: estate, jwks_url: '{issuer.url}/jwks'}}\n"
    for f in EXAMPLE_ESTATE.glob("*.yaml"):
        text = f.read_text().replace("settings:\n", oidc) if f.name == "estate.yaml" else f.read_text()
        (folder / f.name).write_text(text.replace("../modules/", f"{EXAMPLE_ESTATE.parent / 'modules'}/"))
    environ = {"ESTATE_HOME": str(tmp_path / "estate")}
    token_for(environ, "root", estate=folder)
    server = estate_server(environ)
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
        form = browser.get("/login").text
        assert "API token or OIDC token" in form and issuer.url in form
        response = browser.post("/login", data={"token": issuer.token(), "next": "/modules"})
        assert response.status_code == 303 and response.headers["location"] == "/modules"
        jwt_cookie = {"Cookie": f"{session.COOKIE}={issuer.token()}"}
        page = browser.get("/modules", headers=jwt_cookie)
        assert page.status_code == 200 and '<span class="who"' in page.text and ">olga<" in page.text
        expired = {"Cookie": f"{session.COOKIE}={issuer.token(exp=int(datetime.now(UTC).timestamp()) - 120)}"}
        assert browser.get("/modules", headers=expired).headers["location"] == "/login?next=/modules&expired=1"


def test_the_estate_page_filters_by_project_env_type_owner_and_label(site: Site) -> None:
    def shown(**filters: str) -> set[str]:
        with site.client(site.vera) as browser:
            page = browser.get("/", params=filters)
        assert page.status_code == 200, page.text
        return set(re.findall(r'<tr data-env="([^"]+)">', page.text))

    everything = shown()
    assert len(everything) == 16
    assert shown(env_type="production") == {
        "checkout/prod-eu",
        "checkout/prod-us",
        "payments/prod-eu",
        "payments/prod-us",
        "search/prod",
    }
    assert shown(owner="team-atlas") == {e for e in everything if e.startswith("checkout/")}
    assert shown(project="search", label="region=eu") == {"search/eph-2"}
    assert shown(project="", env_type="", owner="") == everything  # the form's "any"


def test_deprecated_and_defective_versions_stand_out_and_a_defective_one_is_no_retarget_choice(site: Site) -> None:
    with httpx.Client(base_url=site.url, headers=bearer(site.root), timeout=30) as api:
        versions = "/api/v1/modules/postgres/versions"
        for version in ("2.0.0", "2.0.1"):
            source = str(EXAMPLE_ESTATE.parent / "modules" / "postgres" / f"v{version}")
            assert api.post(versions, json={"version": version, "source": source}).status_code == 201
        assert api.post(f"{versions}/1.0.0/deprecate", json={"reason": "end of support"}).status_code == 200
        assert api.post(f"{versions}/2.0.0/mark-defective", json={"reason": "drops connections"}).status_code == 200
    with site.client(site.vera) as browser:
        estate = browser.get("/").text
        module = browser.get("/modules/postgres").text
    marked = re.findall(r'data-lifecycle="(\w+)" title="([^"]+)"', estate)
    assert len(marked) >= 16 and set(marked) == {("deprecated", "deprecated: end of support")}
    assert "drops connections" in module and re.search(r"<td>defective <span", module)
    with site.client(site.root) as browser:
        confirm = browser.get("/rollouts/postgres-1/confirm/retarget")
    assert confirm.status_code == 200, confirm.text
    offered = re.findall(r"<option>([^<]+)</option>", confirm.text)
    assert "2.0.1" in offered and "2.0.0" not in offered


def test_a_freeze_shows_on_the_rollout_page(site: Site) -> None:
    with httpx.Client(base_url=site.url, headers=bearer(site.root), timeout=30) as api:
        frozen = api.post("/api/v1/freezes", json={"reason": "black friday", "env_type": "production"})
        assert frozen.status_code == 201, frozen.text
    with site.client(site.vera) as browser:
        page = browser.get("/rollouts/postgres-1").text
    (shown,) = re.findall(r'<p class="warning freezes">([^<]+)</p>', page)
    assert "black friday" in shown and "production" in shown
