"""Train/val/test splits (stratified, optionally grouped) and the leakage report.

Grouping matters in pathology: crops from one slide or one patient look alike, so a split that
puts them on both sides of the line reports optimistic figures. Items are assigned group by group,
largest first, each to the split where it brings the per-class counts closest to their quotas.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from core.sources import SPLITS

DEFAULT_RATIOS = (0.8, 0.1, 0.1)


def assign_splits(manifest: pd.DataFrame, ratios: Sequence[float] | np.ndarray = DEFAULT_RATIOS, seed: int = 0,
                  group_column: str | None = "group") -> pd.Series:
    """A split name for every row. Predefined splits are kept; the rest are assigned.

    With a group column that has values, no group ends up in two splits (except where predefined
    splits already put it there, which the leakage report shows).
    """
    shares = np.asarray(ratios, dtype=float)
    if shares.shape != (3,) or (shares < 0).any() or shares.sum() <= 0:
        raise ValueError("Split ratios must be three non-negative numbers (train, val, test) with a positive sum.")
    shares = shares / shares.sum()
    result = manifest["split"].copy().astype(object)
    todo = result.isna()
    if not todo.any():
        return result
    rows = manifest.loc[todo]
    labels = rows["label"].fillna("<unlabelled>").astype(str)
    result.loc[rows.index] = _greedy_assign(_units(rows, group_column), labels, shares, seed)
    return result


def _units(rows: pd.DataFrame, group_column: str | None) -> np.ndarray:
    """What must stay together, as strings: each row's group (a row without one stands alone), or each row."""
    if group_column and group_column in rows and rows[group_column].notna().any():
        alone = pd.Series("<row>" + rows.index.astype(str), index=rows.index)
        return np.asarray(rows[group_column].fillna(alone).astype(str), dtype=str)
    return rows.index.to_numpy().astype(str)


def assign_fold(manifest: pd.DataFrame, folds: int, fold: int, ratios: Sequence[float] | np.ndarray = DEFAULT_RATIOS,
                seed: int = 0, group_column: str | None = "group") -> pd.Series:
    """One fold of a stratified, grouped K-fold (scikit-learn's StratifiedGroupKFold, shuffled by
    ``seed``): its fold is "test", the other folds are split into train and val by the first two
    ratios, groups kept whole. Every item is held out by exactly one of the K folds, so the K runs
    together give each item an out-of-fold prediction. The dataset's own splits are pooled."""
    labels = manifest["label"].fillna("<unlabelled>").astype(str).to_numpy()
    units = _units(manifest, group_column)
    if len(set(units)) < folds:
        raise ValueError(f"{folds} folds need at least {folds} groups; the data has {len(set(units))}.")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    held_out = list(splitter.split(np.zeros(len(manifest)), labels, units))[fold][1]
    is_test = np.zeros(len(manifest), dtype=bool)
    is_test[held_out] = True
    result = pd.Series("test", index=manifest.index, dtype=object)
    rest = manifest.loc[~is_test].assign(split=None)
    result.loc[rest.index] = assign_splits(rest, ratios=(ratios[0], ratios[1], 0.0), seed=seed,
                                           group_column=group_column)
    return result


def _greedy_assign(units: np.ndarray, labels: pd.Series, ratios: np.ndarray, seed: int) -> np.ndarray:
    # numpy strings: sorted in C, in the same (code point) order as Python's
    classes, label_codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    unit_names, unit_codes = np.unique(units, return_inverse=True)
    counts = np.bincount(unit_codes * len(classes) + label_codes,
                         minlength=len(unit_names) * len(classes)).reshape(len(unit_names), len(classes)).astype(float)
    target = ratios[:, None] * counts.sum(axis=0)[None, :]  # splits x classes
    current = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unit_names))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]  # big groups first
    unit_split = np.empty(len(unit_names), dtype=int)
    single = counts[order].sum(axis=1) == 1  # the tail of the order: units of one item
    for unit in order[~single]:
        need = counts[unit]
        # growth of the squared, quota-weighted distance from the targets if the unit joins each split
        cost = ((need ** 2)[None, :] + 2 * need[None, :] * (current - target)) / np.maximum(target, 1.0)
        cost = cost.sum(axis=1)
        cost[ratios == 0] = np.inf
        choice = int(np.argmin(cost))
        unit_split[unit] = choice
        current[choice] += need
    _assign_single_items(order[single], counts, current, target, ratios, unit_split)
    return np.array(SPLITS, dtype=object)[unit_split[unit_codes]]


