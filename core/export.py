"""Writing a preprocessed copy of a dataset: square PNGs of one size plus a labels.csv.

The copy is itself a CSV source (path,label,split,group), so it can be registered, shared or
trained on by other tools without Lumen's preprocessing. A marker file claims the folder: Lumen
overwrites its own exports but never writes into a folder someone else filled.
"""
from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from hashlib import blake2b
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from core import dataroots, registry, workspace
from core.images import load_item
from core.preprocess import Preprocessor
from core.roles import Identity, require
from core.scanning import usable
from core.sources import SourceSpec

MARKER = ".lumen-export.json"
CSV_NAME = "labels.csv"
IMAGES_DIR = "images"
CSV_COLUMNS = ["path", "label", "split", "group"]
ProgressFn = Callable[[int, int], None]

_WORKERS = min(8, (os.cpu_count() or 1) * 2)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ExportError(ValueError):
    """An export that cannot start; the message says what to change."""


def export_source(csv_path: str | Path) -> SourceSpec:
    """How an export reads back as a dataset (the page registers it with this spec)."""
    return SourceSpec(path=str(csv_path), kind="csv", path_column="path", label_column="label",
                      group_column="group", split_column="split")


def safe_name(text: str, limit: int = 120) -> str:
    """A file-system-safe name (letters, digits, dot, dash, underscore) that still reads like the original."""
    return _UNSAFE.sub("_", str(text)).strip("._")[:limit] or "_"


def _claim_folder(out_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse a non-empty folder Lumen did not write, or an export registered as a dataset (runs may
    have been trained on its images); otherwise mark it as a Lumen export."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file; choose a folder for the export.")
    reason = dataroots.problem(out_dir)
    if reason:
        raise ExportError(f"Cannot export there: {reason}.")
    owner = next((name for name, spec in registry.list_datasets().items()
                  if Path(spec.path).resolve() == out_dir / CSV_NAME), None)
    if owner:
        raise ExportError(f"{out_dir} holds the dataset '{owner}'; choose another output folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise ExportError(
            f"{out_dir} is not empty and holds no Lumen export; choose an empty or new folder "
            "so that no files of yours are overwritten."
        )
    workspace.atomic_write_json(out_dir / MARKER, settings)


def _file_names(rows: pd.DataFrame) -> pd.Series:
    """images/<label>/<item id>.png, unique even on a case-insensitive disk."""
    folders = rows["label"].map(safe_name)
    stems = rows["id"].map(lambda item_id: safe_name(os.path.splitext(item_id)[0]))
    clash = pd.DataFrame({"f": folders.str.lower(), "s": stems.str.lower()}).duplicated(keep=False)
    hashes = rows["id"].map(lambda item_id: blake2b(item_id.encode(), digest_size=4).hexdigest())
    stems = stems.where(~clash, stems + "-" + hashes)
    return IMAGES_DIR + "/" + folders + "/" + stems + ".png"


def _write_one(row: Any, out_dir: Path, preprocessor: Preprocessor) -> bool:
    """Load, prepare and save one item (a row of ``itertuples()``: path, index, split, out_path);
    False when its pixels cannot be decoded."""
    try:
        arr = load_item(row.path, row.index, row.split)
    except Exception:  # truncated or damaged files that a header-only scan let through
        return False
    buffer = io.BytesIO()
    Image.fromarray(preprocessor.image(arr)).save(buffer, format="PNG", compress_level=1)
    workspace.atomic_write_bytes(out_dir / row.out_path, buffer.getvalue())
    return True


def _write_all(rows: pd.DataFrame, out_dir: Path, preprocessor: Preprocessor,
               progress: ProgressFn | None) -> list[bool]:
    """Write every row in a thread pool (decoding, resizing and PNG encoding release the GIL)."""
    ok = [False] * len(rows)
    total, step = len(rows), max(1, len(rows) // 200)
    with ThreadPoolExecutor(_WORKERS) as pool:
        futures = {pool.submit(_write_one, row, out_dir, preprocessor): i
                   for i, row in enumerate(rows.itertuples(index=False))}
        for done, future in enumerate(as_completed(futures), start=1):
            ok[futures[future]] = future.result()
            if progress and (done % step == 0 or done == total):
                progress(done, total)
    return ok


def _remove_stale_images(out_dir: Path, keep: set[str]) -> None:
    """Drop PNGs an earlier export into this folder left behind, so the folder matches its CSV."""
    for path in (out_dir / IMAGES_DIR).rglob("*.png"):
        if path.relative_to(out_dir).as_posix() not in keep:
            path.unlink(missing_ok=True)


def _csv_bytes(rows: pd.DataFrame) -> bytes:
    table = rows.assign(path=rows["out_path"])[CSV_COLUMNS]
    return table.to_csv(index=False).encode()


def export_preprocessed(manifest: pd.DataFrame, out_dir: str | Path, size: int, pad_mode: str = "zero",
                        fit: str = "pad", progress: ProgressFn | None = None, *,
                        who: Identity | str) -> dict[str, Any]:
    """Write every usable item as a size x size PNG (grey stays grey) and a labels.csv beside them.

    The CSV is written last and atomically, so a reader never finds a CSV naming missing images;
    items whose pixels turn out undecodable are counted with the problems and left out of it.
    Returns counts: written, skipped_problems, skipped_unlabelled, seconds and the CSV's path.
    """
    require(who, "export data")
    started = time.perf_counter()
    preprocessor = Preprocessor(size, pad_mode, fit)  # refuses bad settings before any file is touched
    out_dir = Path(out_dir).expanduser().resolve()
    rows = manifest[usable(manifest)].reset_index(drop=True)
    if rows.empty:
        raise ExportError("Nothing to export: no image has a label and no problem.")
    _claim_folder(out_dir, {"size": int(size), "pad_mode": pad_mode, "fit": fit, "items": len(rows)})
    rows = rows.assign(out_path=_file_names(rows))
    ok = _write_all(rows, out_dir, preprocessor, progress)
    written = rows.loc[ok]
    csv_path = out_dir / CSV_NAME
    workspace.atomic_write_bytes(csv_path, _csv_bytes(written))
    _remove_stale_images(out_dir, set(written["out_path"]))
    return {
        "written": len(written),
        "skipped_problems": int(manifest["problem"].notna().sum()) + len(rows) - len(written),
        "skipped_unlabelled": int((manifest["problem"].isna() & manifest["label"].isna()).sum()),
        "seconds": round(time.perf_counter() - started, 3),
        "csv": str(csv_path),
    }
