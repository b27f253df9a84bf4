"""Prediction sets made in the background: the app's "Apply a model" job.

A job is a separate process (`python -m core predict-job RUN_DIR NAME`), like training, so closing
the tab or restarting the app neither stops nor forgets it. Its job file (see core.rundir) holds
the source it reads, its state (queued|running|finished|failed), progress (images done / total),
the files it had to skip and, on failure, the tail of its output. A process that died without
saying so is found by its pid and marked failed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import dataroots, rundir, workspace
from core.datacache import decoded
from core.embeddings import features_cached
from core.predict import predict_source
from core.roles import Identity, from_record, require, to_record
from core.runmodel import load_run_model, preprocessor_of
from core.runs import pid_alive
from core.sources import SourceError, SourceSpec, csv_columns

#: How often a running job rewrites its progress at most (a batch can take milliseconds).
PROGRESS_EVERY_S = 0.5


def launch(run_dir: Path, spec: SourceSpec, name: str, who: Identity | str) -> int:
    """Check what can be checked at once (who, the run, the name, the source), then start the job
    detached from the caller; returns its pid. Refuses a name whose job is still active."""
    require(who, "launch runs")
    run_dir = Path(run_dir)
    rundir.check_set_name(name)
    if not rundir.predictions_path(run_dir).exists():
        raise ValueError(f"{run_dir.name} has not finished: predict with a finished run's best model.")
    if not Path(spec.path).exists():
        raise SourceError(f"No such file or folder: {spec.path}")
    try:
        dataroots.check(spec.path)
    except dataroots.OutsideDataRoots as exc:
        raise SourceError(str(exc)) from exc
    if status(run_dir, name).get("state") in rundir.ACTIVE:
        raise ValueError(f"A prediction job named '{name}' is still running on this run: wait, or pick another name.")
    rundir.prediction_sets_dir(run_dir).mkdir(parents=True, exist_ok=True)
    log_path = rundir.prediction_log_path(run_dir, name)
    log_path.unlink(missing_ok=True)
    rundir.prediction_features_path(run_dir, name).unlink(missing_ok=True)  # of an earlier set of this name
    _write(run_dir, name, fresh=True, state="queued", spec=spec.to_dict(), created=time.time(), done=0, total=None,
           message="starting", skipped=[], by=to_record(who))
    cmd = [sys.executable, "-m", "core", "predict-job", str(run_dir), name]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, cwd=workspace.PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, "LUMEN_HOME": str(workspace.home()), "PYTHONUNBUFFERED": "1"})
    _write(run_dir, name, pid=process.pid)
    return process.pid


def run_job(run_dir: Path, name: str) -> int:
    """The job's own process: predict, carry the source's columns into the set, say how it went.
    Returns the exit code (0 finished, 1 failed)."""
    run_dir = Path(run_dir)
    job = _read(run_dir, name)
    spec = SourceSpec.from_dict(job["spec"])
    _write(run_dir, name, state="running", pid=os.getpid(), started=time.time(), message="reading the source")
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if done >= total or time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            _write(run_dir, name, done=done, total=total, message=f"predicting: {done:,} of {total:,} images")

    try:
        # the job acts for whoever launched it, checked again here
        result = predict_source(run_dir, spec, name, progress, who=from_record(job.get("by")))
        table = with_source_columns(result.table, spec)
        classes = rundir.classes_of(table)
        rundir.write_predictions(result.path, table.drop(columns=rundir.prob_columns(classes)), classes,
                                 table[rundir.prob_columns(classes)].to_numpy())
        if features_cached(run_dir):
            _write(run_dir, name, message="the set's features, to compare with the test split's")
            store_features(run_dir, name, table)
    except Exception as exc:  # whatever went wrong is the job's result, shown on the page
        traceback.print_exc()
        sys.stdout.flush()
        _write(run_dir, name, state="failed", finished=time.time(), message=str(exc) or type(exc).__name__,
               log_tail=rundir.file_tail(rundir.prediction_log_path(run_dir, name), 12))
        return 1
    _write(run_dir, name, state="finished", finished=time.time(), items=len(table),
           labelled=int(table["label"].isin(classes).sum()),
           skipped=result.skipped.to_dict("records"),
           message=f"{len(table):,} images predicted, {len(result.skipped):,} skipped")
    return 0


def with_source_columns(table: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """The set with its CSV source's other columns (centre, scanner, ...) under rundir.SOURCE_COLUMN_PREFIX,
    so a breakdown by them still works when the CSV has changed or moved since."""
    extra = csv_columns(spec)
    if extra.empty or not len(extra.columns):
        return table
    extra = extra.add_prefix(rundir.SOURCE_COLUMN_PREFIX)
    return table.join(extra, on="item_id")


def store_features(run_dir: Path, name: str, table: pd.DataFrame, batch_size: int = 256) -> np.ndarray:
    """The best model's penultimate features of every row of a set, stored beside it: a second pass
    over the images, made only for runs whose own features are stored (the shift check needs both)."""
    import torch

    from core.models import features

    model, ckpt = load_run_model(run_dir)
    preprocessor = preprocessor_of(ckpt)
    rows = table[["path", "index", "source_split"]].rename(columns={"source_split": "split"})
    out, batch = [], []
    for pixels in [*decoded(rows, preprocessor), None]:
        if isinstance(pixels, Exception):
            raise pixels
        if pixels is not None:
            batch.append(pixels)
        if batch and (pixels is None or len(batch) == batch_size):
            x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
            out.append(features(model, ckpt["config"]["model"]["name"], preprocessor.tensor(x)).numpy())
            batch = []
    feats = np.concatenate(out).astype(np.float32)
    workspace.atomic_write(rundir.prediction_features_path(run_dir, name), lambda handle: np.save(handle, feats))
    return feats


def status(run_dir: Path, name: str) -> dict[str, Any]:
    """The job file, corrected when the process behind an active state is gone; {} when there is no job."""
    current = _read(run_dir, name)
    if current.get("state") in rundir.ACTIVE and current.get("pid") and not pid_alive(current["pid"]):
        current = _write(run_dir, name, state="failed", finished=time.time(),
                         message="the prediction process died without finishing (killed, or out of memory)",
                         log_tail=rundir.file_tail(rundir.prediction_log_path(run_dir, name), 12))
    return current


def jobs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every prediction job of a run by set name, newest first."""
    found = {name: status(run_dir, name) for name in rundir.list_prediction_jobs(run_dir)}
    return dict(sorted(found.items(), key=lambda kv: -float(kv[1].get("created") or 0)))


def wait(run_dir: Path, name: str, timeout: float = 600, poll: float = 0.5) -> dict[str, Any]:
    """Block until the job leaves the active states (for tests and scripts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status(run_dir, name)
        if current.get("state") not in rundir.ACTIVE:
            return current
        time.sleep(poll)
    raise TimeoutError(f"prediction job {name} still {current.get('state')} after {timeout:.0f} s")


def _read(run_dir: Path, name: str) -> dict[str, Any]:
    job: dict[str, Any] = rundir.read_json(rundir.prediction_job_path(run_dir, name), {})
    return job


def _write(run_dir: Path, name: str, fresh: bool = False, **fields: Any) -> dict[str, Any]:
    """Merge fields into the job file (a fresh one replaces it), atomically."""
    job = {**({} if fresh else _read(run_dir, name)), **fields, "updated": time.time()}
    workspace.atomic_write_json(rundir.prediction_job_path(run_dir, name), job)
    return job
