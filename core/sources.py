"""Dataset sources: class folders, CSV files and MedMNIST-style npz, listed into one table.

Listing is cheap (no image is opened): it finds the items, their labels, splits, groups and masks,
and marks the rows whose problems are visible without reading a file (a path named in the CSV that
does not exist, an unknown label or split). `core.scanning` then reads the files themselves.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import dataroots
from core.classnames import ClassNames, name_labels, parse_class_names
from core.groups import groups_from_names
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
    label_column: str | None = None  # None: guessed from the column names; "": none, every row unlabelled
    group_column: str | None = None
    split_column: str | None = None
    mask_column: str | None = None
    classes: tuple[str, ...] | None = None  # known classes; other labels become problems
    class_names: ClassNames | None = None  # (label as the data writes it, name): 0 -> nonGS
    image_root: str | None = None  # CSV: the folder its relative paths start from (relative: to the CSV's folder)
    group_pattern: str | None = None  # folders and CSVs: a regular expression reading the group from file names

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
        """Plain JSON: tuples as lists, class names as {label: name}."""
        data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        data["class_names"] = dict(self.class_names) if self.class_names else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceSpec:
        """A spec from its JSON; unknown keys are ignored and entries written before a field existed get
        its default (`label_names`, the npz names of labels 0..K-1, become class names)."""
        known = set(cls.__dataclass_fields__)
        clean: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        names = clean.get("class_names")
        if isinstance(names, dict):
            clean["class_names"] = tuple((str(k), v) for k, v in names.items())
        elif names:
            clean["class_names"] = tuple((str(k), v) for k, v in names)
        elif data.get("label_names"):
            clean["class_names"] = tuple((str(i), name) for i, name in enumerate(data["label_names"]))
        return cls(**clean)

    def image_folder(self) -> Path:
        """Where a CSV's relative paths start: the image root, else the CSV's own folder."""
        base = Path(self.path).resolve().parent
        return (base / self.image_root).resolve() if self.image_root else base


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
    places: list[str | Path] = [spec.path, *([spec.image_folder()] if spec.image_root else [])]
    for where in places:
        try:
            dataroots.check(where)
        except dataroots.OutsideDataRoots as exc:
            raise SourceError(str(exc)) from exc
    kind = spec.resolved_kind()
    lister = {"folder": _list_folder, "csv": _list_csv, "npz": _list_npz}.get(kind)
    if lister is None:
        raise SourceError(f"Unknown source kind '{kind}': use folder, csv or npz.")
    table = lister(spec)
    if table.empty:
        raise SourceError(f"{spec.path} holds no images (PNG, JPEG, TIFF or BMP).")
    return _mark_listing_problems(_named_and_grouped(table, spec, kind), spec)


def _named_and_grouped(table: pd.DataFrame, spec: SourceSpec, kind: str) -> pd.DataFrame:
    """The spec's class names and group pattern applied to a listing."""
    try:
        if spec.class_names:
            table["label"] = name_labels(table["label"], spec.class_names)
        if spec.group_pattern:
            if kind == "npz":
                raise ValueError("An npz file has no file names to read groups from: leave the group pattern out.")
            if spec.group_column:
                raise ValueError("Give a group column or a group pattern, not both.")
            table["group"] = groups_from_names(table["id"], spec.group_pattern)
    except ValueError as exc:
        raise SourceError(str(exc)) from exc
    return table


def with_class_names(spec: SourceSpec, text: str) -> SourceSpec:
    """The spec with the class names typed as `0=nonGS, 1=GS` or, in label order, `nonGS, GS`
    (the order is that of the source's own labels, so the source is listed to learn them);
    blank text removes them."""
    if not text.strip():
        return replace(spec, class_names=None)
    labels = list_items(replace(spec, class_names=None))["label"].dropna().astype(str)
    try:
        return replace(spec, class_names=parse_class_names(text, labels))
    except ValueError as exc:
        raise SourceError(str(exc)) from exc


def source_signature(spec: SourceSpec) -> str:
    """A fingerprint that changes when a file comes, goes or is renamed anywhere in the source, cheap
    enough for every page run (a cache key): a folder's modification time changes when an entry of it
    does, so the times of the folders tell, without a stat of every file. A CSV or npz file adds its
    own time and size; a CSV's image folder, where its relative paths point, is walked like a folder source."""
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
        for line in _folder_times(path if kind == "folder" else spec.image_folder()):
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
    outside = pd.Series(dataroots.problems(table["path"].fillna("").astype(str)), index=table.index, dtype=object)
    problem = problem.where(~(outside.notna() & problem.isna()), "not read: " + outside.astype(str))
    if spec.classes:
        unknown = table["label"].notna() & ~table["label"].isin(spec.classes)
        message = "unknown label '" + table["label"].astype(str) + "' (not one of: " + ", ".join(spec.classes) + ")"
        problem = problem.where(~(unknown & problem.isna()), message)
    table["problem"] = problem
    return table.reset_index(drop=True)


