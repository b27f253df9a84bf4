"""A study's table on the Train page: test metrics per configuration as mean ± sd and the 95% interval,
as core.study computes them, filling in as the study's runs finish."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import study
from ui.text import md

#: the study picker's key: the page sets it to a study it has just launched
PICKER_KEY = "train_study_picker"


@st.cache_data(max_entries=64, show_spinner=False)
def _summary(study_dir: str, states: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """core.study's table, computed again only when a run's state changes (a finished run's
    predictions never do)."""
    return study.formatted(study.summary(Path(study_dir)))


def _title(study_dir: Path) -> str:
    name = study.read_record(study_dir).get("name")
    return f"{name} ({study_dir.name})" if name else study_dir.name


def _progress_words(states: pd.Series) -> str:
    counts = states.value_counts()
    parts = [f"{counts.get(state, 0)} {state}" for state in ("finished", "running", "queued", "failed", "cancelled")
             if counts.get(state, 0)]
    return f"{len(states)} runs: {', '.join(parts)}"


def study_table() -> None:
    """Pick a study (the newest unless another was picked) and show its table and its runs."""
    picked = st.selectbox("Study", study.list_studies(), format_func=_title, key=PICKER_KEY)
    states = study.states(picked)
    record = study.read_record(picked)
    st.caption(md(f"{_progress_words(states)}. Every figure is from the {study.source_words(record)}."))
    table = _summary(str(picked), tuple(states.astype(str).items()))
    st.dataframe(table.drop(columns="from"), hide_index=True, width="stretch", key="train_study_table")
    with st.expander("The study's runs"):
        runs = study.run_table(picked).drop(columns=["path"] if record["folds"] > 1 else ["path", "fold"])
        st.dataframe(runs, hide_index=True, width="stretch",
                     column_config={"test AUC": st.column_config.NumberColumn(format="%.4f"),
                                    "test accuracy": st.column_config.NumberColumn(format="%.3f")})
