"""Scan speed: Lumen's header scan (what the Dataset page's headline waits for) vs fully decoding every
image (the naive way, and what verification does later in the background).

Both sides use the same thread pool (core.scanning's worker count) and start from the same state:
"cold" drops every file from the page cache first (posix_fadvise DONTNEED, no root needed) and gives
Lumen an empty workspace, so it reads every file; "warm" leaves the files cached (Lumen's fact cache
still empty). Rounds interleave the sides; medians are printed, and `ratio <full decode time / Lumen
scan time>` on cold caches last.

    python -m bench.scan [SOURCE] [--rounds N]   # default: ../shared/data/blood_pbc
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from core import scanning
from core.sources import SourceSpec, list_items

ROOT = Path(__file__).resolve().parent.parent


def full_decode(path: str) -> None:
    """The naive way: open and decode the image."""
    with Image.open(path) as img:
        img.convert("RGB")


def drop_from_page_cache(paths: list[str]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def lumen_scan(spec: SourceSpec) -> Callable[[], None]:
    def run() -> None:
        os.environ["LUMEN_HOME"] = tempfile.mkdtemp(prefix="lumen-bench-")  # an empty fact cache
        scanning.scan(spec)
    return run


def naive_decode(paths: list[str]) -> Callable[[], None]:
    def run() -> None:
        with ThreadPoolExecutor(scanning._WORKERS) as pool:
            for _ in pool.map(full_decode, paths, chunksize=16):
                pass
    return run


def timed(fn: Callable[[], None], paths: list[str], cold: bool) -> float:
    if cold:
        drop_from_page_cache(paths)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=str(ROOT.parent / "shared" / "data" / "blood_pbc"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spec = SourceSpec(args.source)
    paths = list_items(spec)["path"].dropna().drop_duplicates().tolist()
    sides = {"lumen": lumen_scan(spec), "decode": naive_decode(paths)}
    print(f"source: {args.source} ({len(paths):,} files), {os.cpu_count()} CPUs, "
          f"{scanning._WORKERS} threads on both sides, load {os.getloadavg()[0]:.1f}")
    times: dict[tuple[str, bool], list[float]] = {(side, cold): [] for side in sides for cold in (True, False)}
    for _ in range(args.rounds):
        for cold in (True, False):
            for side, fn in sides.items():
                times[side, cold].append(timed(fn, paths, cold))
    median = {key: statistics.median(values) for key, values in times.items()}
    for cold in (True, False):
        state = "cold" if cold else "warm"
        for side, label in (("lumen", "Lumen header scan"), ("decode", "full decode (naive)")):
            seconds = median[side, cold]
            print(f"{state} {label:20s} {len(paths) / seconds:9.0f} images/s  ({seconds:.2f} s, median of "
                  f"{args.rounds}: {', '.join(f'{t:.2f}' for t in times[side, cold])})")
        print(f"{state} ratio {median['decode', cold] / median['lumen', cold]:.2f}")
    print(f"load after {os.getloadavg()[0]:.1f}")
    print(f"ratio {median['decode', True] / median['lumen', True]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
