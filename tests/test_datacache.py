"""The image cache on the shared blood-cell crops: built in place in its memory-mapped file, so
building it holds a few images in memory, not the dataset."""
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from core import workspace
from core.datacache import UnreadableImage, prepared_array
from core.images import load_item
from core.preprocess import Preprocessor
from core.scanning import scan, usable
from core.sources import SourceSpec
from tests.conftest import SHARED_DATA

BCCD = SourceSpec(path=str(SHARED_DATA / "bccd_crops" / "labels.csv"), kind="csv", label_column="cell_type",
                  group_column="source_image")
PREPROCESS = {"size": 64, "pad_mode": "zero", "fit": "pad", "normalize": "none"}


def _rows(spec: SourceSpec = BCCD):
    manifest = scan(spec)
    return manifest.loc[usable(manifest)].reset_index(drop=True)


def test_building_the_cache_holds_a_few_images_in_memory_not_the_array():
    rows = _rows()
    preprocessor = Preprocessor.from_config(PREPROCESS, 3)
    tracemalloc.start()
    try:
        array = prepared_array(rows, preprocessor)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"cache of {len(rows)} images, {array.nbytes / 2**20:.1f} MiB: traced peak while building "
          f"{peak / 2**20:.2f} MiB ({peak / array.nbytes:.2f} x the array)")
    assert isinstance(array, np.memmap) and array.shape == (len(rows), 64, 64, 3)
    assert peak < 0.5 * array.nbytes  # building it in RAM first took at least the whole array
    assert np.array_equal(array[7], preprocessor.pixels(load_item(rows.loc[7, "path"])))
    assert np.array_equal(prepared_array(rows, preprocessor), array)  # read back from the file
    assert [p.suffix for p in workspace.cache_dir("arrays").iterdir()] == [".npy"]


def test_an_image_that_cannot_be_decoded_leaves_no_cache_file(tmp_path):
    rows = _rows().head(40)
    broken = tmp_path / "broken.png"
    broken.write_bytes(Path(rows.loc[3, "path"]).read_bytes()[:200])  # a header and no pixels
    rows.loc[3, "path"] = str(broken)
    with pytest.raises(UnreadableImage, match="broken.png cannot be decoded"):
        prepared_array(rows, Preprocessor.from_config(PREPROCESS, 3))
    assert not list(workspace.cache_dir("arrays").iterdir())
