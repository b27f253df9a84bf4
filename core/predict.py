"""A finished run's model on new images: a prediction set stored with the run, and a CSV of it.

External validation and new cases go through exactly what the run's own test split went through:
the best checkpoint and the Preprocessor stored in it. Images are decoded in threads and reach the
model in batches; a file that cannot be used (unreadable, truncated, not an image) is listed and
skipped, because one bad file in a folder of thousands must not cost the other predictions.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from core import evaluation, rundir, workspace
from core.datacache import decoded
from core.preprocess import Preprocessor
from core.roles import Identity, require
from core.runmodel import load_run_model, preprocessor_of
from core.scanning import describe_decode_error, scan
from core.sources import SourceSpec

CsvFormat = Literal["lumen", "course"]
CSV_FORMATS: tuple[str, ...] = ("lumen", "course")
#: Columns a prediction set adds to those of predictions.parquet: where each item came from.
SOURCE_COLUMNS = ("path", "index", "source_split", "source")
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PredictionSet:
    """What one prediction pass made: the stored table and the files it had to leave out."""

    name: str
    table: pd.DataFrame  # as stored: item_id, split, label, group, path, index, source_split, source, prob_*
    skipped: pd.DataFrame  # path, reason
    path: Path  # the parquet file in the run


@dataclass(frozen=True)
class Decision:
    """How a probability row becomes one class: a one-vs-rest threshold on (scaled) scores."""

    positive: str
    threshold: float
    temperature: float
    source: str  # "saved", "default" (no saved point: 0.5) or "given"


def default_set_name(spec: SourceSpec) -> str:
    """A folder's name, or "<folder>-<stem>" for a CSV or npz file (labels.csv alone says little)."""
    path = Path(spec.path).resolve()
    raw = path.name if path.is_dir() else f"{path.parent.name}-{path.stem}"
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in raw).lstrip("._-")[:100] or "external"
    return cleaned if cleaned.lower() not in rundir.RUN_SPLITS else f"{cleaned}-external"


def predict_source(run_dir: Path, spec: SourceSpec, name: str | None = None, progress: ProgressFn | None = None,
                   batch_size: int = 64, *, who: Identity | str) -> PredictionSet:
    """The run's best model on every usable image of a source (labelled or not), stored as the
    prediction set `name` (default: from the source's name) in the run's predictions folder."""
    require(who, "launch runs")
    run_dir = Path(run_dir)
    name = rundir.check_set_name(name or default_set_name(spec))
    if batch_size < 1:
        raise ValueError(f"The batch size must be at least 1, not {batch_size}.")
    if not rundir.predictions_path(run_dir).exists():
        raise FileNotFoundError(f"{run_dir.name} has not finished: predict with a finished run's best model.")
    model, ckpt = load_run_model(run_dir)
    classes = list(ckpt["classes"])
    manifest = scan(spec)
    listed = manifest[manifest["problem"].isna()].reset_index(drop=True)
    probs, errors = _probabilities(model, preprocessor_of(ckpt), listed, len(classes), progress, batch_size)
    ok = np.array([e is None for e in errors], dtype=bool)
    bad = manifest[manifest["problem"].notna()]
    skipped = pd.DataFrame({
        "path": [*(p or i for p, i in zip(bad["path"], bad["id"], strict=True)), *listed.loc[~ok, "path"]],
        "reason": [*bad["problem"], *(e for e in errors if e is not None)],
    })
    if not ok.any():
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped.head(3).itertuples(index=False))
        raise ValueError(f"No image of {spec.path} could be used ({len(skipped)} skipped: {reasons}).")
    good = listed[ok]
    items = pd.DataFrame({"item_id": good["id"], "split": name, "label": good["label"], "group": good["group"],
                          "path": good["path"], "index": good["index"].astype(np.int64),
                          "source_split": good["split"], "source": str(Path(spec.path).resolve())})
    path = rundir.prediction_set_path(run_dir, name)
    table = rundir.write_predictions(path, items, classes, probs[ok])
    return PredictionSet(name, table, skipped.reset_index(drop=True), path)


