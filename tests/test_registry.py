"""The dataset registry: demos always there, added datasets remembered, concurrent adds all land."""
import json
import threading

import pytest

from core import registry
from core.sources import SourceError, SourceSpec, list_items
from tests.conftest import SHARED_DATA, write_course_csv


def test_demos_are_listed_and_readable():
    datasets = registry.list_datasets()
    assert list(datasets)[: len(registry.DEMO_DATASETS)] == list(registry.DEMO_DATASETS)
    for spec in registry.DEMO_DATASETS.values():
        assert len(list_items(spec)) > 100


def test_added_dataset_is_remembered_with_an_absolute_path():
    registry.add_dataset("pbc", SourceSpec(str(SHARED_DATA / "blood_pbc")), who="admin")
    spec = registry.list_datasets()["pbc"]
    assert spec.path == str((SHARED_DATA / "blood_pbc").resolve())
    registry.remove_dataset("pbc", who="admin")
    assert "pbc" not in registry.list_datasets()


@pytest.mark.parametrize("name, spec, message", [
    ("", SourceSpec(str(SHARED_DATA / "blood_pbc")), "Give the dataset a name"),
    ("x", SourceSpec("/nowhere/at/all"), "No such file or folder"),
    (next(iter(registry.DEMO_DATASETS)), SourceSpec(str(SHARED_DATA / "blood_pbc")), "demo dataset"),
])
def test_bad_additions_are_refused(name, spec, message):
    with pytest.raises(SourceError, match=message):
        registry.add_dataset(name, spec, who="admin")


def test_concurrent_adds_all_land():
    spec = SourceSpec(str(SHARED_DATA / "medmnist" / "breastmnist.npz"))
    threads = [threading.Thread(target=registry.add_dataset, args=(f"set {i}", spec), kwargs={"who": "admin"})
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {f"set {i}" for i in range(8)} <= set(registry.list_datasets())


def test_entries_written_before_class_names_image_folders_and_group_patterns_still_load(lumen_home):
    old = {"path": str((SHARED_DATA / "medmnist" / "breastmnist.npz").resolve()), "kind": "auto", "path_column": None,
           "label_column": None, "group_column": None, "split_column": None, "mask_column": None,
           "classes": None, "label_names": ["malignant", "benign"]}
    (lumen_home / "datasets.json").write_text(json.dumps({"breast": old}))
    spec = registry.list_datasets()["breast"]
    assert spec.class_names == (("0", "malignant"), ("1", "benign"))
    assert set(list_items(spec)["label"]) == {"malignant", "benign"}
    registry.add_dataset("again", spec, who="admin")  # rewritten in the new form, read back the same
    stored = json.loads((lumen_home / "datasets.json").read_text())["again"]
    assert stored["class_names"] == {"0": "malignant", "1": "benign"} and "label_names" not in stored
    assert registry.list_datasets()["again"] == spec


def test_an_added_csv_keeps_its_image_folder_relative_to_the_csv(tmp_path):
    csv = write_course_csv(tmp_path / "course", per_class=2)
    registry.add_dataset("course", SourceSpec(str(csv), image_root="images"), who="admin")
    moved = tmp_path / "moved"
    (tmp_path / "course").rename(moved)  # the dataset folder moves with its CSV
    spec = registry.list_datasets()["course"]
    assert spec.image_root == "images"
    relisted = list_items(SourceSpec.from_dict({**spec.to_dict(), "path": str(moved / "public.csv")}))
    assert relisted["problem"].isna().all()