def _assign_single_items(units: np.ndarray, counts: np.ndarray, current: np.ndarray, target: np.ndarray,
                         ratios: np.ndarray, unit_split: np.ndarray) -> None:
    """The greedy loop's choices for one-item units (all of them when there are no groups), without
    the loop. Such a unit changes and is costed only in its own class's column, so each class is a
    sequence of its own: the item that finds a split holding x of the class costs
    (1 + 2 (x - target)) / max(target, 1) there, which grows with x, and the greedy takes the
    cheapest (first split on ties) each time, which is the order of all those costs sorted."""
    unit_class = counts[units].argmax(axis=1)
    allowed = np.flatnonzero(ratios > 0)
    for c in np.unique(unit_class):
        members = units[unit_class == c]
        filled = current[allowed, c][:, None] + np.arange(len(members))[None, :]  # splits x members
        cost = (1.0 + 2.0 * (filled - target[allowed, c][:, None])) / np.maximum(target[allowed, c], 1.0)[:, None]
        split_of = np.broadcast_to(allowed[:, None], cost.shape).ravel()
        taken = np.argsort(cost.ravel(), kind="stable")[:len(members)]  # split by split: ties to the first
        unit_split[members] = split_of[taken]


def draw_subset(rows: pd.DataFrame, fraction: float | None = None, per_class: int | None = None,
                seed: int = 0) -> pd.Series:
    """Which rows a smaller run keeps: per class, ``fraction`` of its items (at least one) and at most
    ``per_class``. Items are taken round-robin over the groups in a seeded order (one from each slide
    before a second from any), so a small subset still spans as many slides as it can and the grouped
    split drawn from it has groups to spread."""
    rng = np.random.default_rng(seed)
    shuffled = rows.iloc[rng.permutation(len(rows))]
    labels = shuffled["label"].fillna("<unlabelled>").astype(str)
    units = shuffled["group"].fillna(pd.Series("<row>" + shuffled.index.astype(str), index=shuffled.index))
    turn = shuffled.groupby([labels, units.astype(str)]).cumcount().to_numpy()  # 0: its group's first item
    unit_order = pd.factorize(units)[0]  # first-seen order, which the shuffle made random
    sorted_labels = labels.iloc[np.lexsort((unit_order, turn, labels.to_numpy()))]  # per class, turn by turn
    sizes = sorted_labels.map(sorted_labels.value_counts())
    quota = sizes if fraction is None else np.maximum(1, np.round(sizes * fraction)).astype(int)
    if per_class is not None:
        quota = np.minimum(quota, per_class)
    kept = sorted_labels.groupby(sorted_labels).cumcount() < quota
    return kept.reindex(rows.index)


def split_table(manifest: pd.DataFrame, split: pd.Series | None = None) -> pd.DataFrame:
    """Items per class (rows) and split (columns), with totals."""
    split = manifest["split"] if split is None else split
    table = pd.crosstab(manifest["label"].fillna("(unlabelled)"), split.fillna("(none)"),
                        margins=True, margins_name="total")
    ordered = [c for c in (*SPLITS, "(none)", "total") if c in table.columns]
    return table[ordered]


def imbalance_ratio(labels: pd.Series) -> float:
    """Largest class count over smallest (1.0 is balanced); NaN with fewer than two classes."""
    counts = labels.dropna().value_counts()
    if len(counts) < 2:
        return float("nan")
    return float(counts.max() / counts.min())


def duplicate_groups(manifest: pd.DataFrame, split: pd.Series | None = None) -> pd.DataFrame:
    """Rows whose content hash appears more than once, with the number of copies and each copy's
    split (``split``: the drawn one; default: the manifest's own)."""
    frame = manifest if split is None else manifest.assign(split=split)
    hashed = frame[frame["hash"].notna()]
    dup = hashed[hashed["hash"].duplicated(keep=False)].copy()
    dup["copies"] = dup.groupby("hash")["hash"].transform("size")
    return dup.sort_values(["hash", "id"])[["hash", "copies", "id", "label", "split", "group"]]


def leakage_report(manifest: pd.DataFrame, split: pd.Series | None = None) -> dict[str, pd.DataFrame]:
    """Identical images in two splits, and groups found in two splits."""
    split = manifest["split"] if split is None else split
    frame = manifest.assign(split=split)
    hashed = frame[frame["hash"].notna() & frame["split"].notna()]
    by_hash = hashed.groupby("hash")["split"].nunique()
    leaking_hashes = by_hash[by_hash > 1].index
    images = (hashed[hashed["hash"].isin(leaking_hashes)]
              .sort_values(["hash", "split"])[["hash", "id", "label", "split"]])
    grouped = frame[frame["group"].notna() & frame["split"].notna()]
    spread = grouped.groupby("group")["split"].agg(lambda s: ", ".join(sorted(set(s))))
    n_splits = grouped.groupby("group")["split"].nunique()
    groups = (pd.DataFrame({"group": spread.index, "splits": spread.values, "n_splits": n_splits.values,
                            "items": grouped.groupby("group").size().values})
              .query("n_splits > 1").drop(columns="n_splits").reset_index(drop=True))
    return {"identical_images": images.reset_index(drop=True), "groups": groups}
