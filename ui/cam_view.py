"""Grad-CAM panels shared by the Grad-CAM, Embeddings and Review pages (models cached per run)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import cam, rundir
from core.images import load_item
from core.runmodel import load_run_model
from ui.text import md


@st.cache_resource(max_entries=4, show_spinner="Loading the run's best model…")
def _model(run: str, stamp: int):
    return load_run_model(Path(run))


def model_stamp(run_dir: Path) -> int:
    """The best checkpoint's version: caches of what the model computed are keyed by it."""
    return rundir.checkpoint_path(run_dir, "best").stat().st_mtime_ns


def run_model(run_dir: Path):
    """(model, checkpoint) shared by every session; core.cam makes concurrent use safe."""
    return _model(str(run_dir), model_stamp(run_dir))


def item_pixels(row: pd.Series) -> np.ndarray:
    index = int(row["index"]) if "index" in row and pd.notna(row["index"]) else -1
    return load_item(row["path"], index, row["split"] if index >= 0 else None)


def says_no_feature_map(ckpt: dict) -> bool:
    """True, after saying why, for a model Grad-CAM cannot explain."""
    if ckpt["config"]["model"]["name"] == "logistic":
        st.info("A logistic model has no feature map for Grad-CAM: its weights are the explanation.")
        return True
    return False


def readable_pixels(row: pd.Series) -> np.ndarray | None:
    """The item's pixels, or None after a plain warning when its file has gone or is damaged
    since the run was trained: one lost image must not take the page down."""
    if isinstance(row.get("problem"), str):
        st.warning(f"Cannot show this image: {md(row['problem'])}.")
        return None
    try:
        return item_pixels(row)
    except OSError as exc:
        st.warning(f"Cannot read this image ({md(row['path'])}): {md(exc)}")
        return None


def mask_share(row: pd.Series, ckpt: dict, heat: np.ndarray) -> tuple[float, float] | None:
    """(share of heat inside the item's mask, the mask's own area share), when it has a mask."""
    path = row.get("mask_path")
    if not isinstance(path, str) or not Path(path).exists():
        return None
    mask = cam.load_mask(path, ckpt)
    return cam.mask_energy(heat, mask), float(mask.mean())


def cam_for_item(run_dir: Path, row: pd.Series, pred: pd.Series, classes: list[str], key: str = "item") -> None:
    """Method, target class and opacity controls, then [input | heatmap | overlay] for one item."""
    model, ckpt = run_model(run_dir)
    if says_no_feature_map(ckpt):
        return
    cols = st.columns(3)
    method = cols[0].selectbox("Method", list(cam.METHODS), key=f"cam_method_{key}")
    choice = cols[1].selectbox("Explain the class", ["predicted", "true label", *classes], key=f"cam_target_{key}")
    alpha = cols[2].slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key=f"cam_alpha_{key}")
    target = None if choice == "predicted" else (pred["label"] if choice == "true label" else choice)
    layer = st.text_input("Target layer (blank: the architecture's usual one)", key=f"cam_layer_{key}",
                          placeholder="e.g. layer3 for ResNet18, features.2 for the simple CNN").strip() or None
    pixels = readable_pixels(row)
    if pixels is None:
        return
    try:
        with st.spinner(f"{method}…"):
            result = cam.explain(model, ckpt, pixels, method, target, target_layer=layer)
    except ValueError as exc:
        st.error(f"{md(exc)} Layer names are those of the model's named_modules().")
        return
    pictures = st.columns(3)
    pictures[0].image(result.image, caption="model input (padding visible)", width="stretch")
    pictures[1].image(cam.heatmap(result.cam), caption=f"{result.method} for {result.target}", width="stretch")
    pictures[2].image(cam.overlay(result.image, result.cam, alpha), caption="overlay", width="stretch")
    share = mask_share(row, ckpt, result.cam)
    if share is not None:
        st.caption(f"{share[0]:.0%} of the heatmap lies inside the annotated mask, which covers "
                   f"{share[1]:.0%} of the input (a map that ignored the structure would score about that).")
    st.download_button("Download PNG", cam.cam_png(result.image, result.cam, alpha),
                       file_name=f"{Path(str(row.name)).stem}-{result.method}.png", mime="image/png",
                       key=f"cam_png_{key}")
