"""The web console in real Chromium: sessions, roles, keyboard, narrow screens, accessible names, and a
deployment's log streaming while Terraform runs.

Most tests serve a hosted App on a thread whose engine has the fake runner (a rollout's deployments succeed at
once; a plain deployment runs real Terraform) on an estate whose first wave waits for an approval, so the
rollout holds still while the browser looks at it; the log test runs
`estate server` with real Terraform on a module that sleeps while it applies."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect

from estate.app import Wiring
from estate.store.deployments import DeploymentRepository
from estate.testing.fake_runner import FakeRunner
from estate.testing.offline_terraform import offline_environ
from estate.testing.server import bearer, token_for
from tests.support.browser import Browser, Tab
from tests.support.server import EstateServer, ServerProcess
from tests.support.terraform import Sandbox, estate_doc

pytestmark = pytest.mark.slow

ENVS = {"eph-1": "ephemeral", "eph-2": "ephemeral", "dev-1": "development", "prod-1": "production"}
PEOPLE = ("root", "alex", "vera")


@dataclass
class Console:
    url: str
    tokens: dict[str, str]
    api: httpx.Client  # as root
    rollout: str
    deployment: int  # of shop/dev-1, outside the rollout


def held_estate() -> dict[str, Any]:
    """Wave 1 waits for an approval: a started rollout holds still."""
    doc = estate_doc(ENVS)
    doc["rollout_plans"] = [
        {
            "id": "held",
            "waves": [
                {"name": "eph", "select": {"env_type": "ephemeral"}, "gates": [{"approval": {"role": "approver"}}]},
                {"name": "rest", "select": {"env_type": ["development", "production"]}},
            ],
        }
    ]
    return doc


@pytest.fixture
def console(tmp_path: Path, estate_server: EstateServer) -> Iterator[Console]:
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(held_estate()))
    environ = {"ESTATE_HOME": str(tmp_path / "estate"), **offline_environ(tmp_path / "terraform")}  # plain deploys
    tokens = {"root": token_for(environ, "root", estate=path)} | {u: token_for(environ, u) for u in PEOPLE[1:]}
    wiring = Wiring(runner=lambda store, _s: FakeRunner(DeploymentRepository(store), lambda: datetime.now(UTC)))
    server = estate_server(environ, wiring)
    with httpx.Client(base_url=server.url, headers=bearer(tokens["root"]), timeout=30) as api:
        body = {"module": "postgres", "version": "2.0.0", "plan": "held", "preflight": False}
        job = api.get(api.post("/api/v1/rollouts", json=body).headers["location"], params={"wait": 20}).json()
        assert job["status"] == "succeeded", job
        deployed = api.get(api.post("/api/v1/deployments", json={"envs": ["shop/dev-1"]}).headers["location"]).json()
        deployed = api.get(f"/api/v1/jobs/{deployed['id']}", params={"wait": 20}).json()
        assert deployed["status"] == "succeeded", deployed
        yield Console(server.url, tokens, api, job["result"]["id"], deployed["result"]["deployments"][0]["id"])


def accessible(page: Page) -> None:
    """Every control has a label or a name, every chart a title, the page one h1 and a language."""
    found = page.evaluate(
        """() => {
        const problems = [];
        const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label')
            || el.getAttribute('aria-labelledby') || (el.textContent || '').trim() || el.getAttribute('title');
        for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')) {
            if (!named(el)) problems.push(`unnamed ${el.tagName} ${el.outerHTML.slice(0, 80)}`);
        }
        for (const svg of document.querySelectorAll('svg[role=img]')) {
            const id = svg.getAttribute('aria-labelledby');
            if (!id || !document.getElementById(id)?.textContent.trim()) problems.push('a chart without a title');
        }
        if (document.querySelectorAll('h1').length !== 1) problems.push('not exactly one h1');
        if (!document.documentElement.lang) problems.push('no lang');
        return problems;
    }"""
    )
    assert found == [], found


def test_every_page_needs_a_session_and_is_labelled(console: Console, browser: Browser) -> None:
    tab = browser(console.url)
    page = tab.goto(f"/rollouts/{console.rollout}")
    expect(page).to_have_url(re.compile(rf"/login\?next=/rollouts/{console.rollout}$"))
    accessible(page)
    tab.shot("login")
    tab.login(console.tokens["alex"], f"/rollouts/{console.rollout}")
    for path in ("/", "/modules", "/modules/postgres", "/rollouts", f"/rollouts/{console.rollout}", "/audit"):
        page.goto(console.url + path)
        accessible(page)
    page.goto(f"{console.url}/deployments/{console.deployment}")
    expect(page.locator(".page-head")).to_have_attribute("data-status", "succeeded")
    accessible(page)
    tab.logout()
    page.goto(console.url + "/audit")
    expect(page).to_have_url(re.compile(r"/login\?next=/audit$"))


def test_a_wrong_token_is_refused_and_a_revoked_one_ends_the_session(console: Console, browser: Browser) -> None:
    tab = browser(console.url)
    page = tab.goto("/login")
    tab.expect_error("401", r"/login$")
    page.get_by_label("API token").fill("est_0123456789abcdef_" + "x" * 43)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown API token")
    tab.login(console.tokens["vera"], "/rollouts")
    token_id = console.tokens["vera"].split("_")[1]
    assert console.api.post(f"/api/v1/tokens/{token_id}/revoke").status_code == 200
    page.goto(console.url + "/modules")
    expect(page).to_have_url(re.compile(r"/login\?next=/modules&expired=1$"))
    expect(page.get_by_role("status")).to_contain_text("no longer valid")


def test_controls_the_role_does_not_allow_are_disabled_with_the_reason(console: Console, browser: Browser) -> None:
    vera = browser(console.url, name="vera")
    page = vera.login(console.tokens["vera"], f"/rollouts/{console.rollout}")
    for control in ("promote", "approve", "pause", "resume", "retarget", "abort", "rollback 1", "rerun 1"):
        button = page.locator(f'[data-control="{control}"]')
        expect(button).to_have_attribute("aria-disabled", "true")
        expect(button).to_have_attribute("title", re.compile(r"vera may not (operate|approve) .*needs role"))
    promote = page.locator('[data-control="promote"]')
    expect(promote).to_have_accessible_description(re.compile("Not allowed: vera may not operate"))
    promote.focus()
    page.keyboard.press("Enter")  # reachable, but it opens nothing
    expect(page.locator("dialog#confirm")).to_be_hidden()
    expect(page.locator("#announcer")).to_contain_text("Not allowed: vera may not operate")
    vera.shot("rollout-as-viewer")

    # A page of another site cannot act for her: the API wants the session's CSRF token with the cookie.
    vera.expect_error("401", r"/pause$")
    status = page.evaluate(
        f"""async () => (await fetch('/api/v1/rollouts/{console.rollout}/pause', {{method: 'POST'}})).status"""
    )
    assert status == 401

    alex = browser(console.url, name="alex")
    page = alex.login(console.tokens["alex"], f"/rollouts/{console.rollout}")
    approve = page.locator('[data-control="approve"]')
    expect(approve).not_to_have_attribute("aria-disabled", "true")
    approve.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_contain_text("Approve wave 1 (eph)")
    expect(dialog).to_contain_text("shop/eph-1")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(approve).to_be_focused()


def test_the_rollout_page_is_usable_on_a_narrow_screen(console: Console, browser: Browser) -> None:
    tab = browser(console.url, width=390, height=844, name="narrow")
    page = tab.login(console.tokens["alex"], f"/rollouts/{console.rollout}")
    for path in (f"/rollouts/{console.rollout}", "/", "/modules/postgres", "/audit"):
        page.goto(console.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 390px"
    page.goto(f"{console.url}/rollouts/{console.rollout}")
    expect(page.locator('[data-control="approve"]')).to_be_in_viewport()
    tab.shot("rollout")
    page.locator('[data-control="approve"]').click()
    dialog = page.locator("dialog#confirm")
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#wave-1")).to_have_attribute("data-phase", "awaiting_promotion")


def test_the_environment_list_pages_and_filters(console: Console, browser: Browser) -> None:
    tab = browser(console.url)
    page = tab.login(console.tokens["alex"], f"/rollouts/{console.rollout}?state=pending")
    rows = page.locator("table.envs tr[data-env]")
    expect(rows).to_have_count(4)
    page.goto(f"{console.url}/rollouts/{console.rollout}?wave=2")
    expect(rows).to_have_count(2)
    expect(page.locator("table.envs")).to_contain_text("shop/prod-1")
    page.get_by_label("Wave", exact=True).select_option("1")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(2)
    expect(page.locator("table.envs")).to_contain_text("shop/eph-2")


LOG_ENVS = {"eph-1": "ephemeral"}


@pytest.fixture
def slow_apply(sandbox: Sandbox, server_process: ServerProcess) -> Iterator[tuple[str, str, httpx.Client]]:
    """`estate server` with real Terraform on a module that sleeps 6 s in its apply."""
    sandbox.environ["PATH"] = f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}"
    sandbox.apply(estate_doc(LOG_ENVS, params={"apply_delay_seconds": 6}))
    token = token_for(sandbox.environ, "root")
    server = server_process(sandbox.environ)
    with httpx.Client(base_url=server.url, headers=bearer(token), timeout=60) as api:
        yield server.url, token, api


def test_a_deployment_log_streams_while_terraform_runs(
    slow_apply: tuple[str, str, httpx.Client], browser: Browser
) -> None:
    url, token, api = slow_apply
    tab: Tab = browser(url)
    tab.login(token, "/")
    assert api.post("/api/v1/deployments", json={"envs": ["shop/eph-1"]}).status_code == 202
    found: list[dict[str, Any]] = []
    while not found:
        found = api.get("/api/v1/deployments", params={"env": "shop/eph-1"}).json()["items"]
    page = tab.goto(f"/deployments/{found[0]['id']}")
    head = page.locator(".page-head")
    assert head.get_attribute("data-status") in ("queued", "planning", "applying"), "it ended before the page opened"
    page.evaluate("window.__sameDocument = true")
    log = page.locator("#deployment-log li")
    lines_at_open = log.count()
    expect(head).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.locator("#deployment-log")).to_contain_text("Apply complete")
    assert log.count() > lines_at_open
    expect(page.locator(".transitions")).to_contain_text("applying")
    expect(page.get_by_role("row", name=re.compile("password"))).to_contain_text("(sensitive)")
    assert page.evaluate("window.__sameDocument") is True
    tab.shot("deployment")
