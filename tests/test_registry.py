"""The dataset registry: demos always there, added datasets remembered, concurrent adds all land."""
import threading

import pytest

from core import registry
from core.sources import SourceError, SourceSpec
from tests.conftest import SHARED_DATA


def test_demos_are_listed_and_readable():
    datasets = registry.list_datasets()
    assert list(datasets)[: len(registry.DEMO_DATASETS)] == list(registry.DEMO_DATASETS)
    for spec in registry.DEMO_DATASETS.values():
        from core.sources import list_items
        assert len(list_items(spec)) > 100


def test_added_dataset_is_remembered_with_an_absolute_path():
    registry.add_dataset("pbc", SourceSpec(str(SHARED_DATA / "blood_pbc")))
    spec = registry.list_datasets()["pbc"]
    assert spec.path == str((SHARED_DATA / "blood_pbc").resolve())
    registry.remove_dataset("pbc")
    assert "pbc" not in registry.list_datasets()


@pytest.mark.parametrize("name, spec, message", [
    ("", SourceSpec(str(SHARED_DATA / "blood_pbc")), "Give the dataset a name"),
    ("x", SourceSpec("/nowhere/at/all"), "No such file or folder"),
    (next(iter(registry.DEMO_DATASETS)), SourceSpec(str(SHARED_DATA / "blood_pbc")), "demo dataset"),
])
def test_bad_additions_are_refused(name, spec, message):
    with pytest.raises(SourceError, match=message):
        registry.add_dataset(name, spec)


def test_concurrent_adds_all_land():
    spec = SourceSpec(str(SHARED_DATA / "medmnist" / "breastmnist.npz"))
    threads = [threading.Thread(target=registry.add_dataset, args=(f"set {i}", spec)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {f"set {i}" for i in range(8)} <= set(registry.list_datasets())
