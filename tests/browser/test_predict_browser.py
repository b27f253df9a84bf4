"""In Chromium: a run trained on two glomeruli centres is validated on the third from the Predict
page, through a real background job, and the page shows per-centre figures."""
from __future__ import annotations

import pytest

from core import external, prediction_jobs, rundir
from tests.browser.server import running_app, wait_idle
from tests.browser.test_train_browser import choose, fill
from tests.conftest import EXTERNAL_CENTRE, TRAIN_CENTRES, train_centre_run

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def own_app(tmp_path_factory):
    """The app on a workspace of this module's own (its home and URL): its trained run must not change
    what the other browser tests' shared app shows (a workspace with runs folds the Train page's form)."""
    home = tmp_path_factory.mktemp("lumen-home-predict")
    with running_app(home) as base_url:
        yield home, base_url


GRID_TEXT_JS = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
    .map(frame => frame.textContent).join('\\n')"""


def test_two_centre_run_validated_on_the_third_with_per_centre_figures(page, own_app, tmp_path):
    app_home, app_url = own_app
    run_dir, every = train_centre_run(app_home, tmp_path / "csv")
    page.goto(f"{app_url}/predict")
    wait_idle(page)
    choose(page, "Run", run_dir.name)
    page.get_by_text("A folder or CSV path on the server").click()
    wait_idle(page)
    fill(page, "Path on the server", str(every))
    name = page.get_by_label("Name of the prediction set", exact=True).input_value()
    page.get_by_role("button", name="Launch the prediction").click()
    page.get_by_text("Break the set down by").wait_for(timeout=240_000)  # the job ran in its own process
    wait_idle(page)

    job = prediction_jobs.status(run_dir, name)
    assert job["state"] == "finished" and job["done"] == job["total"] == 300
    assert page.get_by_text(f"{name} beside the test split").count() == 1
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 6  # matrix, ROC, PR for each side
    table = external.breakdown(run_dir, name, f"{rundir.SOURCE_COLUMN_PREFIX}center")
    assert sorted(table["center"]) == sorted([*TRAIN_CENTRES, EXTERNAL_CENTRE])
    shown = page.evaluate(GRID_TEXT_JS)
    for row in table.itertuples(index=False):
        assert row.center in shown
        assert f"{row._3:.3f}" in shown  # ROC AUC of the centre, as the table shows it
        assert row._4 in shown  # its interval
    assert page.locator('[data-testid="stException"]').count() == 0
