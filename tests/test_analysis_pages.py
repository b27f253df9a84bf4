"""AppTest of the Embeddings and Grad-CAM pages on a real tiny run."""
import json

import pytest
from streamlit.testing.v1 import AppTest

from core import rundir, train
from core.registry import DEMO_DATASETS
from core.runconfig import make_config
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("analysis-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUMEN_HOME", str(home))
        config = make_config({"dataset": {"name": "g", "source": next(iter(DEMO_DATASETS.values())).to_dict()},
                              "preprocess": {"size": 32}, "epochs": 1, "batch_size": 64})
        run = home / "runs" / "tiny"
        run.mkdir(parents=True)
        rundir.config_path(run).write_text(json.dumps(config))
        train.run(config, run)
    return home


def open_page(home, monkeypatch, page: str) -> AppTest:
    monkeypatch.setenv("LUMEN_HOME", str(home))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.session_state["analysis_run"] = "tiny"
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_embeddings_page_draws_each_method(home, monkeypatch):
    at = open_page(home, monkeypatch, "pages/embeddings.py")
    for method in ("pca", "tsne"):
        at.selectbox(key="emb_method").select(method).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("300 items" in c.proto.spec for c in at.get("plotly_chart"))
    at.toggle(key="emb_side").set_value(True).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2
    assert list((home / "runs" / "tiny" / "embeddings").glob("tsne-*.npy"))


def test_gradcam_page_single_and_set(home, monkeypatch):
    at = open_page(home, monkeypatch, "pages/gradcam.py")
    at.radio(key="cam_set").set_value("random").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("image")) >= 3
    at.selectbox(key="cam_method_single").select("GradCAM++").run()
    assert not at.exception
    assert any("inside the annotated mask" in c.value for c in at.caption)
    at.multiselect(key="cam_methods").set_value(["GradCAM", "EigenCAM"]).run()
    assert not at.exception
    assert sum("Removing the most salient" in m.value for m in at.markdown) == 2
