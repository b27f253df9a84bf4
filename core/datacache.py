"""Decode and preprocess a dataset once into one uint8 array, cached on disk.

The studies this tool grew from decoded every JPEG again every epoch; here an epoch reads a
memory-mapped array. The cache key is the items' content hashes plus the preprocessing, so a
changed file, a new item or another pad mode builds a new array and nothing goes stale.
"""
from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import pandas as pd

from core import workspace
from core.images import as_rgb, load_item
from core.preprocess import prepare

GREY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}
_WORKERS = min(8, (os.cpu_count() or 1) * 2)


def channels_for(rows: pd.DataFrame) -> int:
    """1 when every image is grey (MedMNIST, X-rays), else 3 (grey ones are repeated)."""
    return 1 if rows["mode"].isin(GREY_MODES).all() else 3


def cache_key(rows: pd.DataFrame, size: int, pad_mode: str, fit: str, channels: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{size}|{pad_mode}|{fit}|{channels}|".encode())
    digest.update("\n".join(rows["hash"].astype(str)).encode())
    return digest.hexdigest()


class UnreadableImage(OSError):
    """An image that passed the header scan but cannot be decoded; the message names the file."""


def _prepare_one(row, size: int, pad_mode: str, fit: str, channels: int) -> np.ndarray:
    split = row.split if isinstance(row.split, str) else None
    try:
        arr = prepare(load_item(row.path, int(row.index), split), size, pad_mode, fit)
    except OSError as exc:
        raise UnreadableImage(f"{row.path} cannot be decoded ({exc}). Open the dataset on the Dataset page "
                              "(or run `python -m core scan`): verification marks such files, and "
                              "training then leaves them out.") from exc
    if channels == 3:
        return as_rgb(arr)
    return arr[:, :, None] if arr.ndim == 2 else arr.mean(axis=2, keepdims=True).astype(np.uint8)


def prepared_array(rows: pd.DataFrame, size: int, pad_mode: str = "zero", fit: str = "pad",
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """An (N, size, size, C) uint8 array of the rows in order, from the cache when possible."""
    channels = channels_for(rows)
    path = workspace.cache_dir("arrays") / f"{cache_key(rows, size, pad_mode, fit, channels)}.npy"
    if path.exists():
        try:
            return np.load(path, mmap_mode="r")
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a damaged cache file is rebuilt
    out = np.empty((len(rows), size, size, channels), dtype=np.uint8)
    with ThreadPoolExecutor(_WORKERS) as pool:
        jobs = pool.map(lambda r: _prepare_one(r, size, pad_mode, fit, channels), rows.itertuples(), chunksize=8)
        for i, arr in enumerate(jobs):
            out[i] = arr
            if progress and (i % 64 == 0 or i == len(rows) - 1):
                progress(i + 1, len(rows))
    buffer = io.BytesIO()
    np.save(buffer, out)
    workspace.atomic_write_bytes(path, buffer.getvalue())
    return out
