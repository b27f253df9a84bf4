"""Picking a finished run and loading its predictions, shared by the analysis pages."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import rundir

RUN_KEY = "analysis_run"


def finished_runs() -> list[Path]:
    """Runs with predictions, newest first (the embedded demo run last)."""
    found = [d for d in sorted(rundir.runs_root().iterdir(), reverse=True) if rundir.predictions_path(d).exists()]
    return found + [d for d in rundir.demo_runs() if d not in found]


@st.cache_data(max_entries=16, show_spinner="Loading predictions…")
def _predictions(path: str, mtime: float) -> pd.DataFrame:
    return rundir.read_predictions(Path(path))


def predictions(run_dir: Path) -> pd.DataFrame:
    """Cached per run and file version, so a re-run of the same run shows new numbers."""
    return _predictions(str(run_dir), rundir.predictions_path(run_dir).stat().st_mtime)


def pick_run() -> Path | None:
    """A selectbox of finished runs, remembered across pages; None (with a hint) when there is none."""
    runs = finished_runs()
    if not runs:
        st.info("No finished run yet: train one on the Train page.")
        return None
    names = [r.name for r in runs]
    if st.session_state.get(RUN_KEY) not in names:
        st.session_state[RUN_KEY] = names[0]
    name = st.selectbox("Run", names, key=RUN_KEY)
    return runs[names.index(name)]
