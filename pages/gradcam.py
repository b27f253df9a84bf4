"""Grad-CAM page: where the model looks, for one image or a whole set, and whether the map is right."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from core import cam, evaluation, rundir
from ui.cam_view import cam_for_item, item_pixels, mask_share, model_stamp, run_model, says_no_feature_map
from ui.router import ensure_router
from ui.runs_picker import pick_run, predictions
from ui.state import run_manifest_or_stop
from ui.text import md

ensure_router()

SETS = {"random": "a random sample", "fn": "false negatives at the saved threshold",
        "fp": "false positives at the saved threshold", "wrong": "every mistake (argmax)", "ids": "items I choose"}
MAX_SET = 48


def _decisions(preds: pd.DataFrame, run_dir) -> tuple[np.ndarray, str, float]:
    """Positive-class decisions at the saved operating point (0.5 and the rarer class without one)."""
    positive, threshold, score = evaluation.saved_decision(preds, run_dir)
    return score >= threshold, positive, threshold


def _choose_set(preds: pd.DataFrame, run_dir, split: str) -> pd.DataFrame:
    rows = preds[preds["split"] == split]
    kind = st.radio("Images", list(SETS), format_func=SETS.get, horizontal=True, key="cam_set")
    decided, positive, threshold = _decisions(rows, run_dir)
    is_pos = (rows["label"] == positive).to_numpy()
    classes = rundir.classes_of(preds)
    argmax = np.array(classes)[rows[rundir.prob_columns(classes)].to_numpy().argmax(axis=1)]
    if kind in ("fn", "fp"):
        st.caption(f"Positive class {md(positive)} at threshold {threshold:.4f}"
                   + ("" if evaluation.load_operating_point(run_dir) else " (no saved operating point: 0.5)"))
    if kind == "ids":
        return rows[rows["item_id"].isin(st.multiselect("Items", rows["item_id"].tolist(), key="cam_ids"))]
    masks = {"fn": is_pos & ~decided, "fp": ~is_pos & decided, "wrong": argmax != rows["label"].to_numpy()}
    picked = rows.sample(min(12, len(rows)), random_state=0) if kind == "random" else rows[masks[kind]]
    return picked.head(MAX_SET)


@st.cache_data(max_entries=8, show_spinner=False)
def _set_inputs(run: str, stamp: int, item_ids: tuple[str, ...], _rows: pd.DataFrame):
    """(ids that could be read, model inputs, pictures) of a set, once per run version and set."""
    _, ckpt = run_model(Path(run))
    pixels = {}
    for item_id, row in _rows.iterrows():
        try:
            pixels[item_id] = item_pixels(row)
        except OSError:  # gone or damaged since training: left out, and said so
            continue
    readable = [item_id for item_id in item_ids if item_id in pixels]
    if not readable:
        return readable, None, []
    inputs, images = zip(*(cam.model_input(pixels[item_id], ckpt) for item_id in readable))
    return readable, torch.cat(inputs), list(images)


@st.cache_data(max_entries=16, show_spinner=False)
def _set_maps(run: str, stamp: int, item_ids: tuple[str, ...], method: str, targets: tuple[int, ...] | None,
              fraction: float, _inputs: torch.Tensor, _rows: pd.DataFrame):
    """One method's (maps, faithfulness, mask shares) over a set: picking one image, or adding a
    method, does not run the model over the set again."""
    model, ckpt = run_model(Path(run))
    chosen = list(targets) if targets is not None else None
    maps = cam.compute_cams(model, ckpt["config"]["model"]["name"], _inputs, method, chosen)
    faith = cam.confidence_drop(model, _inputs, maps, chosen, fraction)
    shares = [mask_share(r, ckpt, m) for (_, r), m in zip(_rows.iterrows(), maps)]
    return maps, faith, [s for s in shares if s is not None]


def _batch(run_dir, manifest, chosen: pd.DataFrame, methods: list[str], fraction: float) -> None:
    model, ckpt = run_model(run_dir)
    if says_no_feature_map(ckpt):
        return
    stamp, ids = model_stamp(run_dir), tuple(chosen["item_id"])
    readable, x, images = _set_inputs(str(run_dir), stamp, ids, manifest.set_index("id").loc[list(ids)])
    if len(readable) < len(ids):
        st.warning(f"{len(ids) - len(readable):,} image(s) of this set cannot be read any more and are left out.")
        chosen = chosen[chosen["item_id"].isin(readable)]
        if chosen.empty:
            return
    rows = manifest.set_index("id").loc[chosen["item_id"]]
    classes = list(ckpt["classes"])
    # true → predicted under each picture: what the mistake was, not only where the model looked
    predicted = np.asarray(classes)[chosen[rundir.prob_columns(classes)].to_numpy().argmax(axis=1)]
    targets = tuple(classes.index(label) for label in chosen["label"]) if st.toggle(
        "Explain the true class (default: the predicted class)", key="cam_true") else None
    for method in methods:
        with st.spinner(f"{method} on {len(x)} images…"):
            maps, faith, shares = _set_maps(str(run_dir), stamp, tuple(readable), method, targets, fraction, x, rows)
        st.markdown(f"**{method}** · {faith.sentence()}"
                    + (f" Mask energy {np.mean([s[0] for s in shares]):.0%} on average "
                       f"(masks cover {np.mean([s[1] for s in shares]):.0%})." if shares else ""))
        cols = st.columns(8)
        for i, (image, heat, item_id, truth, guess) in enumerate(
                zip(images, maps, chosen["item_id"], chosen["label"], predicted)):
            cols[i % 8].image(cam.overlay(image, heat, 0.5), width="stretch",
                              caption=f"{item_id.rsplit('/', 1)[-1]} · {truth} → {guess} · "
                                      f"drop {faith.drop_salient[i]:+.2f}")


st.title("Grad-CAM")
run_dir = pick_run()
if run_dir is None:
    st.stop()
preds = predictions(run_dir)
manifest = run_manifest_or_stop(run_dir, preds)
splits = [s for s in ("test", "val", "train") if (preds["split"] == s).any()]
split = st.radio("Split", splits, horizontal=True, key="cam_split")
chosen = _choose_set(preds, run_dir, split)
if chosen.empty:
    st.info("No image in this set.")
    st.stop()



@st.fragment
def _one_image(chosen: pd.DataFrame, manifest: pd.DataFrame, classes: list[str]) -> None:
    """A pick reruns this tab only: the set's maps stay as they are."""
    item_id = st.selectbox("Image", chosen["item_id"].tolist(), key="cam_one")
    pred = chosen[chosen["item_id"] == item_id].iloc[0]
    cam_for_item(run_dir, manifest.set_index("id").loc[item_id], pred, classes, key="single")


single, batch = st.tabs(["One image", f"The set ({len(chosen)} images)"])
with single:
    _one_image(chosen, manifest, rundir.classes_of(preds))
with batch:
    cols = st.columns([3, 1])
    methods = cols[0].multiselect("Methods side by side", list(cam.METHODS), default=["GradCAM"], key="cam_methods")
    fraction = cols[1].slider("Pixels hidden for the faithfulness test", 0.05, 0.5, 0.2, 0.05, key="cam_fraction")
    if methods:
        _batch(run_dir, manifest, chosen, methods, fraction)
