"""Fixtures for the real-browser tests: the app on a free port, Debian's Chromium, a page."""
from __future__ import annotations

import pytest

from tests.browser.server import CHROMIUM, CHROMIUM_MISSING, VIEWPORT, launch_browser, running_app


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium for the whole session; a missing browser fails, never skips."""
    if not CHROMIUM.exists():
        pytest.fail(CHROMIUM_MISSING, pytrace=False)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = launch_browser(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def app_home(tmp_path_factory):
    """The private LUMEN_HOME of the app under test (its runs, caches and annotation database)."""
    return tmp_path_factory.mktemp("lumen-home-browser")


@pytest.fixture(scope="session")
def app_url(app_home):
    """Base URL of `streamlit run app.py` with a private LUMEN_HOME, stopped after the session."""
    with running_app(app_home) as base_url:
        yield base_url


@pytest.fixture
def page(browser):
    """A fresh 1400x1000 page; `page.console_errors` and `page.page_errors` collect problems."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.console_errors = []
    tab.page_errors = []
    tab.on("console", lambda msg: msg.type == "error" and tab.console_errors.append(msg.text))
    tab.on("pageerror", lambda error: tab.page_errors.append(str(error)))
    yield tab
    context.close()
