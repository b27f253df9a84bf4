"""The run directory: the contract between a training job and everything that reads it.

This module is the only place that knows a run's files::

    config.json            the full run config
    status.json            state (queued|running|finished|failed|cancelled), pid, times, epoch, message,
                           launched_by (who launched it, checked again by its process)
    splits.csv             the items the run trained on, in the image cache's order, and their splits
    metrics.jsonl          one JSON object per finished epoch
    checkpoints/last.pt    model, optimiser, scheduler, epoch, config, classes, preprocessor
    checkpoints/best.pt    the same file as last.pt of the best epoch (linked, not saved twice)
    predictions.parquet    item_id, split, label, group, prob_<class> per class
    predictions/<name>.parquet   prediction sets on other sources (image and source paths absolute, or
                           relative to the repository: the embedded demo's set)
    predictions/<name>.job.json, predictions/<name>.log   the app's job that makes one: state, progress, output
    predictions/<name>.features.npy   the set's features (when the run stores its own), rows as in the set
    operating_point.json   the saved decision (positive class, threshold, temperature)
    features.npz, embeddings/    the best model's features and their 2-D layouts
    job.sbatch, log.txt    the SLURM job script, the job's own output
    baseline/              a pixel logistic regression on the same items (core.baseline): its
                           predictions.parquet, as a run's, and baseline.json (C grid, chosen C, figures)

Every write goes through `workspace.atomic_write` (a unique temporary file, fsync, rename), so a
reader never sees half a file and a killed job never leaves a corrupt one.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core import workspace
from core.roles import Identity, from_record, to_record

if TYPE_CHECKING:
    import numpy as np

STATES = ("queued", "running", "finished", "failed", "cancelled")
ACTIVE = ("queued", "running")
PROB_PREFIX = "prob_"
CHECKPOINTS = ("best", "last")
#: splits.csv: `path` is relative to the dataset's root folder, so a committed run (the demo) works
#: wherever the repository is cloned; `source_split` and `index` locate an npz row; `hash` keys the
#: image cache.
ITEM_COLUMNS = ("item_id", "split", "label", "group", "path", "index", "source_split", "hash")
#: A prediction set's name is its file name and its rows' split, so it must be a plain file name
#: and must not pass for one of the run's own splits.
_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RUN_SPLITS = ("train", "val", "test")
#: A prediction set carries its source's other columns (a CSV's centre, scanner, slide) under this prefix.
SOURCE_COLUMN_PREFIX = "source:"


def runs_root() -> Path:
    root = workspace.home() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def demo_runs() -> list[Path]:
    """Runs shipped with the repository (assets/demo/runs), so analysis pages work at first start."""
    root = workspace.DEMO_DIR / "runs"
    return sorted(d for d in root.iterdir() if predictions_path(d).exists()) if root.exists() else []


# ---------------------------------------------------------------- file names


def config_path(run_dir: Path) -> Path:
    return Path(run_dir) / "config.json"


def status_path(run_dir: Path) -> Path:
    return Path(run_dir) / "status.json"


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / "metrics.jsonl"


def splits_path(run_dir: Path) -> Path:
    return Path(run_dir) / "splits.csv"


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    if which not in CHECKPOINTS:
        raise ValueError(f"Unknown checkpoint '{which}': use one of {', '.join(CHECKPOINTS)}.")
    return Path(run_dir) / "checkpoints" / f"{which}.pt"


def predictions_path(run_dir: Path) -> Path:
    return Path(run_dir) / "predictions.parquet"


def prediction_sets_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "predictions"


def prediction_set_path(run_dir: Path, name: str) -> Path:
    return prediction_sets_dir(run_dir) / f"{check_set_name(name)}.parquet"


def prediction_job_path(run_dir: Path, name: str) -> Path:
    return prediction_sets_dir(run_dir) / f"{check_set_name(name)}.job.json"


def prediction_log_path(run_dir: Path, name: str) -> Path:
    return prediction_sets_dir(run_dir) / f"{check_set_name(name)}.log"


def prediction_features_path(run_dir: Path, name: str) -> Path:
    return prediction_sets_dir(run_dir) / f"{check_set_name(name)}.features.npy"


def list_prediction_jobs(run_dir: Path) -> list[str]:
    return sorted(p.name.removesuffix(".job.json") for p in prediction_sets_dir(run_dir).glob("*.job.json"))


def operating_point_path(run_dir: Path) -> Path:
    return Path(run_dir) / "operating_point.json"


def features_path(run_dir: Path) -> Path:
    return Path(run_dir) / "features.npz"


def layout_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "embeddings" / f"{name}.npy"


def sbatch_path(run_dir: Path) -> Path:
    return Path(run_dir) / "job.sbatch"


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / "log.txt"


def baseline_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "baseline"


def baseline_record_path(run_dir: Path) -> Path:
    return baseline_dir(run_dir) / "baseline.json"


LOG_FORMAT = "[lumen] %(message)s"  # of log.txt's lines, and of `python -m core train`'s output


def shipped_files(run_dir: Path) -> list[Path]:
    """What a finished run consists of, for copying one (the embedded demo run)."""
    return [config_path(run_dir), status_path(run_dir), splits_path(run_dir), metrics_path(run_dir),
            *(checkpoint_path(run_dir, which) for which in CHECKPOINTS), predictions_path(run_dir),
            log_path(run_dir)]


# ---------------------------------------------------------------- probability columns


def prob_column(cls: str) -> str:
    return f"{PROB_PREFIX}{cls}"


def prob_columns(classes: list[str]) -> list[str]:
    return [prob_column(c) for c in classes]


def classes_of(predictions: pd.DataFrame) -> list[str]:
    """The run's classes, in the model's output order, from a predictions table's columns."""
    return [c[len(PROB_PREFIX):] for c in predictions.columns if c.startswith(PROB_PREFIX)]


