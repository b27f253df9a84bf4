"""Regenerate the embedded demo run in assets/demo/runs/glomeruli-simple-cnn (the result is committed).

Trains configs/demo_run.json (a small simple_cnn on the demo glomeruli, slide-grouped split) the
way the app does, as a background run in a private workspace, then copies its run directory (the
files core.rundir.shipped_files names) into assets/ with the features and the layouts the Embeddings
page opens with (PCA, UMAP and t-SNE of all splits, of train and of test), so the demo draws them
without computing.

The config keeps its dataset path relative to the repository root (readers resolve it with
core.runconfig.dataset_spec), so the copy works wherever the repository is cloned; the temporary
run directory named in log.txt is replaced by the committed one. CPU, about a minute.

    python scripts/make_demo_run.py
"""
from __future__ import annotations

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

from core import embeddings, roles, rundir, runs  # noqa: E402
from core.runconfig import load_config  # noqa: E402

CONFIG = ROOT / "configs" / "demo_run.json"
TARGET = ROOT / "assets" / "demo" / "runs" / "glomeruli-simple-cnn"
POSITIVE = "GS"
LAYOUTS = [("train", "val", "test"), ("train",), ("test",)]  # the Embeddings page's default panels


def train_demo() -> Path:
    """Create and launch the run like the app does; wait for it; fail loudly unless it finished."""
    run_dir = runs.create_runs(load_config(CONFIG), who=roles.operator())[0]
    runs.launch(run_dir, who=roles.operator())
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


def precompute_layouts(run_dir: Path) -> None:
    """Features and the default layouts, stored in the run (keyed by its best epoch)."""
    for method in embeddings.METHODS:
        for splits in LAYOUTS:
            embeddings.layout(run_dir, method, splits)


def split_auc(predictions: pd.DataFrame, split: str) -> str:
    """The best model's ROC AUC on one split (positive class GS), with the split's size."""
    rows = predictions[predictions["split"] == split]
    auc = roc_auc_score(rows["label"] == POSITIVE, rows[rundir.prob_column(POSITIVE)])
    return f"{split} AUC {auc:.3f} ({len(rows)} images, {(rows['label'] == POSITIVE).sum()} {POSITIVE})"


def main() -> int:
    start = time.time()
    run_dir = train_demo()
    seconds = time.time() - start
    staging = stage(run_dir, TARGET)
    precompute_layouts(staging)  # reads the images through the private workspace's cache
    shutil.rmtree(TARGET, ignore_errors=True)  # stale layouts of an older model go with it
    staging.rename(TARGET)
    shutil.rmtree(os.environ["LUMEN_HOME"])
    metrics = rundir.read_metrics(TARGET)
    predictions = pd.read_parquet(rundir.predictions_path(TARGET))
    best_epoch = int(metrics.loc[metrics["best"], "epoch"].iloc[-1])
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB"
                      for p in sorted((TARGET / "checkpoints").glob("*.pt")))
    print(f"trained in {seconds:.0f} s: {len(metrics)} epochs, best model from epoch {best_epoch}; "
          f"{split_auc(predictions, 'val')}, {split_auc(predictions, 'test')}; {sizes}")
    print(f"written to {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
