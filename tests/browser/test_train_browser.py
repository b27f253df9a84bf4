"""In Chromium: launch a tiny run from the Train page, close the tab, reopen, find it finished."""
from __future__ import annotations

import pytest

from tests.browser.server import choose_option, wait_idle

pytestmark = pytest.mark.browser


def choose(page, label: str, option: str, idle_ms: int = 60_000) -> None:
    choose_option(page, page.locator('[data-testid="stSelectbox"]').filter(has_text=label), option,
                  idle_ms=idle_ms)


def fill(page, label: str, value: str, idle_ms: int = 60_000) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_idle(page, timeout_ms=idle_ms)


def test_launch_close_reopen_finished(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{app_url}/train")
    wait_idle(page)
    choose(page, "Image size (px)", "32")
    fill(page, "Epochs", "2")
    page.get_by_role("button", name="Launch run").click()
    page.get_by_text("· running").or_(page.get_by_text("· queued")).or_(
        page.get_by_text("· finished")).first.wait_for(timeout=60_000)
    page.close()  # the run must not depend on the tab

    page = context.new_page()
    page.goto(f"{app_url}/train")
    page.get_by_text("· finished").first.wait_for(timeout=180_000)
    wait_idle(page)
    assert page.get_by_text("Best epoch").count() >= 1
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 2
    assert page.locator('[data-testid="stException"]').count() == 0
    context.close()
