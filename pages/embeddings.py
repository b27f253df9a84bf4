"""Embeddings page: the model's feature space as a clickable map, linked to the images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import annotations, embeddings, layout_worker, roles, rundir
from core.review import annotation_key
from core.sources import SourceSpec
from ui.gallery import image_grid
from ui.identity import current_reader
from ui.item_panel import item_panel
from ui.router import ensure_router
from ui.run_features import checkpoint_stamp, run_features, run_neighbours
from ui.runs_picker import pick_run, predictions
from ui.state import current_dataset, manifest_or_stop, run_manifest_or_stop
from ui.text import md

ensure_router()

METHOD_NAMES = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
COLOUR_BY = {"label": "true label", "predicted": "prediction", "outcome": "correct or wrong",
             "confidence": "confidence", "split": "split", "group": "group", "review": "review status"}
PER_POINT_TEXT_UP_TO = 20_000  # above this, per-point text (hover, an id list) would multiply what the browser gets
NEAR_DUPLICATE = 0.002  # cosine distance under which two crops are treated as the same image


@st.cache_data(max_entries=32, show_spinner=False)
def _layout(run: str, stamp: int, method: str, splits: tuple, params: tuple, seed: int) -> pd.DataFrame:
    return embeddings.layout(Path(run), method, splits, dict(params), seed, reducer=layout_worker.reduce)


@st.cache_data(max_entries=32, show_spinner=False)
def _decorated(run: str, stamp: int, method: str, splits: tuple, params: tuple, seed: int) -> pd.DataFrame:
    """The layout with each point's prediction, confidence and outcome, from the run's predictions."""
    frame = _layout(run, stamp, method, splits, params, seed)
    preds = predictions(Path(run))
    classes = rundir.classes_of(preds)
    probs = frame[["item_id", "split"]].merge(preds, on=["item_id", "split"], how="left")
    matrix = probs[rundir.prob_columns(classes)].to_numpy()
    predicted = np.array(classes)[matrix.argmax(axis=1)]
    return frame.assign(predicted=predicted, confidence=matrix.max(axis=1),
                        outcome=np.where(predicted == frame["label"].to_numpy(), "correct", "wrong"))


def _review_status(frame: pd.DataFrame, dataset_key: str) -> pd.Series:
    """Each item's latest review status by any reader ("to review", "reviewed", ...), else "none"."""
    current = annotations.open_store().current(dataset_key)
    latest = current.sort_values("updated").dropna(subset=["status"]).drop_duplicates("item_id", keep="last")
    return frame["item_id"].map(latest.set_index("item_id")["status"]).fillna("none")


def _tag_for_review(dataset_key: str, ids: list[str], classes: list[str]) -> None:
    me = current_reader()
    if st.button(f"Tag these {len(ids):,} items for review", icon=":material/flag:", key="emb_tag",
                 disabled=not me.name or not roles.may(me, "annotate"),
                 help=None if me.name else "Type your name in the sidebar first."):
        store = annotations.open_store()
        for item_id in ids:
            store.annotate(dataset_key, item_id, me.name, status="to review", classes=classes, role=me.role)
        st.toast(f"Tagged {len(ids):,} items: filter on them in Review ('to review').")


def _scatter(frame: pd.DataFrame, colour: str, title: str | None, key: str, legend: str | None = None):
    """A WebGL map whose points carry only their row number and confidence, so 100k points reach the
    browser as a few MB; per-point hover text is added for smaller maps. The custom data goes as plain
    lists: a binary-encoded array reaches Streamlit's selection event as an object, not a list."""
    rows = np.arange(len(frame), dtype=np.float32)
    confidence = frame["confidence"].to_numpy(np.float32) if "confidence" in frame else np.full(len(frame), np.nan)
    hover_text = (frame["item_id"].astype(str) + " · " + frame["label"].astype(str)
                  + (" → " + frame["predicted"].astype(str) if "predicted" in frame else "")).to_numpy()
    template = "%{fullData.name}" + ("<br>confidence %{customdata[1]:.3f}" if "confidence" in frame else "")
    template += ("<br>%{hovertext}" if len(frame) <= PER_POINT_TEXT_UP_TO else "") + "<extra></extra>"
    fig = go.Figure()
    groups = ({"confidence": np.arange(len(frame))} if colour == "confidence"
              else frame.groupby(frame[colour].astype(str), sort=True).indices)
    palette = px.colors.qualitative.Set1
    for i, (name, positions) in enumerate(groups.items()):
        marker = (dict(color=confidence, colorscale="Viridis", colorbar=dict(title="confidence"))
                  if colour == "confidence" else dict(color=palette[i % len(palette)]))
        fig.add_trace(go.Scattergl(
            x=frame["x"].to_numpy(np.float32)[positions], y=frame["y"].to_numpy(np.float32)[positions],
            mode="markers", name=str(name), marker=dict(size=7, opacity=0.8, **marker),
            customdata=np.column_stack([rows[positions], confidence[positions].round(3)]).tolist(),
            hovertext=hover_text[positions] if len(frame) <= PER_POINT_TEXT_UP_TO else None, hovertemplate=template))
    fig.update_layout(height=520, margin=dict(t=40 if title else 10, b=10), title=title, xaxis_title=None,
                      yaxis_title=None, dragmode="zoom", legend_title=legend or COLOUR_BY.get(colour, colour))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("points", "box", "lasso"),
                           key=key)


