"""AppTest of the Predict page on the embedded demo run: its external set is shown beside the test
split without training, and the model bundle comes as a zip whose predict.py agrees with core predict."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import app_test

from core import bundle_predict, rundir
from tests.conftest import open_page
from tests.test_identity import AUTH, ROLES
from ui.text import md

DEMO = rundir.demo_runs()[0]
EXTERNAL = "centre-SAS"


class _KeptStorage(MemoryMediaFileStorage):
    """The media storage AppTest makes for each run, kept so the test can read what a button serves."""

    made: list[MemoryMediaFileStorage] = []

    def __init__(self, media_endpoint: str) -> None:
        super().__init__(media_endpoint)
        _KeptStorage.made.append(self)


def _served(url: str) -> bytes:
    return _KeptStorage.made[-1].get_file(url.rsplit("/", 1)[-1]).content


def test_the_demo_runs_external_set_is_shown_beside_its_test_split(lumen_home, monkeypatch):
    at = open_page("pages/predict.py", lumen_home, monkeypatch, DEMO.name)
    assert at.selectbox(key="predict_set").value == EXTERNAL
    assert any(f"{md(EXTERNAL)} beside the test split" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 6  # matrix, ROC and PR for each side


@pytest.mark.slow
def test_the_bundle_button_gives_a_zip_that_predicts_as_core_predict(lumen_home, monkeypatch, tmp_path):
    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", _KeptStorage)
    at = open_page("pages/predict.py", lumen_home, monkeypatch, DEMO.name)
    assert not at.get("download_button") or all(b.label != "Download model bundle" for b in at.get("download_button"))
    at.button(key="predict_bundle_make").click().run()
    assert not at.exception, [e.value for e in at.exception]
    button = next(b for b in at.get("download_button") if b.proto.label == "Download model bundle")
    with zipfile.ZipFile(io.BytesIO(_served(button.proto.url))) as archive:
        archive.extractall(tmp_path)
    folder = tmp_path / DEMO.name
    assert sorted(p.name for p in folder.iterdir()) == sorted(["model.pt", "preprocessor.json", "classes.json",
                                                               "operating_point.json", "MODEL_CARD.md", "predict.py"])
    assert (folder / "predict.py").read_bytes() == Path(bundle_predict.__file__).read_bytes()

    shipped = rundir.read_prediction_set(DEMO, EXTERNAL).set_index("path")  # made by core predict
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LUMEN_HOME")}
    done = subprocess.run([sys.executable, str(folder / "predict.py"), *shipped.index, "--out", "out.csv"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    theirs = pd.read_csv(tmp_path / "out.csv")
    assert len(theirs) == len(shipped)
    ours = shipped.assign(file=[os.path.basename(p) for p in shipped.index]).set_index("file")
    theirs = theirs.assign(file=[os.path.basename(f) for f in theirs["file"]]).set_index("file").loc[ours.index]
    np.testing.assert_allclose(theirs[["prob_GS", "prob_nonGS"]], ours[["prob_GS", "prob_nonGS"]], atol=1e-5)


def test_a_viewer_is_offered_no_bundle(lumen_home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("LUMEN_HOME", str(lumen_home))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets = {"auth": AUTH, "lumen": {"roles": ROLES}}
    at.user = {"is_logged_in": True, "email": "vera@lab.org", "email_verified": True}
    at.session_state["analysis_run"] = DEMO.name
    at.switch_page("pages/predict.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"{md(EXTERNAL)} beside the test split" in m.value for m in at.markdown)  # a viewer may look
    assert "Model bundle: the model out of Lumen" not in [e.label for e in at.expander]
