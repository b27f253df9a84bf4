"""Scanning: header-only facts for every item at once, full-decode verification later.

Reading headers (size, mode, format) and the first PREFIX_BYTES of each file costs no decode and
no full read, so a page can show classes and sizes of tens of thousands of images in seconds. The
content hash is exact for files no longer than the prefix; a longer file gets a key of its size
and prefix, and is read whole only when that key is shared (so duplicates are still found exactly)
or when the file was edited since its last scan (so this source's content-keyed caches see the edit).
Verification decodes each file to catch what a header cannot
show (truncation) and, as it reads every byte anyway, replaces the remaining prefix keys with full
hashes. Both run once per file version: the facts are cached in the workspace keyed by path, size
and modification time.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from core import workspace
from core.imageheader import read_header
from core.images import ImageTooLarge, NotAStillImage, check_pixel_limit, check_still, to_uint8_array
from core.sources import SourceSpec, list_items

FACT_COLUMNS = ["width", "height", "mode", "format", "bytes", "hash", "hash_exact", "file_problem", "verified"]
#: How much of each file the header scan reads and hashes (one page: hashing a whole 16 KB crop cost
#: more than the rest of its header work); a file this long or shorter is hashed whole.
PREFIX_BYTES = 4 * 1024
STAT_COLUMNS = ["mtime_ns", "size"]
ProgressFn = Callable[[int, int], None]
Item = TypeVar("Item")
Result = TypeVar("Result")

_EXIF_ORIENTATION = 0x0112
_WORKERS = min(8, (os.cpu_count() or 1) * 2)  # more only fight over the GIL (bench/scan.py)
_CHUNK = 64  # files per task: progress still moves in small steps
_cache_lock = threading.Lock()


def header_facts(path: str) -> dict[str, Any]:
    """Size, mode, format, byte count and content key of one file, from its first bytes, without
    decoding pixels."""
    facts: dict[str, Any] = dict(width=0, height=0, mode=None, format=None, bytes=0, hash=None, hash_exact=False,
                                 file_problem=None, verified=False)
    try:
        with open(path, "rb", buffering=PREFIX_BYTES) as handle:  # one page per read, short reads retried
            _no_readahead(handle.fileno())
            prefix = handle.read(PREFIX_BYTES)
            size = os.fstat(handle.fileno()).st_size
            facts["bytes"] = size
            if not prefix:
                facts["file_problem"] = "empty file (0 bytes)"
                return facts
            exact = len(prefix) >= size
            facts.update(hash=full_hash(prefix) if exact else _prefix_key(prefix, size), hash_exact=exact)
            handle.seek(0)
            facts.update(_image_header(handle, prefix))
    except OSError as exc:
        facts["file_problem"] = f"cannot read the file: {exc.strerror or exc}"
    return facts


def _no_readahead(fd: int) -> None:
    """Tell the kernel not to read ahead: on a cold disk it would fetch the rest of the file, which
    the header scan never needs."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)


def _image_header(handle: Any, prefix: bytes) -> dict[str, Any]:
    """Width and height (as displayed, after EXIF rotation), mode and format, or the problem: from
    the prefix alone for plain JPEG and PNG (core.imageheader), else from Pillow."""
    facts: dict[str, Any] = {}
    plain = read_header(prefix)
    if plain is not None:
        width, height, mode, image_format = plain
        facts.update(width=width, height=height, mode=mode, format=image_format)
        try:
            check_pixel_limit(width, height)
        except ImageTooLarge as exc:
            facts["file_problem"] = str(exc)
        return facts
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(handle) as img:
                width, height = img.size
                if img.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                    width, height = height, width
                facts.update(width=width, height=height, mode=img.mode, format=img.format)
                check_pixel_limit(width, height)
                check_still(img)
    except (ImageTooLarge, NotAStillImage) as exc:
        facts["file_problem"] = str(exc)
    except UnidentifiedImageError:
        facts["file_problem"] = "not an image (the file is not a readable PNG, JPEG, TIFF or BMP)"
    except Exception as exc:  # a damaged header: PIL raises many kinds
        facts["file_problem"] = describe_decode_error(exc)
    return facts