def _selected(events, frames: list[pd.DataFrame]) -> list[tuple[str, str]]:
    """(item_id, split) of the points selected on each map, from the row number each point carries."""
    chosen = []
    for event, frame in zip(events, frames):
        if event and event.selection:
            rows = [int(p["customdata"][0]) for p in event.selection.get("points", [])]
            chosen += list(zip(frame["item_id"].to_numpy()[rows], frame["split"].to_numpy()[rows]))
    return list(dict.fromkeys(chosen))


def _neighbours(run_dir, item_id: str, split: str, manifest: pd.DataFrame) -> None:
    near = run_neighbours(run_dir).nearest(item_id, k=8)
    leaks = near[(near["distance"] < NEAR_DUPLICATE) & (near["split"] != split)]
    if not leaks.empty:
        st.error(f"{len(leaks)} near-duplicate(s) of this image sit in another split "
                 f"({', '.join(sorted(set(leaks['split'])))}): possible leakage.")
    shown = manifest.set_index("id").loc[near["item_id"]].reset_index().assign(
        caption=[f"{s} · d={d:.3f}" for s, d in zip(near["split"], near["distance"])])
    st.markdown("**Nearest neighbours in feature space**")
    image_grid(shown, columns=8, caption="caption")


@st.cache_data(max_entries=8, show_spinner="Features of an untrained backbone (once per dataset and model)…")
def _backbone_layout(spec_json: tuple, model: str, size: int, method: str, params: tuple, seed: int) -> pd.DataFrame:
    frame = embeddings.backbone_features(SourceSpec.from_dict(dict(spec_json)), model, size)
    xy = layout_worker.reduce(frame.attrs["features"], method, dict(params), seed)
    return frame.assign(x=xy[:, 0], y=xy[:, 1])


@st.cache_resource(max_entries=8, show_spinner=False)
def _backbone_neighbours(spec_json: tuple, model: str, size: int, method: str) -> embeddings.NeighbourIndex:
    return embeddings.NeighbourIndex(_backbone_layout(spec_json, model, size, method, (), 0))


def _backbone_view() -> None:
    """No run needed: the sidebar's dataset through a backbone nobody trained on it."""
    name, spec = current_dataset()
    manifest = manifest_or_stop(spec, f"the dataset '{name}'")
    if manifest["problem"].notna().all():
        st.warning(f"'{md(name)}' has no readable image to map: the Dataset page lists each file's problem.")
        return
    cols = st.columns(4)
    model = cols[0].selectbox("Backbone", ["resnet18", "simple_cnn", "densenet121", "efficientnet_b0"],
                              key="emb_bb_model")
    size = cols[1].selectbox("Image size", [32, 64, 128], index=1, key="emb_bb_size")
    method = cols[2].selectbox("Method", list(METHOD_NAMES), format_func=METHOD_NAMES.get, key="emb_bb_method")
    colour = cols[3].selectbox("Colour by", ["label", "split", "group"], key="emb_bb_colour")
    spec_key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.to_dict().items()))
    frame = _backbone_layout(spec_key, model, size, method, (), 0)
    st.caption(f"{md(name)}: {len(frame):,} images through an untrained {model} (ImageNet weights when a local "
               "copy exists): a first look at the data's structure before any training.")
    event = _scatter(frame, colour, None, key="emb_bb_plot", legend=colour)
    chosen = _selected([event], [frame])
    if chosen:
        ids = [i for i, _ in chosen][:48]
        image_grid(manifest.set_index("id").loc[ids].reset_index(), columns=8)
        if len(chosen) == 1:
            near = _backbone_neighbours(spec_key, model, size, method).nearest(ids[0], k=8)
            st.markdown("**Nearest neighbours in this feature space**")
            image_grid(manifest.set_index("id").loc[near["item_id"]].reset_index().assign(
                caption=[f"{lab} · d={d:.3f}" for lab, d in zip(near["label"], near["distance"])]), 8, "caption")


