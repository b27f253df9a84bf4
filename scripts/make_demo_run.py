"""Regenerate the embedded demo run in assets/demo/runs/glomeruli-simple-cnn (the result is committed).

Trains configs/demo_run.json (a small simple_cnn on the demo glomeruli of two centres, SESCAM and
VUHSK, slide-grouped split) the way the app does, as a background run in a private workspace, then
copies its run directory (the files core.rundir.shipped_files names) into assets/ with the features
and the layouts the Embeddings page opens with (PCA, UMAP and t-SNE of all splits, of train and of
test), so the demo draws them without computing. The third centre (SAS) never meets training: it is
predicted by the Predict page's own background job and shipped as the prediction set `centre-SAS`,
so a first-time user sees an external validation without training anything.

The config keeps its dataset path relative to the repository root (readers resolve it with
core.runconfig.dataset_spec), so the copy works wherever the repository is cloned; the temporary
run directory named in log.txt is replaced by the committed one, and the prediction set's image
paths are stored relative to the repository. CPU, about a minute.

    python -m scripts.make_demo_run
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["LUMEN_HOME"] = tempfile.mkdtemp(prefix="lumen-demo-run-")  # no queue behind other runs

import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from core import embeddings, prediction_jobs, rundir, runs, workspace  # noqa: E402
from core.roles import operator  # noqa: E402
from core.runconfig import dataset_spec, load_config  # noqa: E402
from core.sources import SourceSpec  # noqa: E402

CONFIG = ROOT / "configs" / "demo_run.json"
TARGET = ROOT / "assets" / "demo" / "runs" / "glomeruli-simple-cnn"
GLOMERULI = ROOT / "assets" / "demo" / "glomeruli"
EXTERNAL_CENTRE = "SAS"  # left out of training; the run's prediction set
EXTERNAL_SET = f"centre-{EXTERNAL_CENTRE}"
POSITIVE = "GS"
LAYOUTS = [("train", "val", "test"), ("train",), ("test",)]  # the Embeddings page's default panels


def write_centre_csvs() -> SourceSpec:
    """The demo glomeruli as two CSVs beside labels.csv (same relative paths): the training centres,
    at the path the config names, and the external centre; returns the external one's source."""
    table = pd.read_csv(GLOMERULI / "labels.csv")
    train = dataset_spec(json.loads(CONFIG.read_text()))  # not load_config: it checks that the file exists
    external = GLOMERULI / f"{EXTERNAL_SET}.csv"
    table[table["center"] != EXTERNAL_CENTRE].to_csv(train.path, index=False)
    table[table["center"] == EXTERNAL_CENTRE].to_csv(external, index=False)
    return SourceSpec.from_dict({**train.to_dict(), "path": str(external)})


def train_demo() -> Path:
    """Create and launch the run like the app does; wait for it; fail loudly unless it finished."""
    run_dir = runs.create_runs(load_config(CONFIG), who=operator())[0]
    runs.launch(run_dir, who=operator())
    final = runs.wait(run_dir, timeout=900)
    if final.get("state") != "finished":
        raise RuntimeError(f"the demo run {final.get('state')}: {final.get('message')}\n{rundir.log_tail(run_dir)}")
    return run_dir


def stage(run_dir: Path, target: Path) -> Path:
    """The contract's files, copied into a folder beside the target."""
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for path in rundir.shipped_files(run_dir):
        target_path = staging / path.relative_to(run_dir)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target_path)  # not copy2: workspace files are 0600
    log = rundir.log_path(staging)  # names this machine's temporary run directory: say the committed one
    log.write_text(log.read_text().replace(str(run_dir), str(target.relative_to(ROOT))))
    return staging


def predict_external(run_dir: Path, spec: SourceSpec) -> None:
    """The Predict page's job on the external centre, in its own process; fail loudly unless it finished."""
    prediction_jobs.launch(run_dir, spec, EXTERNAL_SET, operator())
    job = prediction_jobs.wait(run_dir, EXTERNAL_SET, timeout=600)
    if job.get("state") != "finished":
        raise RuntimeError(f"the external prediction {job.get('state')}: {job.get('message')}\n{job.get('log_tail')}")


def portable_set(run_dir: Path, name: str) -> None:
    """The set's image and source paths relative to the repository (core.rundir resolves them), and the
    job's files without this machine's folders, so the committed set works wherever it is cloned."""
    table = rundir.read_prediction_set(run_dir, name)
    for column in ("path", "source"):
        table[column] = [Path(p).relative_to(ROOT).as_posix() for p in table[column]]
    path = rundir.prediction_set_path(run_dir, name)
    workspace.atomic_write(path, lambda handle: table.to_parquet(handle, index=False))
    job = rundir.read_json(rundir.prediction_job_path(run_dir, name))
    job["spec"]["path"] = Path(job["spec"]["path"]).relative_to(ROOT).as_posix()
    workspace.atomic_write_json(rundir.prediction_job_path(run_dir, name), {**job, "pid": None})
    log = rundir.prediction_log_path(run_dir, name)
    log.write_text(log.read_text().replace(f"{ROOT}/", ""))


def precompute_layouts(run_dir: Path) -> None:
    """Features and the default layouts, stored in the run (keyed by its best epoch)."""
    for method in embeddings.METHODS:
        for splits in LAYOUTS:
            embeddings.layout(run_dir, method, splits)


def split_auc(predictions: pd.DataFrame, split: str) -> str:
    """The best model's ROC AUC on one split (positive class GS), with the split's size and its errors at 0.5."""
    rows = predictions[predictions["split"] == split]
    positive, called = rows["label"] == POSITIVE, rows[rundir.prob_column(POSITIVE)] >= 0.5
    auc = roc_auc_score(positive, rows[rundir.prob_column(POSITIVE)])
    return (f"{split} AUC {auc:.3f} ({len(rows)} images, {positive.sum()} {POSITIVE}; at 0.5 "
            f"{(positive & ~called).sum()} FN, {(~positive & called).sum()} FP)")


def main() -> int:
    external = write_centre_csvs()
    start = time.time()
    run_dir = train_demo()
    seconds = time.time() - start
    staging = stage(run_dir, TARGET)
    precompute_layouts(staging)  # reads the images through the private workspace's cache
    predict_external(staging, external)  # after the layouts: the job stores the set's features beside the run's
    portable_set(staging, EXTERNAL_SET)
    shutil.rmtree(TARGET, ignore_errors=True)  # stale layouts of an older model go with it
    staging.rename(TARGET)
    shutil.rmtree(os.environ["LUMEN_HOME"])
    metrics = rundir.read_metrics(TARGET)
    predictions = pd.read_parquet(rundir.predictions_path(TARGET))
    best_epoch = int(metrics.loc[metrics["best"], "epoch"].iloc[-1])
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB"
                      for p in sorted((TARGET / "checkpoints").glob("*.pt")))
    external_set = rundir.read_prediction_set(TARGET, EXTERNAL_SET)
    print(f"trained in {seconds:.0f} s: {len(metrics)} epochs, best model from epoch {best_epoch}; "
          f"{split_auc(predictions, 'val')}, {split_auc(predictions, 'test')}, "
          f"{split_auc(external_set, EXTERNAL_SET)}; {sizes}")
    print(f"written to {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
