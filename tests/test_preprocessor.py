"""One house for what the model sees: every consumer gets the same tensor from the same image,
and a checkpoint alone rebuilds it."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from core import cam, rundir
from core.images import load_item
from core.preprocess import IMAGENET_MEAN, Preprocessor
from core.runmodel import model_from_checkpoint, preprocessor_of, run_items, run_pixels
from core.train.data import load_data
from core.train.loop import Loop
from tests.conftest import train_tiny_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("home"))


def _pixels(row: pd.Series) -> np.ndarray:
    split = row["source_split"] if isinstance(row["source_split"], str) else None
    return load_item(row["path"], int(row["index"]), split)


def test_every_consumer_builds_the_same_input(tiny_run, monkeypatch):
    monkeypatch.setenv("LUMEN_HOME", str(tiny_run.parent.parent))
    ckpt = rundir.load_checkpoint(tiny_run)
    prep = preprocessor_of(ckpt)
    items = run_items(tiny_run)
    cached = run_pixels(items, prep)
    data = load_data(ckpt["config"], splits=rundir.read_splits(tiny_run))
    trained = data.preprocessor.fitted(data.pixels, data.indices("train"))
    assert trained == prep  # the statistics in the checkpoint are the training split's
    loop = Loop(torch.nn.Identity(), data, torch.device("cpu"), trained, ckpt["config"])
    picks = [0, 7, len(items) - 1]
    for i in picks:
        arr = _pixels(items.iloc[i])
        direct = prep(arr)
        from_cache = prep.tensor(torch.from_numpy(np.asarray(cached[i:i + 1])).permute(0, 3, 1, 2))
        for_cam, shown = cam.model_input(arr, ckpt)
        in_training = loop.normalise(loop.to_input(np.array([i])))
        for other in (from_cache, for_cam, in_training):
            assert torch.equal(direct, other.contiguous())
        # the Padding page's preview
        np.testing.assert_array_equal(shown, Preprocessor(prep.size, prep.pad_mode, prep.fit).image(arr))


def test_best_checkpoint_alone_rebuilds_input_and_predictions(tiny_run, tmp_path):
    alone = tmp_path / "best.pt"
    shutil.copyfile(rundir.checkpoint_path(tiny_run), alone)  # no config.json, no splits, no dataset folder
    ckpt = torch.load(alone, map_location="cpu", weights_only=True)
    model = model_from_checkpoint(ckpt)
    prep = preprocessor_of(ckpt)
    predictions = rundir.read_predictions(tiny_run)
    items = rundir.read_items(tiny_run, rundir.dataset_root(ckpt["config"]["dataset"]["source"]["path"]))
    row = items.iloc[3]
    with torch.no_grad():
        probs = torch.softmax(model(prep(_pixels(row))), dim=1)[0].numpy()
    expected = predictions.set_index("item_id").loc[row["item_id"], rundir.prob_columns(ckpt["classes"])]
    np.testing.assert_allclose(probs, expected.to_numpy(dtype=np.float32), atol=1e-5)


def test_normalisation_choices():
    grey = np.full((10, 20), 128, dtype=np.uint8)
    none = Preprocessor(16, channels=1, normalize="none")
    assert none.mean == (0.0,) and none.std == (1.0,)
    assert torch.allclose(none(grey)[0, 0, 8, 8], torch.tensor(128 / 255))
    imagenet = Preprocessor(16, normalize="imagenet")
    assert imagenet.mean == IMAGENET_MEAN
    assert Preprocessor(16, channels=1, normalize="imagenet").mean == (pytest.approx(np.mean(IMAGENET_MEAN)),)
    with pytest.raises(ValueError, match="no statistics yet"):
        Preprocessor(16)(grey)
    with pytest.raises(ValueError, match="Unknown normalisation 'z'"):
        Preprocessor(16, normalize="z")
    round_trip = Preprocessor.from_dict(imagenet.to_dict())
    assert round_trip == imagenet


def test_training_statistics_come_from_the_training_rows_only():
    pixels = np.zeros((4, 8, 8, 1), dtype=np.uint8)
    pixels[2:] = 255
    fitted = Preprocessor(8, channels=1).fitted(pixels, np.array([0, 1]))
    assert fitted.mean == (0.0,) and fitted.std == (pytest.approx(1e-3),)