def full_hash(data: bytes) -> str:
    """The exact content hash (what duplicates, caches and runs compare)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _prefix_key(prefix: bytes, size: int) -> str:
    """A long file's size and first bytes: equal for equal files; marked (``person``) so it never
    equals a full hash."""
    digest = hashlib.blake2b(prefix, digest_size=16, person=b"lumen-prefix")
    digest.update(size.to_bytes(8, "little"))
    return digest.hexdigest()


def _file_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    except OSError:
        return None  # keeps its prefix key; the file's problem shows when verification reads it


def describe_decode_error(exc: Exception) -> str:
    """PIL's many exception kinds, said plainly."""
    text = str(exc)
    if "truncated" in text.lower() or isinstance(exc, (EOFError, SyntaxError)):
        return f"truncated or corrupt: the image data ends early or is damaged ({text})"
    return f"cannot decode the image: {text}"


def verify_file(path: str) -> tuple[str | None, str | None]:
    """Decode a file fully: its plain-language problem (None when it decodes) and, since every byte
    is read anyway, its exact content hash."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}", None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                check_pixel_limit(*img.size)
                check_still(img)
                img.load()
                to_uint8_array(img)
    except (ImageTooLarge, NotAStillImage) as exc:
        return str(exc), full_hash(data)
    except Exception as exc:
        return describe_decode_error(exc), full_hash(data)
    return None, full_hash(data)


def _npz_facts(path: str, index: np.ndarray) -> pd.DataFrame:
    """Facts for npz items, computed from the arrays themselves (they are already decoded)."""
    out = []
    with np.load(path, allow_pickle=False) as data:
        arrays = {split: data[f"{split}_images"] for split in set(index[:, 1])}
        for item_index, split in index:
            arr = arrays[split][int(item_index)]
            out.append(dict(width=arr.shape[1], height=arr.shape[0],
                            mode="L" if arr.ndim == 2 else "RGB", format="NPZ", bytes=int(arr.nbytes),
                            hash=full_hash(np.ascontiguousarray(arr).tobytes()), hash_exact=True,
                            file_problem=None, verified=True))
    return pd.DataFrame(out, columns=FACT_COLUMNS)


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    except OSError:
        return -1, -1


def _facts_cache_path(spec: SourceSpec) -> Path:
    key = hashlib.blake2b(str(Path(spec.path).resolve()).encode(), digest_size=8).hexdigest()
    return workspace.cache_dir("facts") / f"{key}.parquet"


def _load_fact_cache(spec: SourceSpec) -> pd.DataFrame:
    path = _facts_cache_path(spec)
    if path.exists():
        try:
            return pd.read_parquet(path)
        except Exception:
            path.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
    return pd.DataFrame(columns=["path", *STAT_COLUMNS, *FACT_COLUMNS])


def _save_fact_cache(spec: SourceSpec, facts: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    facts.reset_index(drop=True).to_parquet(buffer, index=False)
    # not synced: a torn file fails to parse and is rebuilt
    workspace.atomic_write_bytes(_facts_cache_path(spec), buffer.getvalue(), durable=False)


def _run_parallel(fn: Callable[[Item], Result], items: list[Item], progress: ProgressFn | None, offset: int,
                  total: int) -> list[Result]:
    """`fn` over `items` on the thread pool, in chunks: a future per file costs more in lock traffic
    than a header read (ThreadPoolExecutor ignores map's chunksize), and while reads wait on the
    disk the threads overlap them."""
    if not items:
        return []
    size = min(_CHUNK, max(1, -(-len(items) // _WORKERS)))
    chunks = [items[start:start + size] for start in range(0, len(items), size)]
    results: list[Result] = []
    with ThreadPoolExecutor(_WORKERS) as pool:
        for done in pool.map(lambda chunk: [fn(item) for item in chunk], chunks):
            results.extend(done)
            if progress:
                progress(offset + len(results), total)
    return results


def scan(spec: SourceSpec, verify: bool = False, progress: ProgressFn | None = None) -> pd.DataFrame:
    """The manifest of a source: its listing joined with per-file facts, cached and refreshed.

    Files whose size and modification time are unchanged reuse their cached facts; new or changed
    files are read again; with ``verify`` every file not yet verified is fully decoded.
    """
    listing = list_items(spec)
    if spec.resolved_kind() == "npz":
        facts = _npz_facts(listing["path"].iloc[0], listing[["index", "split"]].to_numpy())
        return _combine(listing, facts)

    files = listing.loc[listing["problem"].isna(), "path"].drop_duplicates().tolist()
    stats = pd.DataFrame([_stat(p) for p in files], columns=STAT_COLUMNS, dtype="int64")
    stats.insert(0, "path", pd.Series(files, dtype=object))  # typed even when every row is a problem
    with _cache_lock:
        cached = _load_fact_cache(spec)
    merged = stats.merge(cached, on=["path", *STAT_COLUMNS], how="left")
    stale = (merged["hash"].isna() & merged["file_problem"].isna()).to_numpy()
    edited = set(merged.loc[stale & merged["path"].isin(cached["path"]).to_numpy(), "path"])
    todo_header = merged.loc[stale, "path"].tolist()
    fresh = pd.DataFrame(_run_parallel(header_facts, todo_header, progress, 0, len(todo_header)),
                         columns=FACT_COLUMNS)
    fresh = pd.concat([merged.loc[stale, ["path", *STAT_COLUMNS]].reset_index(drop=True), fresh], axis=1)
    merged = pd.concat([merged.loc[~stale], fresh], ignore_index=True) if todo_header else merged
    merged["verified"] = merged["verified"].fillna(False).astype(bool)
    merged["hash_exact"] = merged["hash_exact"].fillna(True).astype(bool)  # caches from before prefix keys
    rehashed = _hash_where_keys_mislead(merged, edited)
    if verify:
        todo_verify = merged.index[~merged["verified"] & merged["file_problem"].isna()].tolist()
        results = _run_parallel(verify_file, merged.loc[todo_verify, "path"].tolist(), progress, 0,
                                len(todo_verify))
        problems, hashes = zip(*results) if results else ((), ())
        merged.loc[todo_verify, "file_problem"] = pd.Series(problems, index=todo_verify, dtype=object)
        hashed = pd.Series(hashes, index=todo_verify, dtype=object).dropna()
        merged.loc[hashed.index, "hash"] = hashed
        merged.loc[hashed.index, "hash_exact"] = True
        merged.loc[todo_verify, "verified"] = True
    if todo_header or rehashed or verify:
        with _cache_lock:
            _save_fact_cache(spec, merged)
    facts = listing[["path"]].merge(merged, on="path", how="left")[FACT_COLUMNS]
    return _combine(listing, facts)


def _hash_where_keys_mislead(merged: pd.DataFrame, edited: set[str]) -> int:
    """Replace prefix keys with full hashes (in place) where a key could mislead: keys that several
    files share (equal size and first bytes, which only the whole content can tell from a true
    duplicate), and files edited in place since they were last scanned (an edit past the prefix that
    keeps the size keeps the key, and the image and feature caches, keyed by content, would serve
    the old pixels; an edit made before a source's first scan, or seen only by another source, is
    caught by verification). Returns how many files were read whole."""
    partial = merged["hash"].notna() & ~merged["hash_exact"]
    misleading = merged["hash"].where(partial).duplicated(keep=False) | merged["path"].isin(edited)
    to_read = merged.index[partial & misleading].tolist()
    hashes = pd.Series(_run_parallel(_file_hash, merged.loc[to_read, "path"].tolist(), None, 0, len(to_read)),
                       index=to_read, dtype=object).dropna()
    merged.loc[hashes.index, "hash"] = hashes
    merged.loc[hashes.index, "hash_exact"] = True
    return len(to_read)


def _combine(listing: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    manifest = pd.concat([listing.reset_index(drop=True), facts.reset_index(drop=True)], axis=1)
    manifest["problem"] = manifest["problem"].where(manifest["problem"].notna(), manifest["file_problem"])
    manifest = manifest.drop(columns=["file_problem"])
    for col in ("width", "height", "bytes"):
        manifest[col] = manifest[col].fillna(0).astype(np.int64)
    manifest["verified"] = manifest["verified"].fillna(False).astype(bool)
    return manifest


def needs_verification(manifest: pd.DataFrame) -> int:
    """How many usable-looking files have not been fully decoded yet."""
    return int((~manifest["verified"] & manifest["problem"].isna()).sum())


def usable(manifest: pd.DataFrame) -> pd.Series:
    """Rows training can use: no problem and a label."""
    return manifest["problem"].isna() & manifest["label"].notna()
