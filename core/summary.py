"""One JSON-ready summary of a manifest: what the CLI prints and the page headline shows."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.splits import imbalance_ratio


def _stats(values: pd.Series) -> dict[str, float]:
    if values.empty:
        return {}
    arr = values.to_numpy(dtype=float)
    return {"min": int(arr.min()), "max": int(arr.max()), "mean": round(float(arr.mean()), 1),
            "median": float(np.median(arr)), "p05": float(np.percentile(arr, 5)),
            "p95": float(np.percentile(arr, 95))}


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a ratio that does not exist (fewer than two classes) is null."""
    return round(value, 3) if np.isfinite(value) else None


def summarize(manifest: pd.DataFrame) -> dict[str, Any]:
    # Sizes, modes and formats describe the images that will be used: a decompression bomb or a
    # truncated file has a readable header, but must not skew the statistics.
    readable = manifest[(manifest["width"] > 0) & manifest["problem"].isna()]
    problems = manifest[manifest["problem"].notna()]
    usable = manifest["problem"].isna() & manifest["label"].notna()
    return {
        "items": int(len(manifest)),
        "usable": int(usable.sum()),
        "unlabelled": int(manifest["label"].isna().sum()),
        "classes": {str(k): int(v) for k, v in manifest.loc[usable, "label"].value_counts().sort_index().items()},
        "imbalance_ratio": _finite_or_none(imbalance_ratio(manifest.loc[usable, "label"])),
        "splits": {str(k): int(v) for k, v in manifest["split"].value_counts().items()},
        "groups": int(manifest["group"].nunique()),
        "problems": [{"path": row.path or row.id, "id": row.id, "reason": row.problem}
                     for row in problems.itertuples()],
        "verified": int(manifest["verified"].sum()),
        "sizes": {"width": _stats(readable["width"]), "height": _stats(readable["height"]),
                  "distinct_sizes": int(readable.groupby(["width", "height"]).ngroups)},
        "modes": {str(k): int(v) for k, v in readable["mode"].value_counts().items()},
        "formats": {str(k): int(v) for k, v in readable["format"].value_counts().items()},
    }
