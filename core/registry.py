"""The datasets a user can pick: the embedded demos plus those added, remembered in the workspace.

The registry is one JSON file; writers take a file lock and rewrite it atomically, so two users
adding datasets at once both land and a reader never sees half a file.
"""
from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core import workspace
from core.roles import Identity, require
from core.sources import SourceError, SourceSpec, list_items

DEMO_DATASETS = {
    "Demo: glomeruli (GS vs non-GS)": SourceSpec(
        path=str(workspace.DEMO_DIR / "glomeruli" / "labels.csv"), kind="csv", path_column="path",
        label_column="class", group_column="slide_id", mask_column="mask_path"),
    "Demo: blood cells (BCCD crops)": SourceSpec(
        path=str(workspace.DEMO_DIR / "bccd" / "labels.csv"), kind="csv", path_column="path",
        label_column="cell_type", group_column="source_image"),
}


def _registry_path() -> Path:
    return workspace.home() / "datasets.json"


@contextmanager
def _locked() -> Iterator[None]:
    lock_path = workspace.home() / ".datasets.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_user_datasets() -> dict[str, SourceSpec]:
    path = _registry_path()
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    return {name: SourceSpec.from_dict(spec) for name, spec in raw.items()}


def list_datasets() -> dict[str, SourceSpec]:
    """Demo datasets first, then the user's in the order they were added."""
    return {**DEMO_DATASETS, **_read_user_datasets()}


def add_dataset(name: str, spec: SourceSpec, *, who: Identity | str) -> SourceSpec:
    """Check that the source can be listed, then remember it under ``name`` (admins only)."""
    require(who, "manage datasets")
    name = name.strip()
    if not name:
        raise SourceError("Give the dataset a name.")
    if name in DEMO_DATASETS:
        raise SourceError(f"'{name}' is a demo dataset; choose another name.")
    resolved = SourceSpec.from_dict({**spec.to_dict(), "path": str(Path(spec.path).expanduser().resolve())})
    list_items(resolved)  # raises SourceError with a plain message when it cannot be read
    with _locked():
        datasets = _read_user_datasets()
        datasets[name] = resolved
        workspace.atomic_write_json(_registry_path(), {n: s.to_dict() for n, s in datasets.items()})
    return resolved


def remove_dataset(name: str, *, who: Identity | str) -> None:
    """Forget a dataset (its files stay where they are); admins only."""
    require(who, "manage datasets")
    with _locked():
        datasets = _read_user_datasets()
        datasets.pop(name, None)
        workspace.atomic_write_json(_registry_path(), {n: s.to_dict() for n, s in datasets.items()})
