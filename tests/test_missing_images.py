"""Images that moved after a run was trained (a drive not mounted, a renamed folder): every page
says so plainly, none shows a traceback, and the numbers that need no image stay."""
import shutil

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import registry
from core.sources import SourceSpec
from tests.conftest import ROOT, open_page, train_tiny_run

DEMO_IMAGES = ROOT / "assets" / "demo" / "glomeruli" / "images"


@pytest.fixture(scope="module")
def home_with_vanished_images(tmp_path_factory):
    home, folder = tmp_path_factory.mktemp("vanished-home"), tmp_path_factory.mktemp("images")
    for cls in ("GS", "nonGS"):
        (folder / cls).mkdir()
        for path in sorted((DEMO_IMAGES / cls).glob("*.jpg"))[:20]:
            shutil.copy(path, folder / cls / path.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUMEN_HOME", str(home))
        registry.add_dataset("moved", SourceSpec(path=str(folder)), who="admin")
    train_tiny_run(home, spec=SourceSpec(path=str(folder)), dataset_name="moved")
    shutil.rmtree(folder)
    return home


@pytest.mark.parametrize("page", ["pages/embeddings.py", "pages/gradcam.py", "pages/review.py"])
def test_run_pages_explain_missing_images(home_with_vanished_images, monkeypatch, page):
    at = open_page(page, home_with_vanished_images, monkeypatch, "tiny")  # fails on any exception
    assert any("Cannot read the images of the run tiny" in e.value for e in at.error)


def test_threshold_numbers_stay_without_images(home_with_vanished_images, monkeypatch):
    at = open_page("pages/threshold.py", home_with_vanished_images, monkeypatch, "tiny")
    assert not at.error and at.get("plotly_chart")
    assert not any(radio.key == "thr_cell" for radio in at.radio)  # the closed gallery does not run
    at.session_state["thr_gallery"] = True
    at.run()
    at.radio(key="thr_cell").set_value("TN").run()  # the gallery of a matrix cell needs the images
    assert not at.exception, [e.value for e in at.exception]
    assert any("cannot be read" in w.value for w in at.warning)


@pytest.mark.parametrize("page", ["pages/dataset.py", "pages/padding.py"])
def test_dataset_pages_explain_a_missing_folder(home_with_vanished_images, monkeypatch, page):
    monkeypatch.setenv("LUMEN_HOME", str(home_with_vanished_images))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["dataset"] = "moved"
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No such file or folder" in e.value for e in at.error)


@pytest.mark.parametrize("page", ["pages/dataset.py", "pages/padding.py", "pages/train.py", "pages/embeddings.py"])
def test_a_csv_naming_only_missing_files_is_explained_on_every_page(tmp_path, monkeypatch, page):
    (tmp_path / "list.csv").write_text("path,label\na.png,x\nb.png,y\n")
    registry.add_dataset("nothing here", SourceSpec(path=str(tmp_path / "list.csv")), who="admin")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["dataset"] = "nothing here"
    at.switch_page(page)
    at.run()
    if page == "pages/embeddings.py":
        at.radio(key="emb_source").set_value("an untrained backbone (no run needed)").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.warning  # each page says why it has nothing to show
    if page == "pages/train.py":
        assert at.button(key="train_launch").disabled


def test_one_image_gone_leaves_review_and_gradcam_working(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    for cls in ("GS", "nonGS"):
        (folder / cls).mkdir(parents=True)
        for path in sorted((DEMO_IMAGES / cls).glob("*.jpg"))[:20]:
            shutil.copy(path, folder / cls / path.name)
    home = tmp_path / "home"
    run_dir = train_tiny_run(home, spec=SourceSpec(path=str(folder)))
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    first = preds[preds["split"] == "test"]["item_id"].iloc[0]
    (folder / first).unlink()
    review = open_page("pages/review.py", home, monkeypatch, "tiny")
    review.multiselect(key="rv_split").set_value(["test"])
    review.selectbox(key="rv_sort").select("item").run()
    assert not review.exception, [e.value for e in review.exception]
    cam = open_page("pages/gradcam.py", home, monkeypatch, "tiny")
    cam.radio(key="cam_set").set_value("ids").run()
    cam.multiselect(key="cam_ids").set_value(preds[preds["split"] == "test"]["item_id"].iloc[:3].tolist()).run()
    assert not cam.exception, [e.value for e in cam.exception]
    assert any("cannot be read" in w.value for w in [*review.warning, *cam.warning])
