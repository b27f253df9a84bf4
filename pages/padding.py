"""Padding: how each way of squaring a crop looks, before a model is trained on it.

Every thumbnail comes from core.preprocess.Preprocessor, the object training and Grad-CAM use,
so what is shown here is exactly what the model will see.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st
from PIL import Image

from core import preprocess, roles, workspace
from core.export import export_preprocessed, export_source, safe_name
from core.images import load_item
from core.registry import add_dataset
from core.scanning import usable
from core.sources import SourceError
from ui.identity import current_reader
from ui.router import ensure_router
from ui.state import current_dataset, manifest_or_stop, select_dataset_next_run
from ui.text import md

ensure_router()

PRESET_SIZES = (128, 224, 512)
CUSTOM = "custom"
MAX_SAMPLE = 24
ORIGINAL_MAX_SIDE = 512  # originals larger than this are shrunk for display only
# Caption -> (fit, pad mode) of every variant shown beside the original.
VARIANTS = {**{("mean colour" if mode == "mean" else mode): ("pad", mode) for mode in preprocess.PAD_MODES},
            "stretch": ("stretch", "zero"), "centre crop": ("crop", "zero")}
SEED_KEY, EXPORT_KEY, FLASH_KEY = "padding_seed", "padding_export", "padding_flash"
# A hairline around each thumbnail, so a white margin still shows where the square ends.
THUMBNAIL_FRAME = ("<style>.st-key-padding_preview [data-testid='stImage'] img "
                   "{outline: 1px solid rgba(128,128,128,.45)}</style>")


def _jpeg(arr: np.ndarray) -> bytes:
    """The display copy of a thumbnail (the model gets the array itself).

    JPEG at quality 95 without chroma subsampling looks lossless at thumbnail scale, even at a
    hard padding border, and is about 5x smaller and 20x faster to encode than PNG: 48 thumbnails
    at 512 px stay a few megabytes and encode in a fraction of a second.
    """
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def _display_original(arr: np.ndarray) -> np.ndarray:
    img = Image.fromarray(arr)
    img.thumbnail((ORIGINAL_MAX_SIDE, ORIGINAL_MAX_SIDE))
    return np.asarray(img)


@st.cache_data(show_spinner=False, max_entries=300)
def _thumbnails(path: str, index: int, split: str | None, content: str, size: int) -> dict[str, bytes]:
    """The original and every variant of one item as JPEG bytes, decoded once per item and size.

    ``content`` (the manifest's content hash) is only part of the cache key: an edited file shows.
    """
    arr = load_item(path, index, split)
    shown = {"original": _jpeg(_display_original(arr))}
    for caption, (fit, pad_mode) in VARIANTS.items():
        shown[caption] = _jpeg(preprocess.Preprocessor(size, pad_mode, fit).image(arr))
    return shown


def _key(dataset: str, what: str) -> str:
    """Widget keys scoped to the dataset, so a choice made for one set never leaks into another."""
    return f"padding_{what}::{dataset}"


def _size_control(column) -> int:
    choice = column.radio("Model input size", [*PRESET_SIZES, CUSTOM], index=1, horizontal=True,
                          format_func=lambda v: f"{v} px" if v != CUSTOM else "Custom",
                          key="padding_size_choice")
    if choice != CUSTOM:
        return choice
    return int(column.number_input("Size in pixels", preprocess.MIN_SIZE, preprocess.MAX_SIZE, 224,
                                   step=16, key="padding_custom_size"))


def _shuffle() -> None:
    st.session_state[SEED_KEY] = st.session_state.get(SEED_KEY, 0) + 1


def _pick_sample(items: pd.DataFrame, dataset: str, columns) -> pd.DataFrame:
    """A seeded random sample (reshuffled on demand) or the items the user names."""
    classes = sorted(items["label"].unique())
    chosen = columns[1].multiselect("Classes", classes, placeholder="All classes", key=_key(dataset, "classes"))
    pool = items[items["label"].isin(chosen)] if chosen else items
    how = columns[2].radio("Images", ["Random", "Chosen by id"], horizontal=True, key="padding_how")
    if how == "Random":
        count = columns[3].number_input("How many", 1, MAX_SAMPLE, 6, key="padding_count")
        columns[3].button("Shuffle", on_click=_shuffle, icon=":material/shuffle:")
        return pool.sample(min(int(count), len(pool)), random_state=st.session_state.get(SEED_KEY, 0))
    ids = st.multiselect("Item ids", pool["id"], default=list(pool["id"].iloc[:3]),
                         max_selections=MAX_SAMPLE, key=_key(dataset, "ids"))
    return pool[pool["id"].isin(ids)]


def _show_item(row, size: int) -> None:
    share = preprocess.padding_share(row.width, row.height)
    st.markdown(f"{md(row.id)} · **{md(row.label)}** · {row.width}×{row.height} px · "
                f"padding would fill {share:.0%} of the square")
    thumbs = _thumbnails(row.path, int(row.index), row.split, row.hash, size)
    captions = {"original": f"original {row.width}×{row.height}"}
    for column, (name, jpeg) in zip(st.columns(len(thumbs)), thumbs.items()):
        column.image(jpeg, caption=captions.get(name, name), output_format="JPEG", width="stretch")


def _show_preview(sample: pd.DataFrame, size: int, all_square: bool) -> None:
    st.subheader(f"What the model sees at {size}×{size}")
    if all_square:
        st.info("Every image of this dataset is already square, so all pad modes give the same picture; "
                "a dataset of variable-size crops (such as the blood-cell demo) shows the differences.")
    if sample.empty:
        st.info("Choose at least one image.")
    st.html(THUMBNAIL_FRAME)
    with st.container(key="padding_preview"):
        for row in sample.itertuples(index=False):
            try:
                _show_item(row, size)
            except Exception as exc:  # a file damaged after the header scan
                st.warning(f"{md(row.id)} cannot be shown: {md(exc)}")


def _share_histogram(items: pd.DataFrame) -> None:
    """Padding share over the whole dataset, from the manifest's sizes alone (no image is read)."""
    share = preprocess.padding_share(items["width"], items["height"]) * 100
    st.subheader("How much of each square would be padding")
    fig = px.histogram(items.assign(share=share), x="share", color="label", nbins=40,
                       range_x=[0, 100], labels={"share": "padding share of the square (%)", "label": "class"})
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="images", bargap=0.05)
    st.plotly_chart(fig, width="stretch")
    st.caption(f"{len(items):,} usable images; median {share.median():.0f}% padding; "
               f"{(share > 25).mean():.0%} of them would be more than a quarter padding.")