# ---------------------------------------------------------------- reading and writing


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def read_config(run_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = read_json(config_path(run_dir), {})
    return config


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    workspace.atomic_write_json(config_path(run_dir), config)


def read_status(run_dir: Path) -> dict[str, Any]:
    status: dict[str, Any] = read_json(status_path(run_dir), {"state": "queued"})
    return status


def write_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge fields into status.json (and stamp the time), atomically."""
    status = {**read_status(run_dir), **fields, "updated": time.time()}
    workspace.atomic_write_json(status_path(run_dir), status)
    return status


def write_launcher(run_dir: Path, who: Identity | str) -> None:
    """Keep who launches the run, before its process starts and reads it."""
    write_status(run_dir, launched_by=to_record(who))


def read_launcher(run_dir: Path) -> Identity | None:
    """Who launched the run from Lumen; None for a run nobody launched (one started at the shell)."""
    record = read_status(run_dir).get("launched_by")
    return None if record is None else from_record(record)


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """One row per finished epoch; an unfinished last line (a killed writer) is ignored."""
    rows = []
    try:
        lines = metrics_path(run_dir).read_text().splitlines()
    except FileNotFoundError:
        return pd.DataFrame()
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return pd.DataFrame(rows)


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl from the full history (cheap: one line per epoch), atomically."""
    text = "".join(json.dumps(row) + "\n" for row in history)
    workspace.atomic_write_bytes(metrics_path(run_dir), text.encode())


def best_epoch(run_dir: Path) -> int:
    """The epoch best.pt holds (0 before any): changes exactly when the model does, and survives a
    git clone (file times do not), so stored features and layouts stay valid for the demo run."""
    metrics = read_metrics(run_dir)
    return int(metrics.loc[metrics["best"], "epoch"].iloc[-1]) if not metrics.empty else 0


def log_tail(run_dir: Path, lines: int = 30) -> str:
    return file_tail(log_path(run_dir), lines)


def file_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a process's output file ("" before it exists)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------- the run's items


def dataset_root(source_path: str | Path) -> Path:
    """The folder item paths are stored relative to: the source itself, or the folder of a CSV or npz."""
    path = Path(source_path)
    return path if path.is_dir() else path.parent


def write_items(run_dir: Path, items: pd.DataFrame, root: Path) -> None:
    """splits.csv from the run's items (manifest columns id, split, label, group, path, index,
    source_split, hash), in the order of the image cache."""
    table = items.rename(columns={"id": "item_id"}).reindex(columns=list(ITEM_COLUMNS))
    table["path"] = [_relative(p, root) for p in table["path"]]
    workspace.atomic_write_bytes(splits_path(run_dir), table.to_csv(index=False).encode())


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:  # a CSV may name files outside its folder
        return str(path)


def read_items(run_dir: Path, root: Path | None = None) -> pd.DataFrame | None:
    """The run's items (paths made absolute against `root`, when given), or None before the run has
    started. Runs made before splits.csv held paths give item_id and split only (see `has_paths`)."""
    path = splits_path(run_dir)
    if path.exists():
        table = pd.read_csv(path, dtype={"item_id": str, "split": str, "label": str, "group": str,
                                         "path": str, "source_split": str, "hash": str},
                            keep_default_na=False, na_values={"group": [""], "source_split": [""]})
        if has_paths(table):
            table["index"] = table["index"].astype(int)
            if root is not None:
                table["path"] = [p if Path(p).is_absolute() else str(root / p) for p in table["path"]]
        return table
    if predictions_path(run_dir).exists():  # the oldest runs kept their split only there
        return pd.read_parquet(predictions_path(run_dir), columns=["item_id", "split"])
    return None


def has_paths(items: pd.DataFrame) -> bool:
    return "path" in items and "hash" in items and not items["path"].isna().any()


def read_splits(run_dir: Path) -> pd.Series | None:
    """Item id -> split as the run first drew it, or None before the run has started: a resume or a
    later look must never draw them again, or items added to the dataset since would move test
    images into training."""
    items = read_items(run_dir)
    return None if items is None else items.drop_duplicates("item_id").set_index("item_id")["split"]


def write_predictions(path: Path, items: pd.DataFrame, classes: list[str], probs: np.ndarray) -> pd.DataFrame:
    """item_id, split, label, group (and any other item columns given) and prob_<class> per class."""
    table = items.reset_index(drop=True).copy()
    for i, cls in enumerate(classes):
        table[prob_column(cls)] = probs[:, i]
    workspace.atomic_write(path, lambda handle: table.to_parquet(handle, index=False))
    return table


def read_predictions(run_dir: Path) -> pd.DataFrame:
    path = predictions_path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{Path(run_dir).name} has no predictions yet: the run has not finished.")
    return pd.read_parquet(path)


# ---------------------------------------------------------------- prediction sets


def check_set_name(name: str) -> str:
    """The name itself, or a ValueError that says what a prediction set may be called."""
    if not _SET_NAME.fullmatch(name):
        raise ValueError(f"A prediction set needs a plain name (letters, digits, '.', '_', '-'; at most 100), "
                         f"not '{name}'.")
    if name.lower() in RUN_SPLITS:
        raise ValueError(f"'{name}' is one of the run's own splits: give the prediction set another name.")
    return name


def list_prediction_sets(run_dir: Path) -> list[str]:
    return sorted(p.stem for p in prediction_sets_dir(run_dir).glob("*.parquet"))


def read_prediction_set(run_dir: Path, name: str) -> pd.DataFrame:
    """A stored prediction set: the columns of predictions.parquet plus where each item came from
    (paths made absolute, so a committed set works wherever the repository is cloned)."""
    path = prediction_set_path(run_dir, name)
    if not path.exists():
        have = list_prediction_sets(run_dir)
        raise FileNotFoundError(f"{Path(run_dir).name} has no prediction set '{name}'; "
                                + (f"it has {', '.join(have)}." if have else "make one with `python -m core predict`."))
    table = pd.read_parquet(path)
    for column in ("path", "source"):
        if column in table:
            table[column] = [str(workspace.PROJECT_ROOT / p) if isinstance(p, str) and p and not Path(p).is_absolute()
                             else p for p in table[column]]
    return table


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(run_dir: Path, state: dict[str, Any], best: bool) -> None:
    """Serialise once into last.pt; when this epoch is the best, best.pt becomes the same file
    (published first, so a kill in between never leaves a last.pt that claims a best.pt not written)."""
    import torch

    workspace.atomic_write(checkpoint_path(run_dir, "last"), lambda handle: torch.save(state, handle),
                           link_as=checkpoint_path(run_dir, "best") if best else None)


def load_checkpoint(run_dir: Path, which: str = "best") -> dict[str, Any]:
    import torch

    state: dict[str, Any] = torch.load(checkpoint_path(run_dir, which), map_location="cpu", weights_only=True)
    return state


def clear_stale_temps(run_dir: Path) -> list[Path]:
    """Temporary files a killed job left behind (a half-written checkpoint); cleared on resume."""
    return workspace.clear_stale_temps(Path(run_dir))
