"""What a model learned, as points: penultimate features of a run's best model, reduced to 2-D.

Features and layouts are written into the run directory (features.npz, embeddings/*.npy), next
to the predictions they explain, so a page never recomputes what was computed once, and the
embedded demo run ships its layouts ready to draw (no 30-second UMAP compile on first click).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from core import rundir, workspace

if TYPE_CHECKING:
    from core.sources import SourceSpec

METHODS = ("pca", "umap", "tsne")
DEFAULT_PARAMS: dict[str, dict[str, float]] = {
    "pca": {}, "umap": {"n_neighbors": 15, "min_dist": 0.1}, "tsne": {"perplexity": 30.0}}
UMAP_EXACT_BELOW = 4096  # umap-learn's switch from exact neighbours to NN-descent (umap_.py)


def features_cached(run_dir: Path) -> bool:
    """Whether the best model's features are stored already (so the UI knows if a progress bar is due)."""
    path = rundir.features_path(run_dir)
    if not path.exists():
        return False
    with np.load(path, allow_pickle=False) as cached:
        return int(cached["stamp"]) == rundir.best_epoch(run_dir)


def load_features(run_dir: Path, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Penultimate features of the best model for every item of the run (all splits), cached.

    Returns a frame with item_id, split, label, group and a `features` matrix in `.attrs`."""
    path, stamp = rundir.features_path(run_dir), rundir.best_epoch(run_dir)
    if features_cached(run_dir):
        with np.load(path, allow_pickle=False) as cached:
            return _frame(cached["item_id"], cached["split"], cached["label"], cached["group"], cached["features"])
    items, feats = compute_features(run_dir, progress)
    workspace.atomic_write(path, lambda handle: np.savez_compressed(
        handle, stamp=stamp, features=feats, item_id=items["item_id"].to_numpy(dtype=str),
        split=items["split"].to_numpy(dtype=str), label=items["label"].to_numpy(dtype=str),
        group=items["group"].fillna("").to_numpy(dtype=str)))
    return _frame(items["item_id"], items["split"], items["label"], items["group"].fillna(""), feats)


def _frame(ids: npt.ArrayLike, splits: npt.ArrayLike, labels: npt.ArrayLike, groups: npt.ArrayLike,
           feats: npt.ArrayLike) -> pd.DataFrame:
    frame = pd.DataFrame({"item_id": np.asarray(ids), "split": np.asarray(splits), "label": np.asarray(labels),
                          "group": np.asarray(groups)})
    frame.attrs["features"] = np.asarray(feats, dtype=np.float32)
    return frame


def compute_features(run_dir: Path, progress: Callable[[int, int], None] | None = None,
                     batch_size: int = 256) -> tuple[pd.DataFrame, np.ndarray]:
    """The run's own items through its best model, with the input it was trained on."""
    import torch

    from core.models import features
    from core.runmodel import load_run_model, preprocessor_of, run_items, run_pixels

    model, ckpt = load_run_model(run_dir)
    preprocessor = preprocessor_of(ckpt)
    items = run_items(run_dir)
    pixels = run_pixels(items, preprocessor)
    out, n = [], len(items)
    for start in range(0, n, batch_size):
        batch = torch.from_numpy(np.asarray(pixels[start:start + batch_size])).permute(0, 3, 1, 2)
        out.append(features(model, ckpt["config"]["model"]["name"], preprocessor.tensor(batch)).numpy())
        if progress:
            progress(min(start + batch_size, n), n)
    feats = np.concatenate(out) if out else np.zeros((0, 0))
    return items.reset_index(drop=True), feats.astype(np.float32)


def _layout_path(run_dir: Path, method: str, params: dict[str, float], splits: tuple[str, ...], seed: int) -> Path:
    key = json.dumps({"m": method, "p": params, "s": sorted(splits), "seed": seed,
                      "model": rundir.best_epoch(run_dir)}, sort_keys=True)
    return rundir.layout_path(run_dir, f"{method}-{hashlib.blake2b(key.encode(), digest_size=6).hexdigest()}")


def reduce(features: np.ndarray, method: str, params: dict[str, float] | None = None, seed: int = 0) -> np.ndarray:
    """A 2-D layout of the features. PCA first to 50 dimensions for UMAP and t-SNE (standard, and
    much faster on wide ResNet or VGG features)."""
    if method not in METHODS:
        raise ValueError(f"Unknown method '{method}': use one of {', '.join(METHODS)}.")
    params = {**DEFAULT_PARAMS[method], **(params or {})}
    from sklearn.decomposition import PCA

    x = features.astype(np.float32)
    if method == "pca":
        return np.asarray(PCA(n_components=2, random_state=seed).fit_transform(x))
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    if method == "umap":
        import umap

        n_neighbors = int(min(params["n_neighbors"], max(2, len(x) - 1)))
        return np.asarray(umap.UMAP(n_neighbors=n_neighbors, min_dist=float(params["min_dist"]),
                                    random_state=seed).fit_transform(x))
    import openTSNE  # measured faster than scikit-learn's t-SNE (bench/embed.py), more so as N grows

    perplexity = float(min(params["perplexity"], max(1.0, (len(x) - 1) / 3)))
    return np.asarray(openTSNE.TSNE(perplexity=perplexity, random_state=seed, n_jobs=os.cpu_count() or 1).fit(x))


def layout(run_dir: Path, method: str, splits: tuple[str, ...], params: dict[str, float] | None = None,
           seed: int = 0, progress: Callable[[int, int], None] | None = None,
           reducer: Callable[..., np.ndarray] = reduce) -> pd.DataFrame:
    """item_id, split, label, group, x, y for the chosen splits; computed once (by `reducer`: the app
    passes its layout worker's), then read from the run."""
    frame = load_features(run_dir, progress)
    chosen = frame["split"].isin(splits).to_numpy()
    rows = frame[chosen].reset_index(drop=True)
    params = {**DEFAULT_PARAMS.get(method, {}), **(params or {})}
    path = _layout_path(run_dir, method, params, tuple(splits), seed)
    if path.exists():
        xy = np.load(path)
    else:
        xy = reducer(frame.attrs["features"][chosen], method, params, seed).astype(np.float32)  # as stored
        workspace.atomic_write(path, lambda handle: np.save(handle, xy))
    laid_out = rows.assign(x=xy[:, 0], y=xy[:, 1])
    laid_out.attrs = {}  # the features stay with the feature table: a layout is cached and copied per page run
    return laid_out


class NeighbourIndex:
    """Nearest neighbours (cosine) of a feature table's items, prepared once per table: unit-length
    features and an id lookup, so a click costs one matrix-vector product and a partial sort, not
    a normalisation of every vector and a full sort."""

    def __init__(self, frame: pd.DataFrame) -> None:
        feats = np.asarray(frame.attrs["features"], dtype=np.float32)
        self._unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        self._frame = frame.reset_index(drop=True)
        self._frame.attrs = {}  # pandas copies attrs (here the whole feature matrix) into every slice
        ids = self._frame["item_id"]
        self._row = pd.Series(np.arange(len(ids)), index=ids.to_numpy())[~ids.duplicated().to_numpy()]

    def nearest(self, item_id: str, k: int = 8) -> pd.DataFrame:
        """The k items closest to one item, nearest first, with their cosine distance."""
        index = int(self._row[item_id])
        distance = 1 - self._unit @ self._unit[index]
        distance[index] = np.inf  # never its own neighbour
        k = min(k, len(distance) - 1)
        if k <= 0:
            return self._frame.iloc[:0].assign(distance=np.array([], dtype=np.float32))
        closest = np.argpartition(distance, k - 1)[:k]
        order = closest[np.lexsort((closest, distance[closest]))]  # by distance, ties by position
        return self._frame.iloc[order].assign(distance=distance[order]).reset_index(drop=True)


def compile_umap() -> None:
    """Compile UMAP's numba code, both of umap-learn's paths: exact neighbours below
    UMAP_EXACT_BELOW points, and NN-descent from there up, which every dataset of real size takes.
    The app has its layout worker do this as it starts (core.layout_worker)."""
    rng = np.random.default_rng(0)
    for n in (64, UMAP_EXACT_BELOW + 64):
        reduce(rng.normal(size=(n, 8)).astype(np.float32), "umap", {"n_neighbors": 5})


def backbone_features(spec: SourceSpec, model_name: str = "resnet18", size: int = 64,
                      batch_size: int = 128) -> pd.DataFrame:
    """Features of a backbone no run has trained, for a dataset with no run yet: a first look at
    its structure (ImageNet weights when a local copy exists, else random ones, which still
    group images by colour and texture). The input is made as a run's would be (zero padding,
    statistics of the images themselves); cached in the workspace by content and settings."""
    import torch

    from core.datacache import channels_for_rows, prepared_array
    from core.models import build_model, features
    from core.preprocess import Preprocessor
    from core.scanning import scan

    manifest = scan(spec)
    rows = manifest[manifest["problem"].isna()].reset_index(drop=True)
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{model_name}|{size}|".encode() + "\n".join(rows["hash"].astype(str)).encode())
    path = workspace.cache_dir("features") / f"{digest.hexdigest()}.npz"
    labels = rows["label"].fillna("(unlabelled)").to_numpy(dtype=str)
    splits, groups = rows["split"].fillna("").to_numpy(dtype=str), rows["group"].fillna("").to_numpy(dtype=str)
    if path.exists():
        with np.load(path) as cached:
            return _frame(rows["id"], splits, labels, groups, cached["features"])
    preprocessor = Preprocessor(size, channels=channels_for_rows(rows))
    pixels = prepared_array(rows, preprocessor)
    preprocessor = preprocessor.fitted(pixels, np.arange(len(rows)))
    model, _ = build_model(model_name, 2, in_channels=preprocessor.channels, pretrained="auto")
    batches = (torch.from_numpy(np.asarray(pixels[i:i + batch_size])).permute(0, 3, 1, 2)
               for i in range(0, len(rows), batch_size))
    feats = np.concatenate([features(model, model_name, preprocessor.tensor(b)).numpy() for b in batches])
    feats = feats.astype(np.float32)
    workspace.atomic_write(path, lambda handle: np.savez_compressed(handle, features=feats))
    return _frame(rows["id"], splits, labels, groups, feats)