def _walk_images(folder: Path) -> list[str]:
    """Image files under ``folder``, as path strings in sorted order (strings, not Path objects:
    a listing of 100,000 files spends its time building them otherwise)."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith(".") and is_image_path(f))
    return found


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_folder(spec: SourceSpec) -> pd.DataFrame:
    root = Path(spec.path).resolve()
    subdirs = _subdirs(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    if split_dirs and len(split_dirs) == len(subdirs):
        parts = [_class_rows(root, split_dir, SPLIT_ALIASES[split_dir.name.lower()]) for split_dir in split_dirs]
    else:
        parts = [_class_rows(root, root, None)]
    paths = [path for part in parts for path in part[0]]
    prefix = len(os.path.join(root, ""))  # every listed path lies under the root: os.walk does not follow links
    return pd.DataFrame({"id": [path[prefix:].replace(os.sep, "/") for path in paths], "path": paths, "index": -1,
                         "label": [label for part in parts for label in part[1]],
                         "split": [split for part in parts for split in part[2]],
                         "group": None, "mask_path": None, "problem": None}, columns=LIST_COLUMNS)


def _class_rows(root: Path, folder: Path, split: str | None) -> tuple[list[str], list[str | None], list[str | None]]:
    """Paths, labels and splits of ``folder``: images beside the class folders are unlabelled."""
    paths = sorted(str(p) for p in folder.iterdir() if p.is_file() and is_image_path(p))
    labels: list[str | None] = [None] * len(paths)
    for class_dir in _subdirs(folder):
        found = _walk_images(class_dir)
        paths += found
        labels += [class_dir.name] * len(found)
    return paths, labels, [split] * len(paths)


def read_csv_header(path: str | Path) -> list[str]:
    """Column names of a CSV, for the add-dataset form."""
    return list(_read_table(Path(path), nrows=0).columns)


def _read_table(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """The CSV as text; utf-8-sig, because Excel's "CSV UTF-8" starts with a byte-order mark that
    would otherwise stick to the first column's name."""
    sep = "\t" if path.suffix.lower() == ".tsv" else None
    try:
        return pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False,
                           nrows=nrows, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceError(f"Cannot read {path} as a CSV table: {exc}") from exc


def _pick_column(columns: list[str], wanted: str | None, guesses: tuple[str, ...], role: str,
                 csv_path: Path, required: bool) -> str | None:
    if wanted == "":
        return None  # chosen as none: no guess
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
    base = spec.image_folder()
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
    out["id"] = _unique_ids(out["id"])
    return out


def _unique_ids(ids: pd.Series) -> pd.Series:
    """A CSV row's id is its path as written; a second row naming the same file gets `#<row>`."""
    return ids.where(~ids.duplicated(keep="first"), ids + "#" + ids.index.astype(str))


def csv_columns(spec: SourceSpec) -> pd.DataFrame:
    """A CSV source's columns other than its path, one row per item id as `list_items` gives it, so
    what a lab keeps beside each image (centre, scanner, slide) can follow the image; empty for
    folders and npz files, which have no such columns."""
    if spec.resolved_kind() != "csv":
        return pd.DataFrame(index=pd.Index([], name="id"))
    table = _read_table(Path(spec.path).resolve())
    path_col = _pick_column(list(table.columns), spec.path_column, PATH_COLUMN_GUESSES, "path",
                            Path(spec.path), True)
    ids = _unique_ids(table[path_col].str.strip())
    return table.drop(columns=[path_col]).set_index(pd.Index(ids, name="id"))


@dataclass(frozen=True)
class ImageRootHint:
    """Where the files a CSV names are, when most are not where its paths point."""

    folder: str  # relative to the CSV's folder, as SourceSpec.image_root takes it
    checked: int  # names looked up (the first _HINT_SAMPLE of the CSV)
    found_now: int  # of those, found under the current image folder
    found_there: int  # of those, found under `folder`


_HINT_SAMPLE = 200
_HINT_MAX_FOLDERS = 200


def suggest_image_root(spec: SourceSpec) -> ImageRootHint | None:
    """The one subfolder of the CSV's folder (two levels down at most) that holds most of the files the
    CSV names, when its current image folder holds fewer than half: a `name,ground truth` sheet
    lying beside the folder of its images would otherwise list as every file missing."""
    csv_path = Path(spec.path).resolve()
    table = _read_table(csv_path)
    column = _pick_column(list(table.columns), spec.path_column, PATH_COLUMN_GUESSES, "path", csv_path, True)
    names = [n for n in table[column].str.strip() if n and not Path(n).is_absolute()][:_HINT_SAMPLE]

    def found(folder: Path) -> int:
        return sum(_with_image_suffix(folder / n).is_file() for n in names)

    found_now = found(spec.image_folder())
    if not names or 2 * found_now >= len(names):
        return None
    best, best_count = None, found_now
    for folder in _candidate_folders(csv_path.parent):
        count = found(folder)
        if count > best_count:
            best, best_count = folder, count
    if best is None or 2 * best_count <= len(names):
        return None
    return ImageRootHint(best.relative_to(csv_path.parent).as_posix(), len(names), found_now, best_count)


def _candidate_folders(base: Path) -> list[Path]:
    """Visible folders one and two levels under ``base``, at most _HINT_MAX_FOLDERS."""
    try:
        first = _subdirs(base)
        second = [sub for folder in first for sub in _subdirs(folder)]
    except OSError:
        return []
    return (first + second)[:_HINT_MAX_FOLDERS]


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
                frames.append(_npz_rows(path, split, len(images), labels))
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot read {path.name} as an npz archive: {exc}") from exc
    if not frames:
        raise SourceError(f"{path.name} has no train_images, val_images or test_images array.")
    return pd.concat(frames, ignore_index=True)


def _npz_rows(path: Path, split: str, count: int, labels: np.ndarray | None) -> pd.DataFrame:
    names = [None] * count if labels is None else [str(int(v)) for v in labels]
    return pd.DataFrame({
        "id": [f"{split}/{i}" for i in range(count)], "path": str(path), "index": np.arange(count),
        "label": names, "split": split, "group": None, "mask_path": None, "problem": None,
    })
