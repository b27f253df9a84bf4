"""In Chromium: launch a 2-configuration x 2-seed study from the Train page and see its table fill in
as the four real background runs finish."""
from __future__ import annotations

import pytest

from core import study
from tests.browser.server import free_port, start_app, stop_app, wait_idle
from tests.browser.test_train_browser import choose, fill

pytestmark = pytest.mark.browser

GRID_TEXT_JS = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
    .map(frame => frame.textContent).join('\\n')"""


@pytest.fixture(scope="module")
def app_home(tmp_path_factory):
    """A workspace of this module's own: its study's runs must not change what the other browser
    tests' shared app shows."""
    return tmp_path_factory.mktemp("lumen-home-study")


@pytest.fixture(scope="module")
def app_url(app_home):
    process, base_url = start_app(free_port(), app_home)
    yield base_url
    stop_app(process)


#: generous: under load the run list's two-second poll leaves the page quiet only now and then
IDLE_MS = 240_000


def settle(page) -> None:
    wait_idle(page, timeout_ms=IDLE_MS)


def pick(page, label: str, *options: str) -> None:
    """Choose options of the multiselect whose label is `label`: type each, take the one match."""
    box = page.locator('[data-testid="stMultiSelect"]').filter(has_text=label).locator("input")
    for option in options:
        box.click()
        box.press_sequentially(option)
        page.get_by_role("option", name=option, exact=True).wait_for()
        box.press("Enter")
        settle(page)
    page.keyboard.press("Escape")
    settle(page)


def test_a_two_by_two_study_from_the_browser_fills_in_its_table(page, app_url, app_home, monkeypatch):
    page.goto(f"{app_url}/train")
    settle(page)
    page.locator('[data-testid="stRadio"]').get_by_text("a study").click()
    settle(page)
    choose(page, "Image size (px)", "32", IDLE_MS)
    fill(page, "Epochs", "1", IDLE_MS)
    fill(page, "Batch size", "64", IDLE_MS)
    pick(page, "Fields to vary", "Pad mode")
    pick(page, "Pad mode: values", "zero", "reflect")
    fill(page, "Seeds", "2", IDLE_MS)
    page.get_by_text("2 configurations × 2 runs = 4 runs").wait_for(timeout=IDLE_MS)
    page.get_by_role("button", name="Launch study").click()
    page.get_by_text("Studies", exact=True).wait_for(timeout=60_000)

    monkeypatch.setenv("LUMEN_HOME", str(app_home))
    (study_dir,) = study.list_studies()
    assert len(study.read_record(study_dir)["runs"]) == 4
    page.get_by_text("4 runs: 4 finished").wait_for(timeout=900_000)  # the fragment polls the run folders
    settle(page)
    shown = page.evaluate(GRID_TEXT_JS)
    table = study.formatted(study.summary(study_dir))
    assert table["runs"].tolist() == ["2/2", "2/2"]
    for value in [*table["test AUC (mean ± sd)"], *table["test accuracy (mean ± sd)"]]:
        assert " ± " in value and value in shown
    assert page.get_by_text("Every figure is from the test split; 2 seed(s), one split shared by all").count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0
