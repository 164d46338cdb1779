"""Real Chromium for tests (a pytest plugin): Debian's `chromium` driven by Playwright, headless, no sandbox (root),
no background networking, every host name but loopback unresolvable (nothing leaves the machine).

Fixtures:
    chromium_path   Debian's Chromium binary; FAILS (never skips) when missing
    browser         factory: a fresh browser tab on a base URL (`Tab`), at 1280x900 unless told otherwise; every
                    console message and uncaught error of every tab is collected, and the test fails at teardown if
                    any error was not declared with `Tab.expect_error`

Screenshots go to `$ESTATE_TEST_ARTIFACTS/screenshots` (default `.artifacts/screenshots` in the repository).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CHROMIUM = "/usr/lib/chromium/chromium"  # the real binary; /usr/bin/chromium is a shell wrapper
NO_NETWORK = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"
TIMEOUT_MS = 60_000  # a loaded 2-core machine runs Terraform, Prometheus and the server next to the browser


def artifacts() -> Path:
    return Path(os.environ.get("ESTATE_TEST_ARTIFACTS") or REPO / ".artifacts")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("ESTATE_TEST_CHROMIUM") or DEFAULT_CHROMIUM
    if not Path(path).is_file():
        pytest.fail(
            f"Chromium is missing ({path}); `make test` installs it (Debian package `chromium`, via "
            "scripts/install-system-deps.sh)",
            pytrace=False,
        )
    return path


@dataclass
class Tab:
    """One browser tab (its own cookie jar) on the server at `base_url`."""

    page: Page
    base_url: str
    name: str
    messages: list[str] = field(default_factory=list)  # every console message, as "type: text (url)"
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    expected: list[tuple[str, str]] = field(default_factory=list)  # (text pattern, url pattern) still expected

    def goto(self, path: str) -> Page:
        self.page.goto(self.base_url + path)
        return self.page

    def login(self, token: str, path: str = "/") -> Page:
        """Open `path`; on the login page it leads to, log in with `token` and come back."""
        self.goto(path)
        self.page.get_by_label(re.compile("token", re.I)).fill(token)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(re.compile(re.escape(self.base_url + path.split("?", maxsplit=1)[0])))
        return self.page

    def logout(self) -> None:
        self.page.get_by_role("button", name="Log out").click()
        self.page.wait_for_url(re.compile(r"/login"))

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        """Save a screenshot as a test artifact (`<tab>-<name>.png`)."""
        path = artifacts() / "screenshots" / f"{self.name}-{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def expect_error(self, text: str, url: str) -> None:
        """Declare one console error this test provokes on purpose (e.g. Chromium's note of a 409 response)."""
        self.expected.append((text, url))

    def _console(self, message: ConsoleMessage) -> None:
        where = message.location.get("url", "") if message.location else ""
        line = f"{message.type}: {message.text} ({where})"
        self.messages.append(line)
        if message.type == "error":
            for i, (text, url) in enumerate(self.expected):
                if re.search(text, message.text) and re.search(url, where):
                    del self.expected[i]
                    return
            self.errors.append(line)

    def _page_error(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")


Browser = Callable[..., Tab]


@pytest.fixture
def browser(chromium_path: str, request: pytest.FixtureRequest) -> Iterator[Browser]:
    tabs: list[Tab] = []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=[NO_NETWORK])

        def open_tab(base_url: str, *, width: int = 1280, height: int = 900, name: str | None = None) -> Tab:
            context = chromium.new_context(viewport={"width": width, "height": height}, locale="en-GB")
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            tab = Tab(page, base_url, name or f"{request.node.name}-{len(tabs)}")
            page.on("console", tab._console)
            page.on("pageerror", tab._page_error)
            tabs.append(tab)
            return tab

        try:
            yield open_tab
        finally:
            for tab in tabs:
                tab.page.context.close()
            chromium.close()
    problems = [f"{t.name}: {e}" for t in tabs for e in t.errors]
    missing = [f"{t.name}: expected {e}" for t in tabs for e in t.expected]
    assert not problems and not missing, "the browser's console:\n" + "\n".join(problems + missing)
