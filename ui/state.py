"""Shared sidebar state and cached loaders; the only place pages reach the dataset registry."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import registry, rundir
from core.review import with_predicted_items
from core.runconfig import dataset_spec
from core.scanning import scan
from core.sources import SourceError, SourceSpec, source_signature
from ui.text import md

DATASET_KEY = "dataset"
PENDING_KEY = "dataset_to_select"  # set by a page; applied before the sidebar widget exists


@st.cache_data(show_spinner="Reading image headers…", max_entries=32)
def _cached_manifest(spec_json: tuple, signature: str, facts_version: float | None):
    return scan(SourceSpec.from_dict(dict(spec_json)))


def load_manifest(spec: SourceSpec, facts_version: float | None = None):
    """The manifest of a source (headers only: verification runs in its own process), cached per
    source, its folders' signature (a file added in a class folder shows without a rescan) and
    ``facts_version`` (when the verification job finished: its results are then read)."""
    spec_key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.to_dict().items()))
    return _cached_manifest(spec_key, source_signature(spec), facts_version)


def manifest_or_stop(spec: SourceSpec, whose: str):
    """The manifest, or a plain error and the end of this page run: a dataset whose folder moved
    or whose drive is not mounted must not show a traceback."""
    try:
        return load_manifest(spec)
    except SourceError as exc:
        st.error(f"Cannot read the images of {md(whose)}: {md(exc)}. If they moved or their drive is not mounted, "
                 "put them back at that path.")
        st.stop()


def run_manifest_or_stop(run_dir, preds: pd.DataFrame) -> pd.DataFrame:
    """The manifest of a run's dataset, with every item the run predicted (core.review.with_predicted_items)."""
    spec = dataset_spec(rundir.read_config(run_dir))
    return with_predicted_items(manifest_or_stop(spec, f"the run {Path(run_dir).name}"), preds)


def dataset_picker() -> tuple[str, SourceSpec]:
    """The sidebar's dataset choice, shared by every page through session state and mirrored in the
    URL (`?dataset=…`), so a reload or a shared link opens the same dataset. The mirror is kept by
    hand, not by binding the widget to the URL: a bound parameter makes `st.switch_page` fail."""
    datasets = registry.list_datasets()
    names = list(datasets)
    if st.session_state.get(PENDING_KEY) in names:
        st.session_state[DATASET_KEY] = st.session_state.pop(PENDING_KEY)
    elif DATASET_KEY not in st.session_state and st.query_params.get(DATASET_KEY) in names:
        st.session_state[DATASET_KEY] = st.query_params[DATASET_KEY]  # a new session from a link
    elif st.session_state.get(DATASET_KEY) not in names:
        st.session_state[DATASET_KEY] = names[0]  # first visit, or a dataset since removed
    name = st.sidebar.selectbox("Dataset", names, key=DATASET_KEY)
    if name == names[0]:
        st.query_params.pop(DATASET_KEY, None)
    elif st.query_params.get(DATASET_KEY) != name:
        st.query_params[DATASET_KEY] = name
    return name, datasets[name]


def select_dataset_next_run(name: str) -> None:
    """Make ``name`` the sidebar's dataset from the next rerun on (the widget is already drawn)."""
    st.session_state[PENDING_KEY] = name


def current_dataset() -> tuple[str, SourceSpec]:
    """The dataset chosen in the sidebar (the first one before any choice)."""
    datasets = registry.list_datasets()
    name = st.session_state.get(DATASET_KEY)
    if name not in datasets:
        name = next(iter(datasets))
    return name, datasets[name]


def clear_manifest_cache() -> None:
    _cached_manifest.clear()
