"""Train page: launch runs as background processes, watch them live, cancel, resume, compare."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import roles, rundir, runs, study
from core.runconfig import ConfigError
from core.scanning import usable
from core.sources import SourceError
from core.splits import split_table
from ui import paired_view
from ui.identity import current_reader
from ui.router import ensure_router
from ui.run_config_form import run_config_fields, run_config_form, weights_file_missing
from ui.state import current_dataset, load_manifest
from ui.study_form import study_form
from ui.study_table import PICKER_KEY, study_table
from ui.text import md

ensure_router()

SELECTED_KEY = "train_selected_run"


def _launch(overrides: dict) -> None:
    try:
        dirs = runs.create_runs(overrides, who=me)
    except (ConfigError, SourceError) as exc:
        st.error(f"The run was not started: {md(exc)}")
        return
    for run_dir in dirs:
        runs.launch(run_dir, who=me)
    st.session_state[SELECTED_KEY] = dirs[0].name
    st.toast(f"Started {len(dirs)} run(s): {', '.join(d.name for d in dirs)}")


def _launch_study(spec: study.StudySpec) -> None:
    try:
        study_dir = study.create_study(spec, who=me)
    except (ConfigError, SourceError) as exc:
        st.error(f"The study was not started: {md(exc)}")
        return
    launched = study.launch_study(study_dir, who=me)
    st.session_state[PICKER_KEY] = study_dir
    st.toast(f"Started the study {study_dir.name}: {len(launched)} runs, queued on the device.")


def _curves(metrics: pd.DataFrame, title: str, pairs: list[tuple[str, str]]) -> go.Figure:
    fig = go.Figure()
    for column, name in pairs:
        if column in metrics:
            fig.add_scatter(x=metrics["epoch"], y=metrics[column], mode="lines+markers", name=name)
    fig.update_layout(title=title, height=300, margin={"t": 40, "b": 10}, xaxis_title="epoch",
                      legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(tickformat="d", dtick=max(1, len(metrics) // 10))
    return fig


def _progress(current: dict) -> None:
    share = float(current.get("progress") or 0.0)
    eta = runs.eta_seconds(current)
    eta_text = f", about {eta / 60:.1f} min left" if eta is not None else ""
    st.progress(min(share, 1.0), text=f"{current.get('state')}: epoch {current.get('epoch', 0)} of "
                                      f"{current.get('epochs', '?')}{eta_text}. {current.get('message', '')}")


def _actions(run_dir: Path, current: dict) -> None:
    """Cancel, resume and delete, side by side from the left: only what applies to this run."""
    if not may_launch:
        return
    state = current.get("state")
    row = st.container(horizontal=True)
    if state in rundir.ACTIVE:
        if row.button("Cancel run", icon=":material/stop:", key=f"cancel_{run_dir.name}"):
            runs.cancel(run_dir, who=me)
            st.toast("Cancelling: the run stops at the next batch.")
    elif state in ("cancelled", "failed"):
        if row.button("Resume run", icon=":material/replay:", key=f"resume_{run_dir.name}"):
            runs.resume(run_dir, who=me)
            st.toast("Resumed from the last finished epoch.")
            st.rerun()
    if roles.may(me, "delete runs") and state not in rundir.ACTIVE and run_dir not in rundir.demo_runs():
        if row.button("Delete run", icon=":material/delete:", key=f"delete_{run_dir.name}"):
            try:
                runs.delete(run_dir, who=me)
            except (ValueError, PermissionError) as exc:
                st.error(str(exc))
            else:
                st.toast(f"Deleted {run_dir.name}.")
                st.rerun()


def _subset_words(subset: dict) -> str:
    """"a subset: 10% of each class, at most 50 per class (seed 0)", or "" for the whole dataset."""
    parts = ([f"{subset['fraction']:.0%} of each class"] if subset.get("fraction") else []) + \
        ([f"at most {subset['per_class']:,} per class"] if subset.get("per_class") else [])
    return f"a subset: {', '.join(parts)} (seed {subset.get('seed', 0)})" if parts else ""


def _kept_items(run_dir: Path) -> None:
    """The items the run drew (after its subset), per class and split: what it trains and tests on."""
    items = rundir.read_items(run_dir)
    if items is None or "label" not in items:
        return  # not started yet, or a run older than splits.csv
    subset = _subset_words(rundir.read_config(run_dir).get("subset") or {})
    with st.expander(f"Split: {len(items):,} items" + (f", {subset}" if subset else "")):
        st.dataframe(split_table(items).rename_axis("class").reset_index(), hide_index=True,
                     key=f"kept_{run_dir.name}")


def _monitor(run_dir: Path) -> None:
    current = runs.status(run_dir)
    metrics = rundir.read_metrics(run_dir)
    st.markdown(f"#### {md(run_dir.name)} · {current.get('state')}")
    _progress(current)
    if current.get("state") == "failed":
        st.error(f"The run failed: {md(current.get('message', ''))}")
    _actions(run_dir, current)
    _kept_items(run_dir)
    if metrics.empty:
        st.info("No finished epoch yet: curves appear after the first one.")
    else:
        cols = st.columns(3)
        cols[0].plotly_chart(_curves(metrics, "Loss", [("train_loss", "train"), ("val_loss", "val")]),
                             width="stretch", key=f"loss_{run_dir.name}")
        cols[1].plotly_chart(_curves(metrics, "Accuracy and AUC", [("train_accuracy", "train accuracy"),
                                     ("val_accuracy", "val accuracy"), ("val_auc", "val ROC AUC")]),
                             width="stretch", key=f"acc_{run_dir.name}")
        cols[2].plotly_chart(_curves(metrics, "Speed (images/s)", [("images_per_s", "train")]),
                             width="stretch", key=f"speed_{run_dir.name}")
        best = metrics[metrics["best"]].iloc[-1]
        st.caption(f"Best epoch {int(best['epoch'])}: val AUC {best['val_auc']:.4f}, val accuracy "
                   f"{best['val_accuracy']:.3f}, val loss {best['val_loss']:.4f}. "
                   f"{current.get('message', '')}")
    with st.expander("Log (last lines)", expanded=current.get("state") == "failed"):
        st.code(rundir.log_tail(run_dir, 25) or "(empty)", language=None)


def _runs_table(table: pd.DataFrame) -> str | None:
    columns = ["run", "state", "dataset", "model", "size", "seed", "epochs", "best val AUC", "best val acc"]
    event = st.dataframe(table[columns], hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="single-row", key="train_runs_table",
                         column_config={"best val AUC": st.column_config.NumberColumn(format="%.4f"),
                                        "best val acc": st.column_config.NumberColumn(format="%.3f")})
    rows = event.selection.rows if event and event.selection else []
    if rows:
        st.session_state[SELECTED_KEY] = table.iloc[rows[0]]["run"]
    return st.session_state.get(SELECTED_KEY)


def _compare(table: pd.DataFrame) -> None:
    chosen = st.multiselect("Compare runs", table["run"].tolist(), key="train_compare")
    if len(chosen) < 2:
        st.caption("Pick two or more runs to compare their settings and validation curves.")
        return
    paths = table.set_index("run")["path"]
    dirs = [Path(paths[name]) for name in chosen]
    st.dataframe(runs.compare(dirs), hide_index=True, width="stretch")
    if len(dirs) == 2:
        paired_view.paired_test(*dirs)
    fig = go.Figure()
    for run_dir in dirs:
        metrics = rundir.read_metrics(run_dir)
        if not metrics.empty:
            fig.add_scatter(x=metrics["epoch"], y=metrics["val_auc"], mode="lines+markers", name=run_dir.name)
    fig.update_layout(title="Validation ROC AUC", height=320, xaxis_title="epoch", margin={"t": 40, "b": 10})
    st.plotly_chart(fig, width="stretch")


def _why_it_cannot_train(name: str, spec) -> str | None:
    """Said before launch, rather than found in a failed run's log."""
    try:
        manifest = load_manifest(spec)
    except SourceError as exc:
        return f"Cannot read '{name}': {exc}"
    classes = manifest.loc[usable(manifest), "label"].nunique()
    if classes < 2:
        return (f"'{name}' has {classes} class{'' if classes == 1 else 'es'} with usable images; training needs "
                "at least two. The Dataset page shows each file's problem.")
    return None


