"""The run directory: the contract between a training job and every page that reads it.

    config.json, status.json, splits.csv, metrics.jsonl, checkpoints/{last,best}.pt,
    predictions.parquet, log.txt

Every write is atomic (temporary file, then rename) so a reader never sees half a file and a
killed job never leaves a corrupt one.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from core import workspace

STATES = ("queued", "running", "finished", "failed", "cancelled")
ACTIVE = ("queued", "running")


def runs_root() -> Path:
    root = workspace.home() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def demo_runs() -> list[Path]:
    """Runs shipped with the repository (assets/demo/runs), so analysis pages work at first start."""
    root = workspace.DEMO_DIR / "runs"
    return sorted(d for d in root.iterdir() if (d / "predictions.parquet").exists()) if root.exists() else []


def config_path(run_dir: Path) -> Path:
    return Path(run_dir) / "config.json"


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    return Path(run_dir) / "checkpoints" / f"{which}.pt"


def predictions_path(run_dir: Path) -> Path:
    return Path(run_dir) / "predictions.parquet"


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / "log.txt"


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def read_config(run_dir: Path) -> dict:
    return read_json(config_path(run_dir), {})


def read_status(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / "status.json", {"state": "queued"})


def write_status(run_dir: Path, **fields) -> dict:
    """Merge fields into status.json (and stamp the time), atomically."""
    status = {**read_status(run_dir), **fields, "updated": time.time()}
    workspace.atomic_write_json(Path(run_dir) / "status.json", status)
    return status


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """One row per finished epoch; an unfinished last line (a killed writer) is ignored."""
    rows = []
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return pd.DataFrame()
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return pd.DataFrame(rows)


def splits_path(run_dir: Path) -> Path:
    return Path(run_dir) / "splits.csv"


def read_splits(run_dir: Path) -> pd.Series | None:
    """Item id -> split as the run first drew it (splits.csv; for older runs, their predictions),
    or None before the run has started: a resume or a later look must never draw them again, or
    items added to the dataset since would move test images into training."""
    for path, reader in ((splits_path(run_dir), pd.read_csv),
                         (predictions_path(run_dir), pd.read_parquet)):
        if path.exists():
            table = reader(path)
            return table.drop_duplicates("item_id").set_index("item_id")["split"]
    return None


def write_splits(run_dir: Path, items: pd.DataFrame) -> None:
    workspace.atomic_write_bytes(splits_path(run_dir),
                                 items.rename(columns={"id": "item_id"})[["item_id", "split"]].to_csv(index=False).encode())


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    """Rewrite metrics.jsonl from the full history (cheap: one line per epoch), atomically."""
    text = "".join(json.dumps(row) + "\n" for row in history)
    workspace.atomic_write_bytes(Path(run_dir) / "metrics.jsonl", text.encode())


def log_tail(run_dir: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log_path(run_dir).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
