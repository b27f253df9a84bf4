"""In Chromium, on the embedded demo run: the threshold slider, clicking a point in the embedding, and
labelling with the keyboard on the review page."""
from __future__ import annotations

import csv
import io
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from core import annotations, rundir
from tests.browser.server import REPO_ROOT, choose_option, nav_pages, open_page, wait_idle

pytestmark = pytest.mark.browser
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="module", autouse=True)
def demo_run_exists():
    assert rundir.demo_runs(), "the embedded demo run (assets/demo/runs) is missing: run scripts/make_demo_run.py"


MATRIX_CHANGED_JS = """old => {
    const chart = document.querySelector('[data-testid="stPlotlyChart"]');
    const text = chart ? chart.innerText : "";
    return text.includes("Confusion matrix") && text !== old;
}"""


def test_threshold_slider_updates_the_matrix(page, app_url):
    page.goto(f"{app_url}/threshold")
    wait_idle(page)
    matrix = page.locator('[data-testid="stPlotlyChart"]').first
    before = matrix.inner_text()
    slider = page.get_by_role("slider").first
    slider.focus()
    start = time.perf_counter()
    # Threshold 0: every item is called positive. (Not 1: a saturated score of exactly 1.0 still counts.)
    page.keyboard.press("Home")
    expect(slider).to_have_value("0")
    # The chart is looked up again on every poll: Streamlit may re-mount it during the fragment's rerun.
    page.wait_for_function(MATRIX_CHANGED_JS, arg=before, timeout=30_000)
    latency = time.perf_counter() - start
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "threshold_latency.txt").write_text(f"{latency:.3f}\n")
    print(f"slider move to new confusion matrix: {latency * 1000:.0f} ms")
    wait_idle(page)
    assert matrix.inner_text() != before
    assert page.locator('[data-testid="stException"]').count() == 0


def _click_isolated_point(page) -> None:
    """Click the most isolated point, so the click cannot land on a neighbour."""
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    x, y = plot.evaluate("""gd => {
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const area = gd.querySelector('.nsewdrag').getBoundingClientRect(), points = [];
        gd._fullData.forEach(t => { for (let i = 0; i < t.x.length; i++)
            points.push([area.left + xa.l2p(t.x[i]), area.top + ya.l2p(t.y[i])]); });
        let best = points[0], far = -1;
        for (const p of points) {
            let near = Infinity;
            for (const q of points) if (q !== p) near = Math.min(near, Math.hypot(p[0] - q[0], p[1] - q[1]));
            if (near > far) { far = near; best = p; }
        }
        return best;
    }""")
    page.mouse.move(x, y)
    page.mouse.click(x, y)


def test_clicking_a_point_opens_the_image(page, app_url):
    page.goto(f"{app_url}/embeddings")
    wait_idle(page)
    choose_option(page, page.locator('[data-testid="stSelectbox"]').filter(has_text="Method"), "PCA")
    _click_isolated_point(page)
    page.get_by_text("model input (padding visible)").wait_for(timeout=60_000)
    wait_idle(page)
    assert page.get_by_text("Nearest neighbours in feature space").count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0


def _tagged_by(app_home, reader: str) -> int:
    store = annotations.open_store(f"sqlite:///{app_home / 'annotations.db'}")
    return sum(int((store.current(key, reader)["status"] == "to review").sum()) for key in store.datasets())


def _sign_in_on_review(page, app_url, reader: str) -> None:
    """Open the Review page and type the reader's name in the sidebar."""
    page.goto(f"{app_url}/review")
    wait_idle(page)
    name = page.get_by_label("Your name (recorded with every label)")
    name.fill(reader)
    name.press("Enter")
    wait_idle(page)


