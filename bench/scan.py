"""Scan speed: Lumen's header-only scan vs fully decoding every image (the naive way).

Both read every file of the source from a cold cache; Lumen's scan also hashes file contents.
Prints images/s for each and, last, `ratio <header-only speed / full-decode speed>`.

    python bench/scan.py [SOURCE]      # default: ../shared/data/blood_pbc (2000 JPEGs, 360x363)
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from core.scanning import scan
from core.sources import SourceSpec, list_items

ROOT = Path(__file__).resolve().parent.parent


def full_decode(paths: list[str]) -> None:
    """The naive way: open and decode every image, one after another."""
    for path in paths:
        with Image.open(path) as img:
            img.convert("RGB")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    source = sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "data" / "blood_pbc")
    spec = SourceSpec(source)
    paths = list_items(spec)["path"].tolist()
    os.environ["LUMEN_HOME"] = tempfile.mkdtemp(prefix="lumen-bench-")  # cold fact cache
    print(f"source: {source} ({len(paths)} images), {os.cpu_count()} CPUs")
    header_s = timed(lambda: scan(spec))
    warm_s = timed(lambda: scan(spec))
    decode_s = timed(lambda: full_decode(paths))
    header_rate, decode_rate = len(paths) / header_s, len(paths) / decode_s
    print(f"header-only scan (Lumen, cold): {header_rate:10.0f} images/s  ({header_s:.2f} s)")
    print(f"header-only scan (Lumen, warm): {len(paths) / warm_s:10.0f} images/s  ({warm_s:.2f} s)")
    print(f"full decode (naive):            {decode_rate:10.0f} images/s  ({decode_s:.2f} s)")
    print(f"ratio {header_rate / decode_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