st.title("Train")
name, spec = current_dataset()
me = current_reader()
may_launch = roles.may(me, "launch runs")
if may_launch:
    with st.expander("New run or study", expanded=not any(rundir.runs_root().iterdir())):
        blocked = _why_it_cannot_train(name, spec)
        if st.radio("Launch", ["one run", "a study"], horizontal=True, key="train_launch_kind",
                    captions=["with its repeats", "a grid of configurations over seeds or folds"]) == "one run":
            overrides = run_config_form(name, spec, blocked=blocked)
            if overrides is not None:
                _launch(overrides)
        else:
            with st.container(border=True):
                base = run_config_fields(name, spec, blocked)
                st.markdown("**The study:** the fields above are every configuration's base; its seeds or "
                            "folds below take the place of their repeats")
                study_spec = study_form(base, blocked)
            if study_spec is not None and not weights_file_missing(base):
                _launch_study(study_spec)
else:
    st.info("Launching, cancelling and deleting runs needs the admin role; you can follow the runs below.")


@st.fragment(run_every=2.0)
def _runs_section() -> None:
    """The chosen study's table, the run list and the chosen run, polled from the run directories
    every two seconds; the rest of the page (the new-run form) does not rerun."""
    if study.list_studies():
        st.subheader("Studies")
        study_table()
    table = runs.list_runs()
    if table.empty:
        st.info("No runs yet: set up a run above and launch it. Runs keep going when you close the tab.")
        return
    st.subheader("Runs")
    selected = _runs_table(table)
    if selected not in table["run"].tolist():
        selected = table["run"].iloc[0]
    _monitor(Path(table.set_index("run").loc[selected, "path"]))


_runs_section()
table = runs.list_runs()
if len(table) >= 2:
    st.subheader("Compare")
    _compare(table)
