"""`python -m core bundle`: TorchScript, the model card, and predict.py agreeing with `core predict`."""
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core import bundle_predict, evaluation
from core.__main__ import main
from core.bundle import traced_model
from core.images import load_array
from core.models import build_model
from core.preprocess import FIT_MODES, PAD_MODES, Preprocessor
from core.workspace import DEMO_DIR
from tests.conftest import gradient, train_tiny_run, write_mode_zoo

DEMO_IMAGES = sorted((DEMO_DIR / "glomeruli" / "images").rglob("*.jpg"))


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript's deprecation notice
@pytest.mark.parametrize("name", ["simple_cnn", "logistic", pytest.param("resnet18", marks=pytest.mark.slow)])
@pytest.mark.parametrize("channels", [1, 3])
def test_traced_model_gives_the_models_logits_at_any_batch_size(name, channels):
    torch.manual_seed(0)
    model, _ = build_model(name, 3, in_channels=channels, pretrained="none")
    preprocessor = Preprocessor(32, channels=channels, normalize="imagenet")
    buffer = io.BytesIO()
    torch.jit.save(traced_model(model, preprocessor), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = preprocessor.tensor(torch.randint(0, 256, (5, channels, 32, 32), dtype=torch.uint8))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), model.eval()(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("fit, pad_mode", [("pad", mode) for mode in PAD_MODES]
                         + [(fit, "zero") for fit in FIT_MODES if fit != "pad"])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_scripts_geometry_is_the_preprocessors(fit, pad_mode, channels):
    prep = Preprocessor(24, pad_mode, fit, channels, mean=(0.4,) * channels, std=(0.2,) * channels)
    colour = gradient(47, 30)
    colour[5:9, 3:40] = (200, 15, 90)  # a shape, so that flips or shifts would show
    for arr in (colour, colour[:, :, 1], colour[:17, :24], gradient(24, 24), gradient(301, 9)):
        ours, theirs = prep.pixels(arr), bundle_predict.model_pixels(arr, prep.to_dict())
        assert theirs.dtype == np.uint8
        np.testing.assert_array_equal(theirs, ours)
        batch = torch.from_numpy(np.stack([ours])).permute(0, 3, 1, 2)
        np.testing.assert_allclose(bundle_predict.model_input([theirs], prep.to_dict()).numpy(),
                                   prep.tensor(batch).numpy(), atol=1e-6)


def test_the_script_decodes_every_mode_as_lumen_does(tmp_path):
    for name, path in write_mode_zoo(tmp_path).items():
        np.testing.assert_array_equal(bundle_predict.load_array(path), load_array(path), err_msg=name)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("bundle-home"))


@pytest.mark.slow
def test_bundle_predicts_as_core_predict_in_a_separate_process(run, tmp_path, capsys):
    run = Path(shutil.copytree(run, tmp_path / "run"))
    evaluation.save_operating_point(run, "GS", 0.35, "val", "youden", temperature=1.7, who="admin")
    folder = tmp_path / "images"
    folder.mkdir()
    for path in DEMO_IMAGES[::len(DEMO_IMAGES) // 20][:20]:
        shutil.copy(path, folder / path.name)
    (folder / "notes.png").write_text("not an image")
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "core.csv")]) == 0
    assert main(["bundle", str(run), "--out", str(tmp_path / "bundle")]) == 0
    assert "wrote the bundle" in capsys.readouterr().out
    bundle = tmp_path / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == sorted(["model.pt", "preprocessor.json", "classes.json",
                                                               "operating_point.json", "MODEL_CARD.md", "predict.py"])
    assert (bundle / "predict.py").read_bytes() == Path(bundle_predict.__file__).read_bytes()
    assert json.loads((bundle / "classes.json").read_text()) == ["GS", "nonGS"]
    point = json.loads((bundle / "operating_point.json").read_text())
    assert point == {"positive_class": "GS", "threshold": 0.35, "temperature": 1.7, "saved": True,
                     "tuned_on": "val", "method": "youden"}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LUMEN_HOME")}
    done = subprocess.run([sys.executable, str(bundle / "predict.py"), str(folder), "--out", "out.csv"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "skipped: notes.png" in done.stderr
    ours = pd.read_csv(tmp_path / "core.csv").set_index("file")
    theirs = pd.read_csv(elsewhere / "out.csv").set_index("file")
    assert list(theirs.columns) == list(ours.columns) == ["predicted", "prob_GS", "prob_nonGS", "decision"]
    assert sorted(theirs.index) == sorted(ours.index) and len(ours) == 20
    theirs = theirs.loc[ours.index]
    np.testing.assert_allclose(theirs[["prob_GS", "prob_nonGS"]], ours[["prob_GS", "prob_nonGS"]], atol=1e-5)
    assert (theirs["predicted"] == ours["predicted"]).all() and (theirs["decision"] == ours["decision"]).all()


def test_model_card_says_what_the_model_is_and_is_not_for(run, tmp_path):
    assert main(["bundle", str(run), "--out", str(tmp_path / "b")]) == 0
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    for needed in ("## Intended use", "not be used for diagnosis", "| test |", "grouped by `slide_id`",
                   "- model: simple_cnn", "32 x 32 px", "| sensitivity |", "95% interval", "ROC AUC"):
        assert needed in card, needed
    report = evaluation.evaluate_run(run, "test")
    low, high = report["intervals_95"]["sensitivity"]
    assert f"| sensitivity | {report['metrics']['sensitivity']:.3f} | {low:.3f} to {high:.3f} |" in card


def test_bundle_of_an_unfinished_run_is_a_plain_error(tmp_path, capsys):
    assert main(["bundle", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
