"""Squaring crops (core.preprocess) and writing a preprocessed copy of a dataset (core.export)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.export import ExportError, export_preprocessed, export_source
from core.preprocess import FIT_MODES, PAD_MODES, pad_to_square, padding_share, prepare
from core.registry import DEMO_DATASETS
from core.scanning import scan, usable
from core.sources import SourceSpec
from tests.conftest import SHARED_DATA, gradient

SHAPES = [(3, 5), (5, 3), (4, 7), (7, 4), (6, 6), (3, 200), (200, 3), (1, 9)]
BCCD = DEMO_DATASETS["Demo: blood cells (BCCD crops)"]


def noise(height: int, width: int, colour: bool, seed: int = 0) -> np.ndarray:
    shape = (height, width, 3) if colour else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def offsets(arr: np.ndarray) -> tuple[int, int, int]:
    """Side of the square and where the image's top-left corner lands in it."""
    height, width = arr.shape[:2]
    side = max(height, width)
    return side, (side - height) // 2, (side - width) // 2


def margin_mask(arr: np.ndarray) -> np.ndarray:
    side, top, left = offsets(arr)
    mask = np.ones((side, side), dtype=bool)
    mask[top:top + arr.shape[0], left:left + arr.shape[1]] = False
    return mask


@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("colour", [False, True])
def test_padding_is_square_and_centred(mode, shape, colour):
    arr = noise(*shape, colour)
    out = pad_to_square(arr, mode)
    side, top, left = offsets(arr)
    assert out.dtype == np.uint8
    assert out.shape == (side, side) + arr.shape[2:]
    np.testing.assert_array_equal(out[top:top + shape[0], left:left + shape[1]], arr)


def test_odd_extra_pixel_goes_bottom_and_right():
    tall = pad_to_square(np.full((7, 4), 9, dtype=np.uint8), "zero")
    assert tall[:, 0].max() == 0 and tall[:, 1:5].min() == 9 and tall[:, 5:].max() == 0
    wide = pad_to_square(np.full((4, 7), 9, dtype=np.uint8), "zero")
    assert wide[0].max() == 0 and wide[1:5].min() == 9 and wide[5:].max() == 0


def expected_fill(arr: np.ndarray, mode: str):
    if mode == "mean":
        return np.rint(arr.mean(axis=(0, 1)))
    return {"zero": 0, "white": 255}[mode]


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("mode", ["zero", "white", "mean"])
def test_constant_fills(mode, colour):
    arr = noise(5, 12, colour)
    margin = pad_to_square(arr, mode)[margin_mask(arr)]
    assert len(margin) == 12 * 12 - 5 * 12
    assert (margin == expected_fill(arr, mode)).all()


def test_mean_fill_is_the_colour_of_each_channel():
    arr = np.zeros((2, 6, 3), dtype=np.uint8)
    arr[..., 0], arr[0, :, 1] = 200, 100  # red everywhere, green on half the pixels
    corner = pad_to_square(arr, "mean")[0, 0]
    assert corner.tolist() == [200, 50, 0]


@pytest.mark.parametrize("colour", [False, True])
def test_edge_repeats_the_border(colour):
    arr = noise(4, 10, colour)
    out = pad_to_square(arr, "edge")
    _, top, _ = offsets(arr)
    for row in range(top):
        np.testing.assert_array_equal(out[row], arr[0])
    for row in range(top + 4, 10):
        np.testing.assert_array_equal(out[row], arr[-1])
    tall = noise(10, 4, colour, seed=1)
    out = pad_to_square(tall, "edge")
    np.testing.assert_array_equal(out[:, 0], tall[:, 0])
    np.testing.assert_array_equal(out[:, -1], tall[:, -1])


@pytest.mark.parametrize("colour", [False, True])
def test_reflect_mirrors_without_repeating_the_border(colour):
    arr = noise(6, 10, colour)
    out = pad_to_square(arr, "reflect")
    _, top, _ = offsets(arr)
    for k in range(1, top + 1):
        np.testing.assert_array_equal(out[top - k], arr[k])
        np.testing.assert_array_equal(out[top + 5 + k], arr[5 - k])


@pytest.mark.parametrize("mode", PAD_MODES)
def test_thin_strips_pad_from_their_own_rows(mode):
    strip = noise(3, 200, colour=True)
    out = pad_to_square(strip, mode)
    assert out.shape == (200, 200, 3)
    if mode in ("edge", "reflect"):
        rows = {r.tobytes() for r in strip}
        assert all(r.tobytes() in rows for r in out)