st.title("Embeddings")
if st.radio("Features of", ["a trained run", "an untrained backbone (no run needed)"], horizontal=True,
            key="emb_source") != "a trained run":
    _backbone_view()
    st.stop()
run_dir = pick_run()
if run_dir is None:
    st.stop()
warm = layout_worker.warm_up()
preds = predictions(run_dir)
classes = rundir.classes_of(preds)
stamp = checkpoint_stamp(run_dir)
splits_present = [s for s in ("train", "val", "test") if (preds["split"] == s).any()]
dataset_key = annotation_key(rundir.read_config(run_dir))  # annotations belong to the dataset

cols = st.columns([1, 1, 1, 1, 2])
method = cols[0].selectbox("Method", list(METHOD_NAMES), format_func=METHOD_NAMES.get, key="emb_method")
colour = cols[1].selectbox("Colour by", list(COLOUR_BY), format_func=COLOUR_BY.get, key="emb_colour")
seed = int(cols[2].number_input("Seed", 0, 10**6, 0, key="emb_seed"))
side_by_side = cols[3].toggle("Side by side", key="emb_side", disabled="test" not in splits_present,
                              help="Train and test as two maps, as the tissue study compared them."
                              if "test" in splits_present else "This run has no test split.")
params: dict = {}
if method == "umap":
    params = {"n_neighbors": cols[4].slider("Neighbours", 2, 100, 15, key="emb_nn"), "min_dist": 0.1}
elif method == "tsne":
    params = {"perplexity": float(cols[4].slider("Perplexity", 2, 100, 30, key="emb_perp"))}
panels = [("train",), ("test",)] if side_by_side and "test" in splits_present else [tuple(st.multiselect(
    "Splits", splits_present, default=splits_present, key="emb_splits")) or tuple(splits_present)]

notice = st.empty()  # cleared once the plots are drawn: by then the wait it explains is over
if method == "umap" and not warm.compiled():
    notice.caption("UMAP is compiling in the background (once per server start); layouts already computed "
                   "for this run show at once.")
manifest = run_manifest_or_stop(run_dir, preds)
run_features(run_dir)  # the first time for this checkpoint: a pass over every image, with progress
events, frames = [], []
columns = st.columns(len(panels))
for col, splits in zip(columns, panels):
    with col:
        with st.spinner(f"{METHOD_NAMES[method]} of {', '.join(splits)} (computed once, then stored with the run)…"):
            frame = _decorated(str(run_dir), stamp, method, splits, tuple(sorted(params.items())), seed)
        if colour == "review":
            frame = frame.assign(review=_review_status(frame, dataset_key))
        frames.append(frame)
        events.append(_scatter(frame, colour, f"{METHOD_NAMES[method]}: {', '.join(splits)} ({len(frame):,} items)",
                               key=f"emb_plot_{'_'.join(splits)}"))

notice.empty()
chosen = _selected(events, frames)
if len(preds) <= PER_POINT_TEXT_UP_TO:
    typed = st.selectbox("Or open an item by id", ["", *sorted(preds["item_id"])], key="emb_open")
else:
    typed = st.text_input("Or open an item by id", key="emb_open_typed").strip()
    if typed and not (preds["item_id"] == typed).any():
        st.warning(f"No item of this run has the id '{md(typed)}'.")
        typed = ""
if typed:
    chosen = [(typed, preds.loc[preds["item_id"] == typed, "split"].iloc[0])]
if len(chosen) == 1:
    item_id, split = chosen[0]
    item_panel(run_dir, manifest, preds, item_id, split)
    _neighbours(run_dir, item_id, split, manifest)
elif chosen:
    ids = [i for i, _ in chosen]
    st.markdown(f"**{len(ids):,} selected items**")
    image_grid(manifest.set_index("id").loc[ids[:48]].reset_index(), columns=8)
    if len(ids) > 48:
        st.caption(f"Showing 48 of {len(ids):,}.")
    _tag_for_review(dataset_key, ids, classes)
else:
    st.caption("Click a point to open its image with its Grad-CAM and nearest neighbours; pick the lasso or "
               "box tool (top right of the plot) to select a group.")
