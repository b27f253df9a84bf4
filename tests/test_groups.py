"""Groups read from file names, and the grouping a dataset's names suggest, on the shared data."""
import pandas as pd
import pytest

from core.groups import GROUP_PRESETS, file_stems, groups_from_names, suggest_grouping
from core.sources import SourceSpec, list_items
from tests.conftest import SHARED_DATA

NAMES = pd.Series(["GS/18-162_PAS_5of6_12.png", "18-162_PAS_5of6_13", "nonGS/19-001_HE_1of2_1.TIF", "plain.jpg"])


@pytest.mark.parametrize("preset, groups", [
    ("text before the first _", ["18-162", "18-162", "19-001", None]),
    ("text before the last _", ["18-162_PAS_5of6", "18-162_PAS_5of6", "19-001_HE_1of2", None]),
    ("text before the first -", ["18", "18", "19", None]),
    ("text before the last -", ["18", "18", "19", None]),
])
def test_presets_read_the_group_from_the_name_without_folders_or_extension(preset, groups):
    assert groups_from_names(NAMES, GROUP_PRESETS[preset]).tolist() == groups


def test_a_regular_expression_takes_its_one_capture_group():
    assert file_stems(NAMES).tolist() == ["18-162_PAS_5of6_12", "18-162_PAS_5of6_13", "19-001_HE_1of2_1", "plain"]
    assert groups_from_names(NAMES, r"_(\d)of\d_").tolist() == ["5", "5", "1", None]


@pytest.mark.parametrize("pattern, message", [("([a-z]", "not a valid regular expression"),
                                              (r"^\d+", "has 0 capture groups"),
                                              (r"(\d+)-(\d+)", "has 2 capture groups")])
def test_patterns_without_exactly_one_group_are_refused(pattern, message):
    with pytest.raises(ValueError, match=message):
        groups_from_names(NAMES, pattern)


def test_the_shared_glomeruli_names_suggest_their_slides():
    table = pd.read_csv(SHARED_DATA / "glomeruli" / "labels.csv")
    suggestion = suggest_grouping(table["path"], table["class"])
    assert suggestion.groups == table["slide_id"].nunique() == 31
    groups = groups_from_names(table["path"], suggestion.pattern)
    assert (groups == table["slide_id"]).all()  # the slide ids, not the centres before the first _


def test_the_blood_smears_of_bccd_are_suggested_from_their_crop_names():
    table = pd.read_csv(SHARED_DATA / "bccd_crops" / "labels.csv")
    suggestion = suggest_grouping(table["path"], table["cell_type"])
    assert suggestion.preset == "text before the last _"
    assert suggestion.groups == table["source_image"].nunique()


def test_a_prefix_that_is_the_class_is_not_suggested():
    listing = list_items(SourceSpec(str(SHARED_DATA / "blood_pbc")))  # BA_100102.jpg is a basophil
    assert suggest_grouping(listing["id"], listing["label"]) is None


def test_names_without_shared_prefixes_suggest_nothing():
    names = pd.Series([f"img{i:03d}.png" for i in range(50)])
    assert suggest_grouping(names, pd.Series(["a", "b"] * 25)) is None
