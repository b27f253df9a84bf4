"""Dataset sources: class folders, CSV files and MedMNIST-style npz, listed into one table.

Listing is cheap (no image is opened): it finds the items, their labels, splits, groups and masks,
and marks the rows whose problems are visible without reading a file (a path named in the CSV that
does not exist, an unknown label or split). `core.scanning` then reads the files themselves.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.images import IMAGE_EXTENSIONS, is_image_path

SPLIT_ALIASES = {
    "train": "train", "training": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "tst": "test",
}
SPLITS = ("train", "val", "test")

#: Columns of the listing; scanning adds width, height, mode, format, bytes, hash and verified.
LIST_COLUMNS = ["id", "path", "index", "label", "split", "group", "mask_path", "problem"]

PATH_COLUMN_GUESSES = ("path", "filepath", "file_path", "filename", "file", "image", "image_path", "name")
LABEL_COLUMN_GUESSES = ("label", "class", "ground truth", "ground_truth", "target", "diagnosis")


class SourceError(ValueError):
    """A source that cannot be read at all; the message says what to fix."""


@dataclass(frozen=True)
class SourceSpec:
    """Everything needed to list a dataset; stored as JSON in the registry and in run configs."""

    path: str
    kind: str = "auto"  # auto | folder | csv | npz
    path_column: str | None = None
    label_column: str | None = None
    group_column: str | None = None
    split_column: str | None = None
    mask_column: str | None = None
    classes: tuple[str, ...] | None = None  # known classes; other labels become problems
    label_names: tuple[str, ...] | None = None  # npz: names of label indices 0..K-1

    def resolved_kind(self) -> str:
        if self.kind != "auto":
            return self.kind
        p = Path(self.path)
        if p.is_dir():
            return "folder"
        suffix = p.suffix.lower()
        if suffix in (".csv", ".tsv", ".txt"):
            return "csv"
        if suffix == ".npz":
            return "npz"
        if not p.exists():
            raise SourceError(f"No such file or folder: {self.path}")
        raise SourceError(
            f"Cannot tell what kind of source {self.path} is: give a folder of class folders, "
            "a .csv file or a MedMNIST-style .npz file."
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceSpec:
        known = {f for f in cls.__dataclass_fields__}
        clean: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**clean)


def normalise_split(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    return SPLIT_ALIASES.get(text, f"?{value}")


def list_items(spec: SourceSpec) -> pd.DataFrame:
    """List a source into rows of LIST_COLUMNS; raises SourceError when it cannot be read at all."""
    if not Path(spec.path).exists():
        raise SourceError(f"No such file or folder: {spec.path}")
    kind = spec.resolved_kind()
    lister = {"folder": _list_folder, "csv": _list_csv, "npz": _list_npz}.get(kind)
    if lister is None:
        raise SourceError(f"Unknown source kind '{kind}': use folder, csv or npz.")
    table = lister(spec)
    if table.empty:
        raise SourceError(f"{spec.path} holds no images (PNG, JPEG, TIFF or BMP).")
    return _mark_listing_problems(table, spec)


def source_signature(spec: SourceSpec) -> str:
    """A fingerprint that changes when a file comes, goes or is renamed anywhere in the source, cheap
    enough for every page run (a cache key): a folder's modification time changes when an entry of it
    does, so the times of the folders tell, without a stat of every file. A CSV or npz file adds its
    own time and size; a CSV's folder, where its relative paths point, is walked like a folder source."""
    path = Path(spec.path)
    try:
        kind = spec.resolved_kind()
        stat = path.stat()
    except (OSError, SourceError):
        return "unreadable"  # listing says why
    digest = hashlib.blake2b(digest_size=16)
    if kind != "folder":
        digest.update(f"{stat.st_mtime_ns}:{stat.st_size}\n".encode())
    if kind != "npz":
        for line in _folder_times(path if kind == "folder" else path.parent):
            digest.update(line)
    return digest.hexdigest()


