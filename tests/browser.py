"""A real headless browser for the tests that look at a page as a person would.

Debian's Chromium (``/usr/bin/chromium``, installed by ``make browser``) driven by Playwright:
Playwright's own browser download is not used, so nothing is fetched at test time. A page is
opened from a URL or an HTML file; every console error and uncaught exception it raises is
collected, so a test can assert there were none. Screenshots go under ``tests/output/``
(git-ignored) for a person to look at.

A machine without Chromium skips these tests, saying why; CI (``CI`` set) or
``QL_REQUIRE_BROWSER=1`` turns that skip into a failure, so that ``make test`` can never pass
without having looked.

Example:
    >>> with open_page(tmp_path / "report.html") as visit:
    ...     visit.page.get_by_role("heading", name="Summary").is_visible()
    ...     visit.screenshot("report")
    >>> assert visit.errors == []
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).parent / "output"  # screenshots, git-ignored


@dataclass
class Visit:
    """An open page and what went wrong on it so far."""

    page: Page
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        """Saves the page as ``tests/output/<name>.png``; returns the path."""
        OUTPUT.mkdir(exist_ok=True)
        path = OUTPUT / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def require_chromium() -> Path:
    """The browser's path; skips (or, in CI, fails) the calling test when it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} not found: run `make browser` (Debian's chromium)"
    required = os.environ.get("CI") or os.environ.get("QL_REQUIRE_BROWSER")
    if required and required.strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message} (CI or QL_REQUIRE_BROWSER is set)", pytrace=False)
    pytest.skip(f"{message}; CI=true or QL_REQUIRE_BROWSER=1 makes this a failure")


@contextmanager
def open_page(
    target: str | Path, *, width: int = 1280, height: int = 900, timeout_ms: int = 30_000
) -> Iterator[Visit]:
    """Opens ``target`` (a URL, or an HTML file's path) in headless Chromium.

    Args:
        target: ``http://...`` or a local file.
        width: the viewport's width in CSS pixels (a screenshot keeps it).
        height: the viewport's height; full-page screenshots extend past it.
        timeout_ms: how long loading and each action may take (a loaded machine is slow).

    Yields:
        The visit: the Playwright page, for queries and clicks, and the errors seen so far.
    """
    executable = require_chromium()
    url = target if isinstance(target, str) else target.resolve().as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_ms)
            visit = Visit(page)

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    visit.errors.append(f"console: {message.text}")

            def on_page_error(error: Error) -> None:
                visit.errors.append(f"uncaught: {error.message}")

            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            page.goto(url, wait_until="load")
            yield visit
        finally:
            browser.close()
