"""Predict page: apply a finished run's model to new images (a registered dataset or a path) as a
background job, then download the predictions and, for a labelled set, validate it externally."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import bundle, dataroots, predict, prediction_jobs, registry, roles, rundir
from core.sources import SourceError, SourceSpec
from ui import external_view
from ui.dataset_form import csv_fields
from ui.identity import current_reader
from ui.router import ensure_router
from ui.runs_picker import pick_run
from ui.text import md

ensure_router()

REGISTERED, TYPED = "A registered dataset", "A folder or CSV path on the server"
SET_KEY = "predict_set"  # the set shown below the list
LAUNCHED_KEY = "predict_launched"  # the job launched from this session: its failure or its set is shown
PENDING_KEY = "predict_pending"  # a finished job's set, shown from the next full run on
BUNDLE_KEY = "predict_bundle"  # the zip prepared in this session: (run, its best epoch, its operating point), bytes


def _source() -> SourceSpec | None:
    """The source to predict on, or None (with the reason shown) while it cannot be used."""
    how = st.radio("Images", [REGISTERED, TYPED], horizontal=True, key="predict_how")
    if how == REGISTERED:
        datasets = registry.list_datasets()
        name = st.selectbox("Dataset", list(datasets), key="predict_dataset")
        return datasets[name]
    path = st.text_input("Path on the server", key="predict_path", placeholder="/data/new_centre/labels.csv",
                         help="A folder of images (flat or in class folders), a CSV of paths with optional labels "
                              "and other columns (centre, scanner), or an .npz file.").strip()
    if not path:
        return None
    reason = dataroots.problem(path)
    if reason:
        st.error(md(reason[0].upper() + reason[1:] + "."))
        return None
    if not Path(path).exists():
        st.error(f"No such file or folder: {md(path)}")
        return None
    if Path(path).is_file() and Path(path).suffix.lower() in (".csv", ".tsv", ".txt"):
        fields = csv_fields(path)
        return SourceSpec(path=path, kind="csv", **fields) if fields else None
    return SourceSpec(path=path)


def _bundle_download(run_dir: Path) -> None:
    """The run's model bundle as a zip, made on request (tracing the model takes a while) for a role
    that may export data; core refuses anyone else anyway."""
    me = current_reader()
    if not roles.may(me, "export data"):
        return
    point = rundir.operating_point_path(run_dir)
    made_for = (str(run_dir), rundir.best_epoch(run_dir), point.stat().st_mtime if point.exists() else 0.0)
    with st.expander("Model bundle: the model out of Lumen", icon=":material/package_2:"):
        st.caption("A zip with the best model as TorchScript, its preprocessing, classes and operating point, a "
                   "model card, and a predict.py that needs only torch, pillow and numpy.")
        prepared = st.session_state.get(BUNDLE_KEY)
        if prepared is None or prepared[0] != made_for:
            if st.button("Prepare the model bundle", icon=":material/build:", key="predict_bundle_make"):
                with st.spinner("Tracing the model and writing its card…"):
                    try:
                        st.session_state[BUNDLE_KEY] = made_for, bundle.bundle_zip(run_dir, who=me)
                    except (FileNotFoundError, ValueError, PermissionError) as exc:
                        st.error(md(exc))
                        return
                st.rerun()
            return
        st.download_button("Download model bundle", prepared[1], file_name=f"{run_dir.name}-bundle.zip",
                           mime="application/zip", icon=":material/download:", key="predict_bundle_download")


def _launch_form(run_dir: Path) -> None:
    me = current_reader()
    may_launch = roles.may(me, "launch runs")
    with st.container(border=True):
        spec = _source()
        default = predict.default_set_name(spec) if spec else ""
        name = st.text_input("Name of the prediction set", value=default, key=f"predict_name_{default}",
                             help="Letters, digits, '.', '_' and '-'; a set of the same name is replaced.").strip()
        if name in rundir.list_prediction_sets(run_dir):
            st.caption(f"The run has a set named {md(name)} already: launching replaces it.")
        if st.button("Launch the prediction", type="primary", icon=":material/play_arrow:", key="predict_launch",
                     disabled=spec is None or not name or not may_launch,
                     help=None if may_launch else "Launching a job needs the admin role."):
            try:
                prediction_jobs.launch(run_dir, spec, name, me)
            except (SourceError, ValueError, PermissionError) as exc:
                st.error(md(exc))
                return
            st.session_state[LAUNCHED_KEY] = name
            st.rerun()


@st.fragment(run_every=1.0)
def _progress(run_dir: Path) -> None:
    """The jobs of this run, polled from their job files while one is active."""
    jobs = prediction_jobs.jobs(run_dir)
    active = {n: j for n, j in jobs.items() if j.get("state") in rundir.ACTIVE}
    for name, job in active.items():
        done, total = job.get("done") or 0, job.get("total")
        st.progress(done / total if total else 0.0, text=f"{name}: {job.get('message', '')}")
    launched = st.session_state.get(LAUNCHED_KEY)
    job = jobs.get(launched) if launched else None
    if job and job.get("state") == "failed":
        st.error(f"The prediction job {md(launched)} failed: {md(job.get('message', ''))}")
        if job.get("log_tail"):
            st.code(job["log_tail"], language=None)
    if job and job.get("state") == "finished":
        st.session_state[PENDING_KEY] = st.session_state.pop(LAUNCHED_KEY)
        st.rerun(scope="app")  # the new set joins the list below, and is shown


def _sets_table(run_dir: Path) -> pd.DataFrame:
    jobs = prediction_jobs.jobs(run_dir)
    rows = []
    for name in rundir.list_prediction_sets(run_dir):
        table = rundir.read_prediction_set(run_dir, name)
        classes = rundir.classes_of(table)
        job = jobs.get(name, {})
        rows.append({"set": name, "images": len(table), "labelled": int(table["label"].isin(classes).sum()),
                     "skipped": len(job["skipped"]) if "skipped" in job else None,
                     "source": str(table["source"].iloc[0]) if len(table) else ""})
    return pd.DataFrame(rows)


def _set_view(run_dir: Path, name: str) -> None:
    table = rundir.read_prediction_set(run_dir, name)
    rule = predict.decision(run_dir)
    cols = st.columns(3)
    for col, fmt in zip(cols, predict.CSV_FORMATS):
        col.download_button(f"Predictions CSV ({fmt})", predict.csv_rows(table, rule, fmt).to_csv(index=False),
                            file_name=f"{name}-{fmt}.csv", mime="text/csv", key=f"predict_dl_{fmt}",
                            icon=":material/download:",
                            help="lumen: file, predicted, one probability per class, decision at the saved point; "
                                 "course: exactly Image,Label (label = class index).")
    cols[2].caption(f"Decision: {md(rule.positive)} at {rule.threshold:.4f} ({rule.source}).")
    skipped = prediction_jobs.status(run_dir, name).get("skipped") or []
    if skipped:
        with st.expander(f"Skipped files ({len(skipped):,})", icon=":material/block:"):
            st.dataframe(pd.DataFrame(skipped), hide_index=True, width="stretch")
    external_view.show(run_dir, name, key="predict_ext")


st.title("Apply a model")
st.caption("Run a finished run's best model, with the input it was trained on, over new images: another "
           "centre's labelled crops for external validation, or new cases. The job runs in the background: "
           "closing the tab does not stop it.")
run_dir = pick_run()
if run_dir is None:
    st.stop()
_bundle_download(run_dir)
_launch_form(run_dir)
_progress(run_dir)
sets = _sets_table(run_dir)
if sets.empty:
    st.info("This run has no prediction sets yet.")
    st.stop()
st.markdown("**Prediction sets of this run**")
st.dataframe(sets, hide_index=True, width="stretch",
             column_config={"skipped": st.column_config.NumberColumn(help="files that could not be used")})
names = list(sets["set"])
if st.session_state.get(PENDING_KEY) in names:
    st.session_state[SET_KEY] = st.session_state.pop(PENDING_KEY)
elif st.session_state.get(SET_KEY) not in names:
    st.session_state[SET_KEY] = names[0]
shown = st.selectbox("Show the set", names, key=SET_KEY)
_set_view(run_dir, shown)
