"""Grad-CAM page: where the model looks, for one image or a whole set, and whether the map is right."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from core import cam, evaluation, rundir
from ui.cam_view import cam_for_item, item_pixels, mask_share, run_model, says_no_feature_map
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


def _batch(run_dir, manifest, chosen: pd.DataFrame, methods: list[str], fraction: float) -> None:
    model, ckpt = run_model(run_dir)
    if says_no_feature_map(ckpt):
        return
    rows = manifest.set_index("id").loc[chosen["item_id"]]
    pixels = {}
    for item_id, row in rows.iterrows():
        try:
            pixels[item_id] = item_pixels(row)
        except OSError:  # gone or damaged since training: left out, and said so
            continue
    if len(pixels) < len(rows):
        st.warning(f"{len(rows) - len(pixels):,} image(s) of this set cannot be read any more and are left out.")
        chosen = chosen[chosen["item_id"].isin(pixels)]
        rows = rows.loc[chosen["item_id"]]
        if chosen.empty:
            return
    classes = list(ckpt["classes"])
    # true → predicted under each picture: what the mistake was, not only where the model looked
    predicted = np.asarray(classes)[chosen[rundir.prob_columns(classes)].to_numpy().argmax(axis=1)]
    inputs, images = zip(*(cam.model_input(pixels[item_id], ckpt) for item_id in chosen["item_id"]))
    x = torch.cat(inputs)
    targets = [classes.index(label) for label in chosen["label"]] if st.toggle(
        "Explain the true class (default: the predicted class)", key="cam_true") else None
    for method in methods:
        with st.spinner(f"{method} on {len(x)} images…"):
            maps = cam.compute_cams(model, ckpt["config"]["model"]["name"], x, method, targets)
            faith = cam.confidence_drop(model, x, maps, targets, fraction)
        shares = [mask_share(r, ckpt, m) for (_, r), m in zip(rows.iterrows(), maps)]
        shares = [s for s in shares if s is not None]
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

single, batch = st.tabs(["One image", f"The set ({len(chosen)} images)"])
with single:
    item_id = st.selectbox("Image", chosen["item_id"].tolist(), key="cam_one")
    pred = chosen[chosen["item_id"] == item_id].iloc[0]
    cam_for_item(run_dir, manifest.set_index("id").loc[item_id], pred, rundir.classes_of(preds), key="single")
with batch:
    cols = st.columns([3, 1])
    methods = cols[0].multiselect("Methods side by side", list(cam.METHODS), default=["GradCAM"], key="cam_methods")
    fraction = cols[1].slider("Pixels hidden for the faithfulness test", 0.05, 0.5, 0.2, 0.05, key="cam_fraction")
    if methods:
        _batch(run_dir, manifest, chosen, methods, fraction)
