"""Save a 1400-wide screenshot of every page of the app into assets/screenshots/, for the README.

Runs the real app on a free port with a throw-away workspace and drives Debian's Chromium:
    .venv/bin/python -m scripts.screenshots    (from the repository root: it imports tests.browser.server)
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from core.registry import DEMO_DATASETS
from tests.browser.server import (
    REPO_ROOT,
    VIEWPORT,
    choose_option,
    launch_browser,
    nav_pages,
    open_page,
    running_app,
    screenshot,
    wait_idle,
)

OUT_DIR = REPO_ROOT / "assets" / "screenshots"
#: Pages shown on another dataset than the default: every glomerulus crop is square, so the
#: padding page shows its differences on the variable-size blood cells.
DATASET_FOR_PAGE = {"padding": "Demo: blood cells (BCCD crops)"}


def pick_dataset(page, name: str) -> None:
    choose_option(page, page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first, name,
                  exact=False)


def capture(base_url: str) -> list[Path]:
    """Click through the sidebar navigation and screenshot each page."""
    saved = []
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(base_url)
        wait_idle(page)
        for name, href in nav_pages(page):
            open_page(page, href)
            if name in DATASET_FOR_PAGE:
                pick_dataset(page, DATASET_FOR_PAGE[name])
            saved.append(OUT_DIR / f"{name}.png")
            screenshot(page, saved[-1])
            if name in DATASET_FOR_PAGE:
                pick_dataset(page, next(iter(DEMO_DATASETS)))
        browser.close()
    return saved


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lumen-home-") as home, running_app(Path(home)) as base_url:
        for path in capture(base_url):
            print(path.relative_to(REPO_ROOT))


if __name__ == "__main__":
    main()
