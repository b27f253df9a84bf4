"""The Train page's paired test of two runs on the same test items (core.paired): DeLong's test of
the AUC difference and McNemar's at the saved operating points, as `python -m core compare` prints."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import paired, rundir
from ui.text import md


def _stamp(run_dir: Path) -> tuple[float, float]:
    """What the test depends on: the run's predictions and its saved operating point."""
    point = rundir.operating_point_path(run_dir)
    return rundir.predictions_path(run_dir).stat().st_mtime, point.stat().st_mtime if point.exists() else 0.0


@st.cache_data(max_entries=16, show_spinner="Testing the difference…")
def _report(run_a: str, run_b: str, stamps: tuple) -> dict:
    return paired.compare_runs(Path(run_a), Path(run_b))


def paired_test(run_a: Path, run_b: Path) -> None:
    """The two tests as a small table, or why they do not apply to these two runs."""
    unfinished = [d.name for d in (run_a, run_b) if not rundir.predictions_path(d).exists()]
    if unfinished:
        st.caption(f"Paired test on the test split: waits until {md(', '.join(unfinished))} has finished.")
        return
    try:
        report = _report(str(run_a), str(run_b), (_stamp(run_a), _stamp(run_b)))
    except ValueError as exc:
        st.caption(f"No paired test: {md(exc)}")
        return
    st.markdown(f"**Paired test on the same {report['n']} test items** ({report['positives']} "
                f"{md(report['positive_class'])})")
    st.dataframe(paired.table(report), hide_index=True, width="stretch",
                 column_config={name: st.column_config.NumberColumn(format="%.3f")
                                for name in (report["runs"]["a"], report["runs"]["b"], "difference")}
                 | {"p-value": st.column_config.NumberColumn(format="%.3g")})
    st.caption("DeLong: is the ROC AUC difference larger than these items give by chance? McNemar: of the items "
               "exactly one run classifies right at its saved threshold (only one right: the first run's / the "
               "second's), is the split far from even? A p-value "
               "over 0.05 means these items cannot tell the runs apart.")