def test_box_selection_tags_a_group_for_review(page, app_url, app_home):
    _sign_in_on_review(page, app_url, "Dr Lasso")
    open_page(page, dict(nav_pages(page))["embeddings"])  # in the same session: the name stays
    choose_option(page, page.locator('[data-testid="stSelectbox"]').filter(has_text="Method"), "PCA")
    plot = page.locator(".js-plotly-plot").first
    plot.hover()
    plot.locator('[data-title="Box Select"]').click()
    box = plot.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=10)
    page.mouse.move(box["x"] + box["width"] - 5, box["y"] + box["height"] - 5, steps=10)
    page.mouse.up()
    wait_idle(page)
    button = page.get_by_role("button", name="Tag these")
    count = int(button.inner_text().split("Tag these ")[1].split(" ")[0].replace(",", ""))
    assert count > 1
    button.click()
    deadline = time.monotonic() + 30
    while _tagged_by(app_home, "Dr Lasso") != count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _tagged_by(app_home, "Dr Lasso") == count


LABEL_BUTTONS_LIVE_JS = """() => [...document.querySelectorAll('[data-testid="stButton"] button')]
    .some((b) => b.innerText.includes("uncertain") && !b.disabled)"""


def _labels_by(app_home, reader: str) -> int:
    store = annotations.open_store(f"sqlite:///{app_home / 'annotations.db'}")
    return sum(len(store.current(key, reader).dropna(subset=["label"])) for key in store.datasets())


def _wait_for_labels(page, app_home, reader: str, count: int, timeout_s: float = 30) -> None:
    """Wait until `reader` has `count` labels in the store, then for the page to settle."""
    deadline = time.monotonic() + timeout_s
    while _labels_by(app_home, reader) != count and time.monotonic() < deadline:
        time.sleep(0.2)
    wait_idle(page)
    assert _labels_by(app_home, reader) == count


def _download(page, button: str, tries: int = 3):
    """The file a download button serves. Its bytes are made on the click, in a rerun; a click that
    lands while another rerun redraws the button is lost (seen on a loaded machine), so it is tried
    again a few times."""
    for attempt in range(tries):
        try:
            with page.expect_download(timeout=30_000) as download:
                page.get_by_role("button", name=button).click()
            return download.value.path()
        except PlaywrightTimeoutError:
            if attempt == tries - 1:
                raise
            wait_idle(page)


def test_label_three_items_clear_one_with_the_keyboard_and_export(page, app_url, app_home):
    _sign_in_on_review(page, app_url, "Dr Browser")
    page.evaluate("document.activeElement.blur()")  # keys typed into the name box are not shortcuts
    page.wait_for_function(LABEL_BUTTONS_LIVE_JS)  # the name has reached the server: keys now label
    for done in range(1, 4):
        page.keyboard.press("1")
        _wait_for_labels(page, app_home, "Dr Browser", done)
    page.keyboard.press("ArrowLeft")  # back to the third item, then withdraw its label
    wait_idle(page)
    page.keyboard.press("Backspace")
    _wait_for_labels(page, app_home, "Dr Browser", 2)
    page.get_by_label("Note").press("1")  # a digit typed into a note is text, not a label
    wait_idle(page)
    assert _labels_by(app_home, "Dr Browser") == 2
    page.get_by_role("tab", name="Export").click()
    wait_idle(page)
    rows = list(csv.DictReader(io.StringIO(_download(page, "Annotations (CSV)").read_text())))
    mine = [r for r in rows if r["reader"] == "Dr Browser"]
    assert len(mine) == 3 and sum(bool(r["label"]) for r in mine) == 2


def test_matrix_cell_opens_in_gradcam_with_a_dataset_in_the_url(page, app_url):
    """Switching pages must keep working when the sidebar's dataset sits in the URL."""
    page.goto(f"{app_url}/threshold?dataset=Demo%3A+blood+cells+%28BCCD+crops%29")
    wait_idle(page)
    page.get_by_text("From numbers to images").click()
    wait_idle(page)
    page.get_by_role("button", name="Open these").click()
    page.get_by_role("heading", name="Grad-CAM").wait_for(timeout=60_000)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "dataset=" in page.url  # the sidebar's choice is still in the address