def _folder_times(root: Path) -> Iterator[bytes]:
    """A line (path, modification time) for ``root`` and every folder under it; hidden folders are
    skipped as listing skips them, and a folder reached twice through a symlink counts once."""
    seen: set[tuple[int, int]] = set()
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            stat = os.stat(folder)
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            with os.scandir(folder) as entries:
                stack.extend(sorted((e.path for e in entries if not e.name.startswith(".") and e.is_dir()),
                                    reverse=True))
        except OSError:
            yield f"{folder}\0unreadable\n".encode()
            continue
        yield f"{folder}\0{stat.st_mtime_ns}\n".encode()


def _mark_listing_problems(table: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    table = table.reindex(columns=LIST_COLUMNS)
    problem = table["problem"].astype(object)
    bad_split = table["split"].fillna("").str.startswith("?")
    problem = problem.where(~(bad_split & problem.isna()),
                            "unknown split '" + table["split"].str[1:] + "' (use train, val or test)")
    table.loc[bad_split, "split"] = None
    if spec.classes:
        unknown = table["label"].notna() & ~table["label"].isin(spec.classes)
        message = "unknown label '" + table["label"].astype(str) + "' (not one of: " + ", ".join(spec.classes) + ")"
        problem = problem.where(~(unknown & problem.isna()), message)
    table["problem"] = problem
    return table.reset_index(drop=True)


def _walk_images(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files) if not f.startswith(".") and is_image_path(f))
    return found


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_folder(spec: SourceSpec) -> pd.DataFrame:
    root = Path(spec.path).resolve()
    subdirs = _subdirs(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    rows: list[dict[str, Any]] = []
    if split_dirs and len(split_dirs) == len(subdirs):
        for split_dir in split_dirs:
            rows += _class_rows(root, split_dir, SPLIT_ALIASES[split_dir.name.lower()])
    else:
        rows += _class_rows(root, root, None)
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def _class_rows(root: Path, folder: Path, split: str | None) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p)):
        rows.append(_row(root, path, None, split))  # images beside the class folders: unlabelled
    for class_dir in _subdirs(folder):
        rows += [_row(root, path, class_dir.name, split) for path in _walk_images(class_dir)]
    return rows


def _row(root: Path, path: Path, label: str | None, split: str | None, group: str | None = None,
         mask: str | None = None, problem: str | None = None) -> dict[str, Any]:
    return {"id": path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path),
            "path": str(path), "index": -1, "label": label, "split": split, "group": group,
            "mask_path": mask, "problem": problem}


def read_csv_header(path: str | Path) -> list[str]:
    """Column names of a CSV, for the add-dataset form."""
    return list(_read_table(Path(path), nrows=0).columns)


def _read_table(path: Path, nrows: int | None = None) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else None
    try:
        return pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False,
                           nrows=nrows, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceError(f"Cannot read {path} as a CSV table: {exc}") from exc


def _pick_column(columns: list[str], wanted: str | None, guesses: tuple[str, ...], role: str,
                 csv_path: Path, required: bool) -> str | None:
    if wanted:
        if wanted not in columns:
            raise SourceError(
                f"The CSV {csv_path.name} has no {role} column '{wanted}'. Its columns are: {', '.join(columns)}."
            )
        return wanted
    lower = {c.lower().strip(): c for c in columns}
    for guess in guesses:
        if guess in lower:
            return lower[guess]
    if required:
        raise SourceError(
            f"Name the {role} column of {csv_path.name}: none of its columns ({', '.join(columns)}) "
            f"looks like one."
        )
    return None


