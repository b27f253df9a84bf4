"""A run at the scale of a large lab dataset, written through the run contract without training:
an npz of N tiny images, a real (untrained) checkpoint, predictions whose scores follow the labels,
one epoch of metrics, and feature clusters per class. Pages at 100k items are tested on it."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core import rundir
from core.models import build_model
from core.preprocess import Preprocessor
from core.runconfig import make_config
from core.scanning import scan
from core.sources import SourceSpec
from core.train.checkpoints import Progress, state

CLASSES = ["benign", "malignant"]


def write_big_run(home: Path, n: int = 100_000, dim: int = 16, name: str = "big-run", seed: int = 0) -> Path:
    """A finished run of ``n`` items (80/10/10 train/val/test) in ``home``/runs/``name``."""
    rng = np.random.default_rng(seed)
    counts = {"train": n * 8 // 10, "val": n // 10, "test": n - n * 8 // 10 - n // 10}
    npz = home / f"{name}.npz"
    labels = {split: rng.integers(0, 2, (count, 1)) for split, count in counts.items()}
    np.savez(npz, **{f"{s}_images": rng.integers(0, 255, (c, 8, 8), dtype=np.uint8) for s, c in counts.items()},
             **{f"{s}_labels": labels[s] for s in counts}, label_names=np.array(CLASSES))
    spec = SourceSpec(str(npz), kind="npz")
    config = make_config({"dataset": {"name": name, "source": spec.to_dict()}, "preprocess": {"size": 32},
                          "model": {"name": "simple_cnn"}, "epochs": 1})
    run_dir = rundir.runs_root() / name
    run_dir.mkdir(parents=True)
    rundir.write_config(run_dir, config)
    items = scan(spec).rename(columns={"id": "item_id"})
    items["label"] = np.array(CLASSES)[items["label"].astype(int)]
    is_positive = (items["label"] == CLASSES[1]).to_numpy()
    score = np.clip(rng.normal(np.where(is_positive, 0.7, 0.3), 0.2), 0, 1)
    rundir.write_predictions(rundir.predictions_path(run_dir), items[["item_id", "split", "label", "group"]],
                             CLASSES, np.column_stack([1 - score, score]))
    model, _ = build_model("simple_cnn", len(CLASSES), in_channels=1, pretrained="none")
    preprocessor = Preprocessor(32, channels=1)
    rundir.save_checkpoint(run_dir, state(model, torch.optim.SGD(model.parameters(), lr=0.1), None,
                                          torch.Generator(), Progress(epoch=1), config, CLASSES, preprocessor),
                           best=True)
    rundir.write_metrics(run_dir, [{"epoch": 1, "best": True, "train_loss": 0.5, "val_loss": 0.5,
                                    "val_auc": 0.9, "val_accuracy": 0.8, "images_per_s": 1000.0}])
    centres = np.where(is_positive[:, None], 1.0, -1.0) * np.linspace(1, 0.2, dim)
    feats = (centres + rng.normal(0, 0.8, (n, dim))).astype(np.float32)
    np.savez(rundir.features_path(run_dir), stamp=1, features=feats, item_id=items["item_id"].to_numpy(dtype=str),
             split=items["split"].to_numpy(dtype=str), label=items["label"].to_numpy(dtype=str),
             group=np.full(n, "", dtype=str))
    rundir.write_status(run_dir, state="finished", created=time.time(), finished=time.time(), message="finished")
    return run_dir


def home_with_big_run(tmp_path_factory, prefix: str, **options) -> Path:
    """A workspace of its own for a browser test, holding one big run (besides the embedded demo)."""
    home = tmp_path_factory.mktemp(prefix)
    with pytest.MonkeyPatch.context() as env:  # the run's folder goes where LUMEN_HOME says
        env.setenv("LUMEN_HOME", str(home))
        write_big_run(home, **options)
    return home
