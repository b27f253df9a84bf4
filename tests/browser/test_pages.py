"""Click through every page of the real app in Chromium: no exception box, no uncaught error."""
from __future__ import annotations

import shutil
import warnings

import pytest

from tests.browser.server import REPO_ROOT, nav_pages, open_page, screenshot, wait_idle

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
EXCEPTION = '[data-testid="stException"]'


def test_every_page_renders(page, app_url):
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    page.goto(app_url)
    wait_idle(page)
    pages = nav_pages(page)
    for name, href in pages:
        open_page(page, href)
        screenshot(page, SCREENSHOTS / f"{name}.png")
        assert_clean(page, name)
    assert len(pages) >= 2, f"expected at least 2 pages in the sidebar, found {pages}"


def assert_clean(page, name: str) -> None:
    """Fail on a Streamlit exception box or an uncaught script error; warn on console errors."""
    exceptions = page.locator(EXCEPTION).all_inner_texts()
    if exceptions:
        pytest.fail(f"page {name!r} shows an exception:\n" + "\n---\n".join(exceptions))
    assert not page.page_errors, f"uncaught errors on page {name!r}: {page.page_errors}"
    for message in page.console_errors:
        warnings.warn(f"console error on page {name!r}: {message}", stacklevel=2)
    page.console_errors.clear()


def test_deep_links_open_their_page_and_keep_the_dataset(page, app_url):
    """A bookmarked /dataset and a link that names a dataset both open what they say."""
    page.goto(f"{app_url}/dataset?dataset=Demo%3A+blood+cells+%28BCCD+crops%29")
    wait_idle(page)
    assert page.get_by_text("Page not found").count() == 0
    assert page.locator("h1").first.inner_text() == "Demo: blood cells (BCCD crops)"
    page.goto(f"{app_url}/padding?dataset=no-such-dataset")  # an unknown name falls back to the first
    wait_idle(page)
    assert_clean(page, "padding")
