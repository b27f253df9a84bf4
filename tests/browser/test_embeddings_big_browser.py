"""In Chromium, the Embeddings map at 100,000 points (tests/big_run.py, PCA layout): the lasso
selects a group there, and the page shows it. The time from releasing the mouse to the selection's
gallery is printed and written, not asserted."""
from __future__ import annotations

import time

import pytest

from tests.big_run import home_with_big_run
from tests.browser.server import REPO_ROOT, choose_option, running_app, wait_idle

pytestmark = pytest.mark.browser
POINTS = 100_000


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(home_with_big_run(tmp_path_factory, "lumen-home-big-embeddings", n=POINTS)) as url:
        yield url


def test_lasso_selects_a_group_at_100k_points(page, app_url):
    page.goto(f"{app_url}/embeddings")
    wait_idle(page, timeout_ms=300_000)
    choose_option(page, page.locator('[data-testid="stSelectbox"]').filter(has_text="Method"), "PCA")
    wait_idle(page, timeout_ms=300_000)
    page.get_by_text(f"({POINTS:,} items)").first.wait_for(timeout=300_000)
    plot = page.locator(".js-plotly-plot").first
    plot.hover()
    plot.locator('[data-title="Lasso Select"]').click()
    box = plot.locator(".nsewdrag").first.bounding_box()
    cx, cy, rx, ry = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"] / 8, box["height"] / 8
    page.mouse.move(cx - rx, cy - ry)
    page.mouse.down()
    for x, y in ((cx + rx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry), (cx - rx, cy - ry)):
        page.mouse.move(x, y, steps=8)
    start = time.perf_counter()
    page.mouse.up()
    shown = page.get_by_text("selected items").first
    shown.wait_for(timeout=120_000)
    latency = time.perf_counter() - start
    wait_idle(page, timeout_ms=120_000)
    count = int(shown.inner_text().split(" selected items")[0].replace(",", ""))
    assert 1 < count < POINTS  # a group from the middle of the map, not nothing and not everything
    assert page.locator('[data-testid="stException"]').count() == 0
    line = f"{POINTS:,} points: lasso of {count:,} to the selection's gallery in {latency * 1000:.0f} ms"
    (REPO_ROOT / "test-artifacts").mkdir(exist_ok=True)
    (REPO_ROOT / "test-artifacts" / "lasso_100k.txt").write_text(line + "\n")
    print(line)
