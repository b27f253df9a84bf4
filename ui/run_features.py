"""The best model's features of a run, shared by the Embeddings and Review pages: computed once
per checkpoint (with a progress bar, as it means a pass over every image), then read from the run."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import embeddings, rundir


@st.cache_resource(max_entries=8, show_spinner=False)
def _stored_features(run: str, stamp: int) -> pd.DataFrame:
    return embeddings.load_features(Path(run))


@st.cache_resource(max_entries=8, show_spinner=False)
def _neighbour_index(run: str, stamp: int) -> embeddings.NeighbourIndex:
    return embeddings.NeighbourIndex(_stored_features(run, stamp))


def checkpoint_stamp(run_dir: Path) -> int:
    """Changes whenever best.pt is rewritten (a resumed run), so caches keyed on it go stale with it."""
    return rundir.checkpoint_path(run_dir, "best").stat().st_mtime_ns


def run_features(run_dir: Path) -> pd.DataFrame:
    """item_id, split, label, group, with the feature matrix in `.attrs["features"]`.

    The computation runs outside Streamlit's cache: a cached function may not draw on the page,
    and the progress bar has to."""
    if not embeddings.features_cached(run_dir):
        bar = st.progress(0.0, text="Computing the best model's features (once per checkpoint)…")
        try:
            embeddings.load_features(run_dir, lambda done, total: bar.progress(
                done / total, text=f"Computing the best model's features: {done:,} of {total:,} images"))
        finally:
            bar.empty()
    return _stored_features(str(run_dir), checkpoint_stamp(run_dir))


def run_neighbours(run_dir: Path) -> embeddings.NeighbourIndex:
    """The run's neighbour index, built once per checkpoint: a click on a point only queries it."""
    run_features(run_dir)
    return _neighbour_index(str(run_dir), checkpoint_stamp(run_dir))