@torch.no_grad()
def _probabilities(model: torch.nn.Module, preprocessor: Preprocessor, rows: pd.DataFrame, n_classes: int,
                   progress: ProgressFn | None, batch_size: int) -> tuple[np.ndarray, list[str | None]]:
    """Softmax probabilities per row (zeros where the file failed) and, per row, why it failed.

    Batches stack as (B, S, S, C), so the input is channels-last already; the model is put in that
    layout too, as training does (faster convolutions on the CPU as well, and no layout changes)."""
    model = model.to(memory_format=torch.channels_last)
    probs = np.zeros((len(rows), n_classes), dtype=np.float32)
    errors: list[str | None] = []
    for start, batch in _batches(decoded(rows, preprocessor), batch_size):
        good = {i: arr for i, arr in enumerate(batch) if not isinstance(arr, Exception)}
        errors += [describe_decode_error(arr) if isinstance(arr, Exception) else None for arr in batch]
        if good:
            x = torch.from_numpy(np.stack(list(good.values()))).permute(0, 3, 1, 2)
            probs[start + np.array(list(good))] = torch.softmax(model(preprocessor.tensor(x)), dim=1).numpy()
        if progress:
            progress(start + len(batch), len(rows))
    return probs, errors


def _batches(items: Iterator[np.ndarray | Exception], size: int) -> Iterator[tuple[int, list[np.ndarray | Exception]]]:
    """(offset of the batch, its items) for consecutive batches of `size`."""
    batch: list[np.ndarray | Exception] = []
    start = 0
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield start, batch
            start, batch = start + size, []
    if batch:
        yield start, batch


def decision(run_dir: Path, threshold: float | None = None) -> Decision:
    """The run's saved operating point with its temperature; a given threshold applies to the raw
    scores instead (as `core evaluate --threshold` does). The positive class without a saved point
    is the rarer class of the run's own labels, whatever the new images hold."""
    positive, saved_threshold, temperature = evaluation.operating_point(run_dir, rundir.read_predictions(run_dir))
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"A threshold is a probability between 0 and 1, not {threshold}.")
        return Decision(positive, float(threshold), 1.0, "given")
    source = "saved" if evaluation.load_operating_point(run_dir) else "default"
    return Decision(positive, saved_threshold, temperature, source)


def csv_rows(table: pd.DataFrame, rule: Decision, fmt: CsvFormat = "lumen") -> pd.DataFrame:
    """The CSV of a prediction set. lumen: file (the item's path within its source), predicted (the
    most probable class), prob_<class> per class (raw scores) and decision (at the operating point).
    course: exactly Image (the file name) and Label (the decision's class index, see `class_codes`)."""
    classes = rundir.classes_of(table)
    probs = table[rundir.prob_columns(classes)].to_numpy(dtype=np.float64)
    decided = evaluation.one_vs_rest(probs, classes.index(rule.positive), rule.threshold, rule.temperature)
    if fmt == "course":
        where = zip(table["path"], table["index"], table["item_id"], strict=True)
        names = [Path(path).name if index < 0 else item for path, index, item in where]  # npz rows have no file
        return pd.DataFrame({"Image": names, "Label": np.asarray(class_codes(classes))[decided]})
    out = pd.DataFrame({"file": table["item_id"].to_numpy(), "predicted": np.asarray(classes)[probs.argmax(axis=1)]})
    for cls in classes:
        out[rundir.prob_column(cls)] = table[rundir.prob_column(cls)].to_numpy()
    out["decision"] = np.asarray(classes)[decided]
    return out


def class_codes(classes: list[str]) -> list[int]:
    """The number each class stands for in a course CSV: the class name itself when every name is a
    whole number (a run trained on 0/1 labels), else its position in the run's class order."""
    if all(re.fullmatch(r"-?[0-9]+", c.strip()) for c in classes):
        return [int(c) for c in classes]
    return list(range(len(classes)))


def write_csv(table: pd.DataFrame, rule: Decision, out: Path, fmt: CsvFormat = "lumen") -> int:
    """Write the CSV of a prediction set (see `csv_rows`), atomically; returns its row count."""
    if fmt not in CSV_FORMATS:
        raise ValueError(f"Unknown CSV format '{fmt}': use one of {', '.join(CSV_FORMATS)}.")
    rows = csv_rows(table, rule, fmt)
    workspace.atomic_write_bytes(Path(out), rows.to_csv(index=False).encode())
    return len(rows)
