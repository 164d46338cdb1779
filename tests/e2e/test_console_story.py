"""The story of DESIGN.md clicked through in the web console, in real Chromium, against `estate server` as its own
process with real Terraform and a real Prometheus scraping the demo exporter.

Alex (operator; approver in production only) logs in, reads the preview on the module page and starts 2.0.0;
wave 1 fails its Prometheus gate while the page is watched (no reload: the page is rendered again on each event);
the gate's chart shows the samples above the bound and links to Prometheus for the same query and time range;
Alex rolls wave 1 back, retargets to 2.0.1, reruns wave 1, promotes through dev and staging; his approval of
production is refused by four-eyes, word for word; Bob logs in and approves; the rollout completes. Every page
is screenshot; the browser's console holds no error but Chromium's note of the one refusal provoked.
"""

from __future__ import annotations

import calendar
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from estate.testing.server import bearer, token_for
from estate.testing.services import DemoExporter, PrometheusServer
from tests.e2e.test_gated_rollouts import BAKE_2S, prom_gate, wave
from tests.support.browser import Browser
from tests.support.server import ServerProcess
from tests.support.terraform import Sandbox, estate_doc

pytestmark = pytest.mark.slow

ENVS = {
    "eph-1": "ephemeral",
    "eph-2": "ephemeral",
    "dev-1": "development",
    "stg-1": "staging",
    "prod-1": "production",
}
GRAFANA = "http://127.0.0.1:9/grafana"  # never contacted by the browser: the test reads the link
LIVE = 120_000  # ms a live change may take on a loaded machine (Terraform, Prometheus rounds, the engine)


def story_estate() -> dict[str, Any]:
    doc = estate_doc(ENVS, settings={"max_parallel": 4})
    doc["env_types"] = [
        {"id": t, "rank": i} for i, t in enumerate(["ephemeral", "development", "staging", "production"])
    ]
    doc["settings"]["grafana"] = {"url": GRAFANA, "token_env": "ESTATE_TEST_NO_GRAFANA_TOKEN"}  # links only
    doc["rollout_plans"] = [
        {
            "id": "story",
            "description": "the story: ephemeral, dev, staging, production",
            "waves": [
                wave("eph", "ephemeral", [prom_gate()]),  # on_failure halt: Alex rolls back himself
                wave("dev", "development", [BAKE_2S]),
                wave("staging", "staging", [BAKE_2S]),
                wave(
                    "prod",
                    "production",
                    [{"approval": {"role": "approver", "four_eyes": True}}, prom_gate(count=2)],
                ),
            ],
        }
    ]
    doc["access"] = [
        {"role": "admin", "subjects": ["root"]},
        {"role": "operator", "subjects": ["alex"]},
        {"role": "approver", "subjects": ["alex", "bob"], "scope": {"env_types": ["production"]}},
        {"role": "viewer", "subjects": ["vera"]},
    ]
    return doc


@pytest.fixture
def world(
    sandbox: Sandbox,
    server_process: ServerProcess,
    prometheus: PrometheusServer,
    demo_exporter: DemoExporter,
) -> Iterator[tuple[str, dict[str, str], PrometheusServer]]:
    """A server on the story's estate, every environment deployed on 1.0.0 and scraped by Prometheus."""
    status = sandbox.home / "demo" / "status"
    status.parent.mkdir(parents=True)
    status.symlink_to(demo_exporter.status_dir, target_is_directory=True)
    sandbox.environ["ESTATE_PROMETHEUS_URL"] = prometheus.url
    sandbox.environ["PATH"] = f"{Path(sys.executable).parent}:{sandbox.environ['PATH']}"
    sandbox.apply(story_estate())
    tokens = {user: token_for(sandbox.environ, user) for user in ("root", "alex", "bob")}
    server = server_process(sandbox.environ)
    with httpx.Client(base_url=server.url, headers=bearer(tokens["root"]), timeout=60) as api:
        response = api.post("/api/v1/deployments", json={"envs": [f"shop/{e}" for e in ENVS]})
        job = api.get(response.headers["location"], params={"wait": 30}).json()
        while job["status"] in ("queued", "running"):
            job = api.get(response.headers["location"], params={"wait": 30}).json()
        assert job["status"] == "succeeded" and not job["result"]["problem"], job
    for env in ENVS:
        prometheus.wait_for_metric("pg_errors_ratio", project="shop", env=env, version="1.0.0")
    yield server.url, tokens, prometheus


