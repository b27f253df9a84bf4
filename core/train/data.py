"""A run's data: the source scanned, split (or the run's own split kept) and preprocessed once."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.datacache import channels_for_rows, prepared_array
from core.preprocess import Preprocessor
from core.runconfig import ConfigError, dataset_spec
from core.scanning import scan, usable
from core.splits import assign_fold, assign_splits, draw_subset


@dataclass
class Data:
    """The whole usable dataset, preprocessed, and its integer labels.

    The pixels stay memory-mapped from the image cache: a batch copies only its own rows, so a
    dataset larger than RAM trains, and the OS page cache keeps a small one in memory anyway."""

    pixels: np.ndarray  # (N, S, S, C) uint8, a memmap when it came from the cache
    labels: torch.Tensor
    items: pd.DataFrame  # id, split, label, group, path, index, source_split, hash
    classes: list[str]
    preprocessor: Preprocessor  # statistics not yet measured (see Preprocessor.fitted)

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[3])

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.items["split"].to_numpy() == split)

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 (B, C, S, S) of the given rows, channels-last in memory (the layout convolutions prefer)."""
        rows = np.asarray(self.pixels[np.asarray(idx, dtype=np.intp)])  # fancy indexing: a fresh copy
        return torch.from_numpy(rows).permute(0, 3, 1, 2)


def load_data(config: dict[str, Any], progress: Callable[[int, int], None] | None = None,
              splits: pd.Series | None = None) -> Data:
    """Scan the source, take the config's subset, split it, and decode + preprocess every usable image
    once (cached).

    `splits` (item id -> split, see rundir.read_splits) keeps every item where its run first put
    it; items added to the dataset since, and items its subset left out, stay out of that run."""
    manifest = scan(dataset_spec(config))
    listed = manifest.loc[usable(manifest)].reset_index(drop=True)  # original splits locate npz rows
    split_cfg = config["split"]
    if splits is None:
        listed = listed.loc[draw_subset(listed, **config["subset"])].reset_index(drop=True)
        rows = listed.assign(split=_draw_split(listed, split_cfg))
    else:
        rows = listed.assign(split=listed["id"].map(splits))
        known = rows["split"].notna().to_numpy()
        rows, listed = rows[known].reset_index(drop=True), listed[known].reset_index(drop=True)
    _check_splits(rows, predefined=bool(listed["split"].notna().any()) and splits is None
                  and split_cfg.get("folds", 1) == 1)
    classes = sorted(rows["label"].unique().tolist())
    preprocessor = Preprocessor.from_config(config["preprocess"], channels_for_rows(listed))
    array = prepared_array(listed, preprocessor, progress)
    labels = torch.as_tensor(rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(), dtype=torch.long)
    items = rows[["id", "split", "label", "group", "path", "index", "hash"]].assign(source_split=listed["split"])
    return Data(array, labels, items, classes, preprocessor)


def _draw_split(listed: pd.DataFrame, split_cfg: dict[str, Any]) -> pd.Series:
    """The split of a new run: its fold of a cross-validation, or train/val/test by the ratios."""
    group_column = "group" if split_cfg.get("grouped", True) else None
    folds = split_cfg.get("folds", 1)
    if folds == 1:
        return assign_splits(listed, ratios=split_cfg["ratios"], seed=split_cfg["seed"], group_column=group_column)
    if split_cfg.get("fold") is None:
        raise ConfigError("A cross-validation config stands for one run per fold: create them with "
                          "core.runs.create_runs (or `python -m core train` without --run-dir).")
    try:
        return assign_fold(listed, folds, split_cfg["fold"], split_cfg["ratios"], split_cfg["seed"], group_column)
    except ValueError as exc:
        raise ConfigError(f"{exc} Use fewer folds or turn off grouping.") from exc


def _check_splits(rows: pd.DataFrame, predefined: bool) -> None:
    """Refuse, with the way out, what would train on nothing or make validation meaningless."""
    classes = sorted(rows["label"].unique().tolist())
    if len(classes) < 2:
        raise ConfigError(f"Training needs at least two classes with usable images; found {classes}.")
    for needed in ("train", "val"):
        present = set(rows.loc[rows["split"] == needed, "label"])
        if not present:
            raise ConfigError(f"The dataset's own splits have no {needed} images: add a {needed} folder or "
                              f"split values." if predefined else
                              f"The split leaves no {needed} images: give {needed} a larger share.")
        missing = [c for c in classes if c not in present]
        if missing:
            raise ConfigError(f"No {needed} image of class {', '.join(missing)}: "
                              + ("the dataset's own splits lack it." if predefined else
                                 f"give {needed} a larger share, change the split seed or turn off grouping."))
