"""A finished run's model, its exact input and its items, from the run directory alone.

Analysis code (Grad-CAM, features, predictions on new images) comes here, never to the trainer:
the checkpoint holds the weights, the classes and the Preprocessor, and splits.csv with the image
cache holds the items, so looking at a run neither imports the training loop nor scans its source.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from core import rundir
from core.datacache import prepared_array
from core.models import build_model
from core.preprocess import Preprocessor
from core.runconfig import dataset_spec


def preprocessor_of(ckpt: dict[str, Any]) -> Preprocessor:
    """The Preprocessor a checkpoint's model was trained with (older checkpoints stored its parts)."""
    if "preprocessor" in ckpt:
        return Preprocessor.from_dict(ckpt["preprocessor"])
    prep = ckpt["config"]["preprocess"]
    return Preprocessor(prep["size"], prep["pad_mode"], prep["fit"], ckpt["in_channels"], "train",
                        tuple(ckpt["norm"]["mean"]), tuple(ckpt["norm"]["std"]))


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The checkpoint's model with its weights, in eval mode on the CPU; nothing downloaded."""
    model_cfg = ckpt["config"]["model"]
    model, _ = build_model(model_cfg["name"], len(ckpt["classes"]), in_channels=preprocessor_of(ckpt).channels,
                           freeze=False, pretrained="none", options=model_cfg.get("options") or {})
    model.load_state_dict(ckpt["model"])
    return model.eval()


def load_run_model(run_dir: Path, which: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """A run's trained model (eval mode, CPU) and its checkpoint, for every analysis page."""
    ckpt = rundir.load_checkpoint(run_dir, which)
    return model_from_checkpoint(ckpt), ckpt


def run_items(run_dir: Path) -> pd.DataFrame:
    """item_id, split, label, group, path, index, source_split and hash of every item the run
    trained on, in the image cache's order. Runs made before splits.csv held paths get them from
    a scan of their source, once."""
    config = rundir.read_config(run_dir)
    spec = dataset_spec(config)
    items = rundir.read_items(run_dir, rundir.dataset_root(spec.path))
    if items is None:
        raise FileNotFoundError(f"{Path(run_dir).name} has not started: it has no splits.csv yet.")
    if rundir.has_paths(items):
        return items
    from core.scanning import scan

    manifest = scan(spec).rename(columns={"id": "item_id", "split": "source_split"})
    known = manifest[["item_id", "path", "index", "source_split", "hash", "label", "group"]]
    return items[["item_id", "split"]].merge(known, on="item_id", how="inner")


def run_pixels(items: pd.DataFrame, preprocessor: Preprocessor) -> np.ndarray:
    """(N, S, S, C) uint8 of the run's items as the model saw them: the run's image cache, rebuilt
    the same way if it has been cleared."""
    rows = items.assign(split=items["source_split"])
    return prepared_array(rows, preprocessor)
