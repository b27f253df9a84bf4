"""Decode and preprocess a dataset once into one uint8 array, cached on disk.

The studies this tool grew from decoded every JPEG again every epoch; here an epoch reads a
memory-mapped array. The cache key is the items' content hashes plus the preprocessor's geometry,
so a changed file, a new item or another pad mode builds a new array and nothing goes stale.
"""
from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import workspace
from core.images import load_item
from core.preprocess import Preprocessor, channels_for

_WORKERS = min(8, (os.cpu_count() or 1) * 2)
_WINDOW = 4 * _WORKERS  # images decoded ahead while the cache fills: every thread busy, little memory held

__all__ = ["UnreadableImage", "cache_key", "channels_for_rows", "decoded", "prepared_array"]


def channels_for_rows(rows: pd.DataFrame) -> int:
    """1 when every image of the manifest rows is grey, else 3 (see core.preprocess.channels_for)."""
    return channels_for(rows["mode"].tolist())


def cache_key(rows: pd.DataFrame, preprocessor: Preprocessor) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update("|".join(map(str, preprocessor.geometry)).encode() + b"|")
    digest.update("\n".join(rows["hash"].astype(str)).encode())
    return digest.hexdigest()


class UnreadableImage(OSError):
    """An image that passed the header scan but cannot be decoded; the message names the file."""


def _pixels_or_error(row: Any, preprocessor: Preprocessor) -> np.ndarray | Exception:
    split = row.split if isinstance(row.split, str) else None
    try:
        return preprocessor.pixels(load_item(row.path, int(row.index), split))
    except Exception as exc:  # noqa: BLE001 - a damaged file: PIL raises many kinds, each a row's problem
        return exc


def decoded(rows: pd.DataFrame, preprocessor: Preprocessor, window: int = 256) -> Iterator[np.ndarray | Exception]:
    """Each row's S x S x C uint8 pixels, in order, decoded in threads; a row that cannot be decoded
    gives its exception instead, so the caller decides whether that is fatal (training) or a row to
    skip (prediction on new images). At most `window` rows are in flight, so a source of any size
    streams through in constant memory."""
    with ThreadPoolExecutor(_WORKERS) as pool:
        pending: deque[Future[np.ndarray | Exception]] = deque()
        try:
            for row in rows.itertuples():
                pending.append(pool.submit(_pixels_or_error, row, preprocessor))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # a consumer that stops early does not wait for the rest
            for job in pending:
                job.cancel()


def prepared_array(rows: pd.DataFrame, preprocessor: Preprocessor,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """An (N, size, size, C) uint8 array of the rows in order, from the cache when possible.

    `rows` are manifest rows: path, index, hash, and split as the source gives it (it locates an
    npz row)."""
    path = workspace.cache_dir("arrays") / f"{cache_key(rows, preprocessor)}.npy"
    if path.exists():
        try:
            cached: np.ndarray = np.load(path, mmap_mode="r")
            return cached
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a damaged cache file is rebuilt
    with workspace.atomic_path(path) as tmp:
        _fill(tmp, rows, preprocessor, progress)
    built: np.ndarray = np.load(path, mmap_mode="r")
    return built


def _fill(tmp: Path, rows: pd.DataFrame, preprocessor: Preprocessor,
          progress: Callable[[int, int], None] | None) -> None:
    """Decode the rows straight into the .npy file's memory map: the array never sits in RAM whole
    (the kernel writes its pages out as they fill), so a dataset larger than RAM can be cached."""
    size, channels = preprocessor.size, preprocessor.channels
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(rows), size, size, channels))
    for i, (row, arr) in enumerate(zip(rows.itertuples(), decoded(rows, preprocessor, _WINDOW), strict=True)):
        if isinstance(arr, Exception):
            raise UnreadableImage(f"{row.path} cannot be decoded ({arr}). Open the dataset on the Dataset page "
                                  "(or run `python -m core scan`): verification marks such files, and "
                                  "training then leaves them out.") from arr
        out[i] = arr
        if progress and (i % 64 == 0 or i == len(rows) - 1):
            progress(i + 1, len(rows))
    out.flush()