@pytest.mark.parametrize("fit", FIT_MODES)
@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("shape, size", [((30, 50), 64), ((500, 90), 32), ((3, 200), 8), ((64, 64), 64)])
def test_prepare_gives_the_requested_square(fit, colour, shape, size):
    arr = noise(*shape, colour)
    out = prepare(arr, size, "reflect", fit)
    assert out.dtype == np.uint8
    assert out.shape == (size, size) + arr.shape[2:]


def test_prepare_leaves_a_square_of_the_right_size_untouched():
    arr = gradient(48, 48)
    for fit in FIT_MODES:
        np.testing.assert_array_equal(prepare(arr, 48, "mean", fit), arr)


def three_bands(height: int = 20, width: int = 60) -> np.ndarray:
    """Red, green and blue vertical thirds: which survive tells what a fit keeps."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    third = width // 3
    for channel in range(3):
        arr[:, channel * third:(channel + 1) * third, channel] = 255
    return arr


def test_crop_keeps_the_centre_stretch_keeps_everything_pad_adds_margins():
    arr = three_bands()
    crop = prepare(arr, 32, fit="crop")
    assert crop[..., 1].min() == 255 and crop[..., 0].max() == 0 and crop[..., 2].max() == 0
    stretch = prepare(arr, 30, fit="stretch")
    assert stretch[:, 2, 0].min() == 255 and stretch[:, -3, 2].min() == 255 and stretch[0, 15, 1] == 255
    padded = prepare(arr, 30, "white", "pad")
    assert (padded[0] == 255).all() and (padded[-1] == 255).all()
    assert padded[15, 2].tolist() == [255, 0, 0]


def test_padding_share_maths():
    assert padding_share(4, 4) == 0
    assert padding_share(3, 4) == pytest.approx(0.25) == padding_share(4, 3)
    assert np.isnan(padding_share(0, 0))
    widths = pd.Series([10, 50, 0], index=["a", "b", "c"])
    share = padding_share(widths, pd.Series([40, 50, 0], index=["a", "b", "c"]))
    assert isinstance(share, pd.Series) and list(share.index) == ["a", "b", "c"]
    assert share["a"] == pytest.approx(0.75) and share["b"] == 0 and np.isnan(share["c"])
    assert padding_share(np.array([1, 2]), np.array([4, 2])).tolist() == [0.75, 0.0]


@pytest.mark.parametrize("shape", SHAPES)
def test_padding_share_is_the_share_of_margin_pixels(shape):
    margin = margin_mask(np.zeros(shape, dtype=np.uint8))
    assert padding_share(shape[1], shape[0]) == pytest.approx(margin.mean())


@pytest.mark.parametrize("call, message", [
    (lambda a: prepare(a, 64, "blue"), "Unknown pad mode 'blue'"),
    (lambda a: prepare(a, 64, fit="squash"), "Unknown fit 'squash'"),
    (lambda a: prepare(a, 7), "between 8 and 4096"),
    (lambda a: prepare(a, 4097), "between 8 and 4096"),
    (lambda a: prepare(a, 64.0), "whole number"),
    (lambda a: prepare(a, True), "whole number"),
    (lambda a: pad_to_square(a, "black"), "Unknown pad mode"),
    (lambda a: prepare(a.astype(np.float32), 64), "uint8"),
    (lambda a: prepare(np.dstack([a, a[..., :1]]), 64), "HxWx3"),
    (lambda a: prepare(a[:0], 64), "empty"),
])
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(noise(10, 20, colour=True))


# --- export ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bccd_subset() -> pd.DataFrame:
    """Four real crops of each BCCD class, plus one row with a problem and one without a label."""
    manifest = scan(BCCD)
    subset = manifest[usable(manifest)].groupby("label").head(4).reset_index(drop=True)
    extra = manifest[usable(manifest)].tail(2).copy()
    extra["problem"] = ["file not found (named in the CSV)", None]
    extra["label"] = [extra["label"].iloc[0], None]
    return pd.concat([subset, extra], ignore_index=True)


def label_counts(manifest: pd.DataFrame) -> dict:
    return manifest[usable(manifest)]["label"].value_counts().to_dict()


def test_export_scans_back_with_the_same_labels_groups_and_size(bccd_subset, tmp_path):
    calls = []
    result = export_preprocessed(bccd_subset, tmp_path / "out", 48, "edge", "pad",
                                 progress=lambda done, total: calls.append((done, total)), who="admin")
    expected = bccd_subset[usable(bccd_subset)]
    assert result["written"] == len(expected)
    assert result["skipped_problems"] == 1 and result["skipped_unlabelled"] == 1
    assert calls[-1] == (len(expected), len(expected))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    table = pd.read_csv(result["csv"])
    assert list(table.columns) == ["path", "label", "split", "group"]
    assert all(not Path(p).is_absolute() for p in table["path"])
    back = scan(SourceSpec(path=result["csv"], label_column="label", group_column="group", split_column="split"))
    assert usable(back).all()
    assert label_counts(back) == label_counts(bccd_subset)
    assert sorted(back["group"]) == sorted(expected["group"])
    assert set(zip(back["width"], back["height"])) == {(48, 48)}
    assert back["hash"].nunique() == len(back)


def test_exported_pixels_are_what_prepare_makes(bccd_subset, tmp_path):
    from core.images import load_item
    result = export_preprocessed(bccd_subset.head(3), tmp_path / "out", 40, "mean", "pad", who="admin")
    table = pd.read_csv(result["csv"])
    for (_, row), path in zip(bccd_subset.head(3).iterrows(), table["path"]):
        written = np.asarray(Image.open(Path(result["csv"]).parent / path))
        np.testing.assert_array_equal(written, prepare(load_item(row["path"]), 40, "mean", "pad"))


def test_export_keeps_splits_and_grey(tmp_path):
    manifest = scan(SourceSpec(str(SHARED_DATA / "medmnist" / "breastmnist.npz")))
    result = export_preprocessed(manifest, tmp_path / "out", 32, "zero", "stretch", who="admin")
    back = scan(export_source(result["csv"]))
    assert back.groupby(["split", "label"]).size().to_dict() == manifest.groupby(["split", "label"]).size().to_dict()
    assert set(back["mode"]) == {"L"}


def test_export_refuses_a_folder_it_did_not_write(bccd_subset, tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.txt").write_text("precious")
    with pytest.raises(ExportError, match="not empty"):
        export_preprocessed(bccd_subset, foreign, 32, who="admin")
    assert [p.name for p in foreign.iterdir()] == ["chapter1.txt"]
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_preprocessed(bccd_subset, tmp_path / "a_file", 32, who="admin")


def test_export_again_into_its_own_folder_replaces_the_old_copy(bccd_subset, tmp_path):
    out = tmp_path / "out"
    export_preprocessed(bccd_subset, out, 32, who="admin")
    smaller = bccd_subset.head(5)
    result = export_preprocessed(smaller, out, 24, who="admin")
    pngs = list((out / "images").rglob("*.png"))
    assert result["written"] == len(pngs) == len(smaller)
    assert {Image.open(p).size for p in pngs} == {(24, 24)}


def test_export_settles_bad_files_and_clashing_names(tmp_path):
    source = tmp_path / "cells" / "blast"
    source.mkdir(parents=True)
    for name in ("a b.png", "a_b.png", "A-B.png"):
        Image.fromarray(gradient(30, 20)).save(source / name)
    Image.fromarray(gradient(300, 200)).save(source / "cut.jpg", quality=95)
    data = (source / "cut.jpg").read_bytes()
    (source / "cut.jpg").write_bytes(data[: len(data) // 3])  # the header survives, the pixels do not
    manifest = scan(SourceSpec(str(tmp_path / "cells")))
    assert manifest["problem"].isna().all()  # a header-only scan cannot see the damage

    result = export_preprocessed(manifest, tmp_path / "out", 16, who="admin")
    table = pd.read_csv(result["csv"])
    assert result["written"] == 3 and result["skipped_problems"] == 1
    assert table["path"].str.lower().nunique() == 3
    assert all((tmp_path / "out" / p).is_file() for p in table["path"])


def test_export_with_nothing_usable_writes_nothing(bccd_subset, tmp_path):
    with pytest.raises(ExportError, match="Nothing to export"):
        export_preprocessed(bccd_subset.assign(label=None), tmp_path / "out", 32, who="admin")
    assert not (tmp_path / "out").exists()
