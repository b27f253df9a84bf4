"""Rebuild the embedded demo in assets/demo from ../shared/data (run once; the result is committed).

Glomeruli: about 300 images at a 1:4 GS:non-GS ratio, drawn slide by slide so that slide groups
stay whole, with their masks. Blood cells: BCCD crops of truly variable size, drawn smear by smear.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DEMO = ROOT / "assets" / "demo"


def _copy_rows(rows: pd.DataFrame, src: Path, dst: Path, columns: list[str]) -> None:
    for column in columns:
        for rel in rows[column].dropna():
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, target)
    rows.to_csv(dst / "labels.csv", index=False)
    shutil.copy2(src / "LICENSE", dst / "LICENSE")


def make_glomeruli(seed: int = 7, gs_count: int = 60, non_gs_count: int = 240) -> pd.DataFrame:
    table = pd.read_csv(SHARED / "glomeruli" / "labels.csv")
    rng = np.random.default_rng(seed)
    picked = []
    for cls, wanted in (("GS", gs_count), ("nonGS", non_gs_count)):
        rows = table[table["class"] == cls]
        slides = rng.permutation(rows["slide_id"].unique())
        taken = 0
        for slide in slides:
            chunk = rows[rows["slide_id"] == slide].head(wanted - taken)
            picked.append(chunk)
            taken += len(chunk)
            if taken >= wanted:
                break
    chosen = pd.concat(picked).sort_values("path")
    _copy_rows(chosen, SHARED / "glomeruli", DEMO / "glomeruli", ["path", "mask_path"])
    return chosen


def make_bccd(seed: int = 7, target: int = 330) -> pd.DataFrame:
    table = pd.read_csv(SHARED / "bccd_crops" / "labels.csv", keep_default_na=False)
    rng = np.random.default_rng(seed)
    chosen, count = [], 0
    for smear in rng.permutation(table["source_image"].unique()):
        rows = table[table["source_image"] == smear]
        chosen.append(rows)
        count += len(rows)
        if count >= target:
            break
    result = pd.concat(chosen).sort_values("path")
    _copy_rows(result, SHARED / "bccd_crops", DEMO / "bccd", ["path"])
    return result


def main() -> int:
    if not SHARED.exists():
        print(f"error: {SHARED} not found; the demo is built from the shared data folder", file=sys.stderr)
        return 2
    shutil.rmtree(DEMO / "glomeruli", ignore_errors=True)
    shutil.rmtree(DEMO / "bccd", ignore_errors=True)
    glom = make_glomeruli()
    bccd = make_bccd()
    print(f"glomeruli: {len(glom)} images, {glom['class'].value_counts().to_dict()}, "
          f"{glom['slide_id'].nunique()} slides")
    print(f"bccd: {len(bccd)} crops, {bccd['cell_type'].value_counts().to_dict()}, "
          f"{bccd['source_image'].nunique()} smears")
    return 0


if __name__ == "__main__":
    sys.exit(main())