def _list_csv(spec: SourceSpec) -> pd.DataFrame:
    csv_path = Path(spec.path).resolve()
    table = _read_table(csv_path)
    columns = list(table.columns)
    path_col = _pick_column(columns, spec.path_column, PATH_COLUMN_GUESSES, "path", csv_path, True)
    label_col = _pick_column(columns, spec.label_column, LABEL_COLUMN_GUESSES, "label", csv_path, False)
    group_col = _pick_column(columns, spec.group_column, (), "group", csv_path, False)
    split_col = _pick_column(columns, spec.split_column, (), "split", csv_path, False)
    mask_col = _pick_column(columns, spec.mask_column, (), "mask", csv_path, False)

    if table.empty:
        return pd.DataFrame(columns=LIST_COLUMNS)  # list_items says the source holds no images
    base = csv_path.parent
    rel = table[path_col].str.strip()
    paths = [_with_image_suffix((base / p).resolve()) if p else None for p in rel]
    exists = np.array([p is not None and p.is_file() for p in paths])
    out = pd.DataFrame({
        "id": rel.values,
        "path": [str(p) if p else "" for p in paths],
        "index": -1,
        "label": _blank_to_none(table[label_col]) if label_col else None,
        "split": table[split_col].map(normalise_split) if split_col else None,
        "group": _blank_to_none(table[group_col]) if group_col else None,
        "mask_path": ([str((base / m).resolve()) if m else None for m in table[mask_col].str.strip()]
                      if mask_col else None),
        "problem": None,
    })
    out["problem"] = out["problem"].astype(object)
    out.loc[rel.values == "", "problem"] = "empty path in the CSV"
    missing = ~exists & out["problem"].isna().values
    out.loc[missing, "problem"] = "file not found (named in the CSV)"
    dup = out["id"].duplicated(keep="first") & out["problem"].isna()
    out.loc[dup, "problem"] = "listed twice in the CSV"
    out["id"] = out["id"].where(~out["id"].duplicated(keep="first"), out["id"] + "#" + out.index.astype(str))
    return out


_SUFFIXES_TO_TRY = sorted(IMAGE_EXTENSIONS) + sorted(e.upper() for e in IMAGE_EXTENSIONS)


def _with_image_suffix(path: Path) -> Path:
    """The file a CSV means when it names images without their extension (`name,ground truth` with
    `img_001` for `img_001.png`, as lab spreadsheets often do); the path itself when it exists or
    when no image file by that name does."""
    if is_image_path(path) or path.is_file():  # the suffix test first: no extra stat for ordinary names
        return path
    for suffix in _SUFFIXES_TO_TRY:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    return path


def _blank_to_none(column: pd.Series) -> pd.Series:
    stripped = column.astype(str).str.strip()
    return stripped.where(stripped != "", None).astype(object)


def _list_npz(spec: SourceSpec) -> pd.DataFrame:
    path = Path(spec.path).resolve()
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            frames = []
            for split in SPLITS:
                if f"{split}_images" not in keys:
                    continue
                images = data[f"{split}_images"]
                labels = data[f"{split}_labels"].reshape(len(images), -1)[:, 0] if f"{split}_labels" in keys else None
                if labels is not None and len(labels):
                    _check_label_names(spec.label_names, int(labels.max()))
                frames.append(_npz_rows(path, split, len(images), labels, spec.label_names))
    except SourceError:
        raise  # already a plain message (class names that do not fit the labels)
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot read {path.name} as an npz archive: {exc}") from exc
    if not frames:
        raise SourceError(f"{path.name} has no train_images, val_images or test_images array.")
    return pd.concat(frames, ignore_index=True)


def _check_label_names(label_names: Sequence[str] | None, largest_label: int) -> None:
    """Names, when given, must cover every label index once: a short list would mix names and numbers."""
    if not label_names:
        return
    if any(not name for name in label_names) or len(set(label_names)) != len(label_names):
        raise SourceError("Class names must be non-empty and all different.")
    if len(label_names) <= largest_label:
        raise SourceError(f"{len(label_names)} class names given, but the labels run from 0 to {largest_label}: "
                          f"give {largest_label + 1} names, one per label.")


def _npz_rows(path: Path, split: str, count: int, labels: np.ndarray | None,
              label_names: Sequence[str] | None) -> pd.DataFrame:
    names: list[str | None]
    if labels is None:
        names = [None] * count
    elif label_names:
        names = [label_names[int(v)] for v in labels]
    else:
        names = [str(int(v)) for v in labels]
    return pd.DataFrame({
        "id": [f"{split}/{i}" for i in range(count)], "path": str(path), "index": np.arange(count),
        "label": names, "split": split, "group": None, "mask_path": None, "problem": None,
    })
