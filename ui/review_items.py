"""What the Review page browses: the run's own splits, or one of its prediction sets (new cases)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from core import rundir
from core.review import annotation_key, set_annotation_key, set_items
from ui.runs_picker import predictions
from ui.state import run_manifest_or_stop

OWN = "the run's splits (train, val, test)"


@dataclass(frozen=True)
class ReviewItems:
    """Predictions to review, the manifest that locates their images, and where labels are stored."""

    preds: pd.DataFrame
    manifest: pd.DataFrame
    key: str  # annotation key
    name: str  # the dataset's or the set's name, for exports
    prediction_set: str | None  # None: the run's own splits


@st.cache_data(max_entries=16, show_spinner="Loading the prediction set…")
def _prediction_set(run: str, name: str, mtime: float) -> pd.DataFrame:
    return rundir.read_prediction_set(Path(run), name)


def pick_items(run_dir: Path, config: dict) -> ReviewItems:
    """A selectbox of the run's splits and its prediction sets, shown only when the run has sets."""
    sets = rundir.list_prediction_sets(run_dir)
    chosen = st.selectbox("Items", [OWN, *sets], key=f"rv_items_{run_dir.name}",
                          format_func=lambda s: s if s == OWN else f"prediction set: {s}",
                          help="A prediction set holds new cases the model was applied to on the Predict page; "
                               "readers' labels on them are kept with their source.") if sets else OWN
    if chosen == OWN:
        preds = predictions(run_dir)
        return ReviewItems(preds, run_manifest_or_stop(run_dir, preds), annotation_key(config),
                           config["dataset"].get("name") or Path(annotation_key(config)).stem, None)
    table = _prediction_set(str(run_dir), chosen, rundir.prediction_set_path(run_dir, chosen).stat().st_mtime)
    return ReviewItems(table, set_items(table), set_annotation_key(table), chosen, chosen)
