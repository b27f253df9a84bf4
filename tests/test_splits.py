"""Splits: stratified, grouped without straddling, predefined kept; the leakage report."""
import shutil

import numpy as np
import pandas as pd
import pytest

from core.scanning import scan
from core.sources import SourceSpec
from core.splits import (
    _units,
    assign_splits,
    draw_subset,
    duplicate_groups,
    imbalance_ratio,
    leakage_report,
    split_table,
)
from tests.conftest import SHARED_DATA

GLOMERULI = SourceSpec(str(SHARED_DATA / "glomeruli" / "labels.csv"), label_column="class",
                       group_column="slide_id", mask_column="mask_path")


@pytest.fixture(scope="module")
def glomeruli(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUMEN_HOME", str(tmp_path_factory.mktemp("splits-home")))
        return scan(GLOMERULI)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_split_of_glomeruli_puts_no_slide_in_two_splits(glomeruli, seed):
    split = assign_splits(glomeruli, seed=seed, group_column="group")
    assert split.notna().all()
    assert (glomeruli.assign(split=split).groupby("group")["split"].nunique() == 1).all()
    assert leakage_report(glomeruli, split)["groups"].empty
    shares = split.value_counts(normalize=True)
    assert 0.65 < shares["train"] < 0.9 and shares["val"] > 0.04 and shares["test"] > 0.04


def test_ungrouped_split_is_stratified_to_the_ratios(glomeruli):
    split = assign_splits(glomeruli, ratios=(0.6, 0.2, 0.2), seed=3, group_column=None)
    table = pd.crosstab(glomeruli["label"], split)
    for cls, total in glomeruli["label"].value_counts().items():
        assert abs(table.loc[cls, "train"] - 0.6 * total) <= 1
        assert abs(table.loc[cls, "test"] - 0.2 * total) <= 1
    # an ungrouped split of slide data does leak: the report must say so
    assert not leakage_report(glomeruli, split)["groups"].empty


def test_seed_changes_the_split_and_repeats_it(glomeruli):
    a = assign_splits(glomeruli, seed=1, group_column=None)
    assert a.equals(assign_splits(glomeruli, seed=1, group_column=None))
    assert not a.equals(assign_splits(glomeruli, seed=2, group_column=None))


def test_predefined_splits_are_kept():
    manifest = scan(SourceSpec(str(SHARED_DATA / "medmnist" / "breastmnist.npz")))
    manifest.loc[manifest.index[:10], "split"] = None
    split = assign_splits(manifest, seed=0)
    assert split.iloc[10:].equals(manifest["split"].iloc[10:].astype(object))
    assert split.iloc[:10].notna().all()


def test_bad_ratios_are_refused(glomeruli):
    with pytest.raises(ValueError, match="three non-negative"):
        assign_splits(glomeruli, ratios=(1, -1, 0))


def test_identical_images_in_two_splits_are_reported(tmp_path):
    src = sorted((SHARED_DATA / "blood_pbc" / "platelet").glob("*.jpg"))[:4]
    for split in ("train", "test"):
        (tmp_path / split / "platelet").mkdir(parents=True)
    for path in src:
        shutil.copy(path, tmp_path / "train" / "platelet" / path.name)
    shutil.copy(src[0], tmp_path / "test" / "platelet" / "copy_of_first.jpg")
    manifest = scan(SourceSpec(str(tmp_path)))
    report = leakage_report(manifest)
    assert sorted(report["identical_images"]["id"]) == sorted(
        [f"train/platelet/{src[0].name}", "test/platelet/copy_of_first.jpg"])
    assert duplicate_groups(manifest)["copies"].tolist() == [2, 2]


def test_split_table_and_imbalance(glomeruli):
    split = assign_splits(glomeruli, seed=0)
    table = split_table(glomeruli, split)
    assert table.loc["total", "total"] == len(glomeruli)
    counts = glomeruli["label"].value_counts()
    assert imbalance_ratio(glomeruli["label"]) == pytest.approx(counts.max() / counts.min())
    assert np.isnan(imbalance_ratio(pd.Series(["a", "a"])))


def test_duplicates_show_the_split_each_copy_was_drawn_into(tmp_path):
    src = sorted((SHARED_DATA / "blood_pbc" / "platelet").glob("*.jpg"))[:2]
    (tmp_path / "platelet").mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(src[0], tmp_path / "platelet" / name)
    shutil.copy(src[1], tmp_path / "platelet" / "c.jpg")
    manifest = scan(SourceSpec(str(tmp_path)))
    drawn = pd.Series(["train", "test", "val"], index=manifest.index)
    dups = duplicate_groups(manifest, drawn)
    assert dict(zip(dups["id"], dups["split"])) == {"platelet/a.jpg": "train", "platelet/b.jpg": "test"}
    assert duplicate_groups(manifest)["split"].isna().all()  # the folder's own split: none


@pytest.mark.parametrize("options, kept", [({"per_class": 20}, {"GS": 20, "nonGS": 20}),
                                           ({"fraction": 0.1}, {"GS": 21, "nonGS": 74}),
                                           ({"fraction": 0.1, "per_class": 30}, {"GS": 21, "nonGS": 30}),
                                           ({"per_class": 10_000}, {"GS": 209, "nonGS": 737}),
                                           ({}, {"GS": 209, "nonGS": 737})])
def test_a_subset_is_stratified_to_its_fraction_or_cap(glomeruli, options, kept):
    keep = draw_subset(glomeruli, **options)
    assert keep.index.equals(glomeruli.index)
    assert glomeruli.loc[keep, "label"].value_counts().to_dict() == kept


def test_a_subset_is_seeded_and_spans_the_slides(glomeruli):
    first = draw_subset(glomeruli, per_class=31, seed=3)
    assert first.equals(draw_subset(glomeruli, per_class=31, seed=3))
    assert not first.equals(draw_subset(glomeruli, per_class=31, seed=4))
    nongs = glomeruli["label"] == "nonGS"
    slides = glomeruli.loc[nongs, "group"].nunique()
    # round-robin over slides: every nonGS slide gives one crop before any gives a second
    assert glomeruli.loc[first & nongs, "group"].nunique() == min(31, slides)
    ungrouped = glomeruli.assign(group=None)
    assert ungrouped.loc[draw_subset(ungrouped, per_class=31, seed=3), "group"].isna().all()


def _loop_assign(units, labels, ratios, seed):
    """The split as it was assigned before the single-item units were vectorised: one unit at a time."""
    from core.sources import SPLITS

    classes, label_codes = np.unique(labels.to_numpy(), return_inverse=True)
    unit_names, unit_codes = np.unique(units.astype(object), return_inverse=True)
    counts = np.zeros((len(unit_names), len(classes)))
    np.add.at(counts, (unit_codes, label_codes), 1)
    target = ratios[:, None] * counts.sum(axis=0)[None, :]
    current = np.zeros_like(target)
    order = np.random.default_rng(seed).permutation(len(unit_names))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    unit_split = np.empty(len(unit_names), dtype=int)
    for unit in order:
        need = counts[unit]
        cost = (((need ** 2)[None, :] + 2 * need[None, :] * (current - target)) / np.maximum(target, 1.0)).sum(axis=1)
        cost[ratios == 0] = np.inf
        unit_split[unit] = choice = int(np.argmin(cost))
        current[choice] += need
    return np.array(SPLITS, dtype=object)[unit_split[unit_codes]]


BCCD = SourceSpec(str(SHARED_DATA / "bccd_crops" / "labels.csv"), label_column="wbc_subtype",
                  group_column="source_image")


@pytest.mark.parametrize("spec, grouped", [(GLOMERULI, True), (GLOMERULI, False), (BCCD, True), (BCCD, False),
                                           (SourceSpec(str(SHARED_DATA / "blood_pbc")), False)])
@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.7, 0.3, 0.0), (0.0, 0.5, 0.5)])
def test_the_vectorised_split_equals_the_item_by_item_one(spec, grouped, ratios):
    """Same seed, same assignment as the loop over every unit gave, on real data: grouped (slides, smears,
    and the BCCD rows without a subtype standing alone) and one item per unit."""
    manifest = scan(spec)
    group_column = "group" if grouped else None
    for seed in (0, 1, 7):
        split = assign_splits(manifest, ratios=ratios, seed=seed, group_column=group_column)
        rows = manifest[manifest["split"].isna()]
        shares = np.asarray(ratios) / sum(ratios)
        expected = _loop_assign(_units(rows, group_column), rows["label"].fillna("<unlabelled>").astype(str),
                                shares, seed)
        assert split.loc[rows.index].tolist() == expected.tolist()
