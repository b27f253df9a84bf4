"""In Chromium, on a run of 1e6 predictions (tests/big_run.py): how long an arrow key on the threshold
slider takes to show a new confusion matrix. The times are printed and written, not asserted."""
from __future__ import annotations

import statistics
import time

import pytest

from tests.big_run import home_with_big_run
from tests.browser.server import REPO_ROOT, free_port, start_app, stop_app, wait_idle
from tests.browser.test_analysis_browser import MATRIX_CHANGED_JS

pytestmark = pytest.mark.browser
PRESSES = 7


@pytest.fixture(scope="module")
def app_home(tmp_path_factory):
    return home_with_big_run(tmp_path_factory, "lumen-home-big-threshold", n=1_000_000, dim=4)


@pytest.fixture(scope="module")
def app_url(app_home):
    process, base_url = start_app(free_port(), app_home)
    yield base_url
    stop_app(process)


def test_arrow_key_to_new_matrix_at_a_million_predictions(page, app_url):
    page.goto(f"{app_url}/threshold")
    wait_idle(page, timeout_ms=300_000)
    (REPO_ROOT / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(REPO_ROOT / "test-artifacts" / "threshold-1e6.png"), full_page=True)
    page.get_by_text("(100,000 items").first.wait_for(timeout=300_000)  # the big run's validation split
    slider = page.get_by_role("slider").first
    latencies = []
    for _ in range(PRESSES):
        matrix = page.locator('[data-testid="stPlotlyChart"]').first.inner_text()
        slider.focus()
        start = time.perf_counter()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(MATRIX_CHANGED_JS, arg=matrix, timeout=60_000)
        latencies.append(time.perf_counter() - start)
        wait_idle(page)  # the next press starts from a page at rest
    shown = ", ".join(f"{t * 1000:.0f}" for t in latencies)
    median = statistics.median(latencies) * 1000
    line = f"1e6 predictions: arrow key to new confusion matrix, ms: {shown}; median {median:.0f}"
    (REPO_ROOT / "test-artifacts" / "threshold_latency_1e6.txt").write_text(line + "\n")
    print(line)
    assert page.locator('[data-testid="stException"]').count() == 0