def _run_export(manifest: pd.DataFrame, dataset: str, out_dir: str, settings: dict) -> None:
    bar = st.progress(0.0, text="Exporting…")

    def report(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Exported {done:,} of {total:,} images")

    try:
        result = export_preprocessed(manifest, out_dir, progress=report, **settings, who=current_reader())
    except (ValueError, OSError) as exc:
        st.error(f"Export failed: {md(exc)}")
        return
    finally:
        bar.empty()
    st.session_state[EXPORT_KEY] = {**result, **settings, "dataset": dataset}


def _register(result: dict, name: str) -> None:
    try:
        add_dataset(name, export_source(result["csv"]), who=current_reader())
    except (SourceError, OSError) as exc:
        st.error(f"Could not add the dataset: {md(exc)}")
        return
    select_dataset_next_run(name.strip())
    st.session_state[FLASH_KEY] = f"Added the dataset '{name.strip()}' and made it the sidebar's dataset."
    st.session_state.pop(EXPORT_KEY, None)
    st.rerun()  # so the sidebar's dataset list shows the new entry


def _offer_registration(result: dict) -> None:
    skipped = result["skipped_problems"] + result["skipped_unlabelled"]
    st.success(f"Wrote {result['written']:,} images and {result['csv']} in {result['seconds']:.1f} s"
               + (f" ({skipped:,} skipped: problems or no label)." if skipped else "."))
    default = f"{result['dataset']} ({result['size']} px, {result['fit']}, {result['pad_mode']})"
    name = st.text_input("Name for the new dataset", default, key=f"padding_register_name::{default}")  # per export
    if st.button("Add the export as a dataset", icon=":material/add:"):
        _register(result, name)


def _export_section(manifest: pd.DataFrame, dataset: str, size: int) -> None:
    with st.expander("Export a preprocessed copy", icon=":material/save:"):
        st.caption("Writes every usable image as a square PNG plus a labels.csv (path, label, split, group).")
        if FLASH_KEY in st.session_state:
            st.success(st.session_state.pop(FLASH_KEY))
        columns = st.columns([3, 1, 1, 1])
        settings = {
            "pad_mode": columns[1].selectbox("Pad mode", preprocess.PAD_MODES, key="padding_export_pad"),
            "fit": columns[2].selectbox("Fit", preprocess.FIT_MODES, key="padding_export_fit"),
            "size": int(columns[3].number_input("Size", preprocess.MIN_SIZE, preprocess.MAX_SIZE, size)),
        }
        # One folder per setting: an export at 128 px must not replace one at 64 px that may already be
        # a dataset with runs trained on it.
        label = f"{settings['size']}px-{settings['fit']}-{settings['pad_mode']}"
        default_dir = workspace.home() / "exports" / safe_name(dataset) / label
        out_dir = columns[0].text_input("Output folder", str(default_dir), key=_key(dataset, f"out_{label}"))
        if st.button("Export", type="primary", icon=":material/file_export:"):
            _run_export(manifest, dataset, out_dir, settings)
        export = st.session_state.get(EXPORT_KEY)
        if export and export["dataset"] == dataset:  # an export of another dataset is not offered here
            _offer_registration(export)


def main() -> None:
    st.title("Padding")
    st.caption("Models take square inputs. Compare the ways of making a crop square before you train: "
               "every picture below is exactly what the model will receive.")
    dataset, spec = current_dataset()
    manifest = manifest_or_stop(spec, f"the dataset '{dataset}'")
    items = manifest[usable(manifest)]
    if items.empty:
        st.warning(f"'{md(dataset)}' has no usable images (each needs a label and no problem).")
        st.stop()
    columns = st.columns([2, 2, 2, 1])
    size = _size_control(columns[0])
    all_square = bool((items["width"] == items["height"]).all())
    _show_preview(_pick_sample(items, dataset, columns), size, all_square)
    _share_histogram(items)
    if roles.may(current_reader(), "export data") and roles.may(current_reader(), "manage datasets"):
        _export_section(manifest, dataset, size)
    else:
        st.caption("Exporting a preprocessed copy as a new dataset needs the admin role.")


main()