def confirm(page: Page, control: str, *, says: list[str], fill: dict[str, str] | None = None) -> None:
    """Click a control, read its confirmation (every text of `says` in it), confirm; the dialog closes once the
    state machine (or the job) has accepted the command."""
    page.locator(f'[data-control="{control}"]').click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    for text in says:
        expect(dialog).to_contain_text(text)
    for label, value in (fill or {}).items():
        field = dialog.get_by_label(label)
        if field.get_attribute("type") == "checkbox":
            field.check()
        else:
            field.select_option(value)
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_be_hidden(timeout=LIVE)


def wave_phase(page: Page, number: int, phase: str) -> None:
    expect(page.locator(f"#wave-{number}")).to_have_attribute("data-phase", phase, timeout=LIVE)


def gate_link(page: Page, number: int, subject: str, name: str) -> dict[str, list[str]]:
    href = page.locator(f'#wave-{number} details[data-subject="{subject}"]').get_by_role("link", name=name)
    return parse_qs(urlsplit(href.get_attribute("href") or "").query)


def test_the_story_clicked_through_in_the_browser(  # noqa: PLR0915 - one story, told in order
    world: tuple[str, dict[str, str], PrometheusServer], browser: Browser
) -> None:
    url, tokens, prometheus = world
    alex = browser(url, name="story-alex")
    page = alex.login(tokens["alex"], "/modules/postgres")
    expect(page.locator(".me")).to_contain_text("alex")
    alex.shot("module")

    # The preview: a real plan of every target, wave by wave, before anything starts.
    form = page.locator("#preview-form")
    form.get_by_label("Version").select_option("2.0.0")
    form.get_by_label("Plan").select_option("story")
    form.get_by_role("button", name="Preview the rollout").click()
    preview = page.locator("#preview .preview")
    expect(preview).to_be_visible(timeout=LIVE)
    expect(preview.locator("#pw-1")).to_contain_text("Wave 1 · eph")
    for env in ENVS:
        expect(preview).to_contain_text(f"shop/{env}")
    expect(preview.locator(".warning")).to_contain_text("replace")  # 2.0.0 replaces the null resource
    alex.shot("module-preview")
    preview.get_by_label("I accept the destructive changes").check()
    preview.get_by_role("button", name="Start the rollout").click()
    page.wait_for_url(re.compile(r"/rollouts/postgres-1$"), timeout=LIVE)
    page.evaluate("window.__sameDocument = true")  # a reload would lose it: every update below is live

    # Wave 1 fails its gate, live: the chart shows the samples above the bound, links show the same query.
    wave_phase(page, 1, "failed")
    expect(page.locator(".page-head")).to_have_attribute("data-phase", "halted")
    evidence = page.locator('#wave-1 details[data-subject="shop/eph-1"]')
    expect(evidence).to_contain_text("failed")
    chart = evidence.locator("svg.chart")
    expect(chart.locator("title").first).to_contain_text("against max 0.05: failed")
    assert chart.locator("circle.sample-breach").count() >= 1
    expect(chart.locator(".bound-label")).to_have_text("max 0.05")
    alex.shot("rollout-gate-failed")
    check_links(page, prometheus)

    confirm(page, "rollback 1", says=["Roll back wave 1 (eph)", "shop/eph-1", "shop/eph-2"])
    wave_phase(page, 1, "rolled_back")
    expect(page.locator('tr[data-env="shop/eph-1"]')).to_contain_text("rolled back")

    confirm(
        page,
        "retarget",
        says=["Retarget rollout postgres-1", "from postgres 2.0.0"],
        fill={"Version": "2.0.1", "Allow destructive changes": "yes"},
    )
    expect(page.locator(".page-head h1")).to_contain_text("2.0.1", timeout=LIVE)

    confirm(page, "rerun 1", says=["Rerun wave 1 (eph)", "deployed again with postgres 2.0.1"])
    wave_phase(page, 1, "awaiting_promotion")
    expect(page.locator('#wave-1 details[data-subject="shop/eph-2"]')).to_contain_text("passed")

    confirm(page, "promote", says=["Promote to wave 2 (dev)", "shop/dev-1"])
    wave_phase(page, 2, "awaiting_promotion")
    confirm(page, "promote", says=["Promote to wave 3 (staging)", "shop/stg-1"])
    wave_phase(page, 3, "awaiting_promotion")
    confirm(page, "promote", says=["Promote to wave 4 (prod)", "It first waits for an approval"])
    wave_phase(page, 4, "awaiting_approval")
    alex.shot("rollout-awaiting-approval")

    # Four eyes: Alex started the rollout; his approval is refused, word for word.
    alex.expect_error("409", r"/api/v1/rollouts/postgres-1/approve$")
    page.locator('[data-control="approve"]').click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_contain_text("shop/prod-1")
    dialog.locator("button[type=submit]").click()
    refusal = dialog.locator(".problem")
    expect(refusal).to_contain_text("Refused (409)", timeout=LIVE)
    expect(refusal).to_contain_text("four-eyes")
    expect(refusal).to_contain_text("who started the rollout")
    alex.shot("approval-refused", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    assert page.evaluate("window.__sameDocument") is True
    alex.logout()

    # Bob logs in (his own browser session) and approves production.
    bob = browser(url, name="story-bob")
    page = bob.login(tokens["bob"], "/rollouts/postgres-1")
    confirm(page, "approve", says=["Approve wave 4 (prod)", "shop/prod-1"])
    expect(page.locator(".page-head")).to_have_attribute("data-phase", "completed", timeout=LIVE)
    for number in range(1, 5):
        wave_phase(page, number, "succeeded")
    expect(page.locator("#wave-4 .gate").first).to_contain_text("by bob")
    bob.shot("rollout")

    # The deployment of production: transitions, plan with addresses, masked password, Terraform's log.
    page.locator('tr[data-env="shop/prod-1"]').get_by_role("link").click()
    expect(page.locator(".page-head")).to_have_attribute("data-status", "succeeded")
    expect(page.locator(".transitions")).to_contain_text("applying")
    expect(page.get_by_role("row", name=re.compile("module.db.null_resource.status"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("password"))).to_contain_text("(sensitive)")
    expect(page.locator("#deployment-log")).to_contain_text("Apply complete")
    bob.shot("deployment")

    # The audit trail, filtered: Alex's refused approval with how and from where.
    page.goto(f"{url}/audit?rollout=postgres-1&outcome=refused")
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("alex")
    expect(rows.first).to_contain_text("rollout approve")
    expect(rows.first).to_contain_text("token, http:127.0.0.1")
    bob.shot("audit")
    page.goto(f"{url}/")
    expect(page.locator('tr[data-env="shop/prod-1"]')).to_contain_text("2.0.1")
    bob.shot("estate")
    assert_versions(url, tokens["root"])


def check_links(page: Page, prometheus: PrometheusServer) -> None:
    """The gate's Prometheus link is the gate's query over the wave's window: asked of Prometheus over that range,
    it shows the bad values; the Grafana Explore link carries the same query and range."""
    graph = gate_link(page, 1, "shop/eph-1", "Prometheus")
    query = graph["g0.expr"][0]
    assert query == 'max(pg_errors_ratio{project="shop", env="eph-1"})'
    seconds = int(graph["g0.range_input"][0].removesuffix("s"))
    end = calendar.timegm(time.strptime(graph["g0.end_input"][0], "%Y-%m-%d %H:%M:%S"))
    series = prometheus.query_range(query, end - seconds, end)
    assert max(float(v) for s in series for _, v in s["values"]) > 0.05
    pane = json.loads(gate_link(page, 1, "shop/eph-1", "Grafana Explore")["panes"][0])["estate"]
    assert pane["queries"][0]["expr"] == query
    start_ms, end_ms = int(pane["range"]["from"]), int(pane["range"]["to"])
    assert abs(end_ms - end * 1000) < 1000 and abs(end_ms - start_ms - seconds * 1000) < 1000


def assert_versions(url: str, token: str) -> None:
    with httpx.Client(base_url=url, headers=bearer(token), timeout=30) as api:
        usage = api.get("/api/v1/modules/postgres/usage").json()
    assert {u["env"]: u["version"] for u in usage["environments"]} == {f"shop/{e}": "2.0.1" for e in ENVS}
