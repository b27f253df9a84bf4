"""Core refuses what a role may not do, whatever a page shows: each gated function called directly
as a viewer (and as an annotator where it needs an admin) raises a plain PermissionError before it
changes or hands out anything."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core import annotations, bundle, predict, prediction_jobs, registry, roles
from core.export import export_preprocessed
from core.registry import DEMO_DATASETS
from core.review import write_corrected_labels
from core.scanning import scan

DEMO = next(iter(DEMO_DATASETS.values()))


@pytest.fixture
def store(lumen_home):
    return annotations.open_store(f"sqlite:///{lumen_home / 'annotations.db'}")


@pytest.fixture
def any_run(lumen_home) -> Path:
    """A path that need not be a run: the check comes before anything is read."""
    return lumen_home / "runs" / "not-read"


def gated_calls(store, run_dir: Path, out: Path):
    """(what, least role, call taking `who`) for every gated core function."""
    manifest = scan(DEMO)
    return [
        ("add a dataset", "admin", lambda who: registry.add_dataset("mine", DEMO, who=who)),
        ("remove a dataset", "admin", lambda who: registry.remove_dataset("mine", who=who)),
        ("export a preprocessed copy", "admin", lambda who: export_preprocessed(manifest, out / "export", 16, who=who)),
        ("write corrected labels", "admin",
         lambda who: annotations.corrected_labels_csv(store, "ds", manifest, out / "labels.csv", who=who)),
        ("write a run's corrected labels", "admin",
         lambda who: write_corrected_labels(store, run_dir, out / "run-labels.csv", who=who)),
        ("bundle a model", "admin", lambda who: bundle.write_bundle(run_dir, out / "bundle", who=who)),
        ("predict", "admin", lambda who: predict.predict_source(run_dir, DEMO, "new", who=who)),
        ("launch a prediction job", "admin", lambda who: prediction_jobs.launch(run_dir, DEMO, "new", who)),
        ("download annotations", "annotator", lambda who: annotations.annotations_bytes(store, None, who=who)),
        ("export annotations", "annotator",
         lambda who: annotations.export_annotations(store, None, out / "notes.csv", who=who)),
    ]


def _weaker_roles(least: str) -> list[str]:
    return list(roles.ROLES[:roles.ROLES.index(least)])


def test_each_gated_call_is_refused_below_its_role_and_changes_nothing(store, any_run, tmp_path, lumen_home):
    out = tmp_path / "out"
    out.mkdir()
    refused = 0
    for what, least, call in gated_calls(store, any_run, out):
        for role in _weaker_roles(least):
            with pytest.raises(PermissionError, match=f"cannot .*needs the {least} role"):
                call(roles.Identity("someone@lab.org", role))
            refused += 1
        assert list(out.iterdir()) == [], f"{what}: a refused call wrote files"
    assert refused == 2 * 8 + 2
    assert "mine" not in registry.list_datasets()
    assert not any_run.exists()


def test_an_unknown_role_is_refused_too(store, any_run, tmp_path):
    for _, _, call in gated_calls(store, any_run, tmp_path):
        with pytest.raises(PermissionError, match="Unknown role"):
            call(roles.Identity("x", "superuser"))


def test_the_allowed_roles_get_through(store, tmp_path):
    registry.add_dataset("mine", DEMO, who=roles.Identity("boss@lab.org", "admin"))
    assert "mine" in registry.list_datasets()
    registry.remove_dataset("mine", who=roles.operator())
    assert "mine" not in registry.list_datasets()
    store.annotate("ds", "a", "reader@lab.org", label="GS", classes=["GS", "nonGS"], role="annotator")
    data, rows = annotations.annotations_bytes(store, "ds", who=roles.Identity("reader@lab.org", "annotator"))
    assert rows == 1 and "reader@lab.org" in data.decode()
    assert annotations.export_annotations(store, "ds", tmp_path / "n.csv", who="annotator") == 1
    assert len(pd.read_csv(tmp_path / "n.csv")) == 1


def test_the_command_line_acts_as_the_operator_at_the_shell():
    import getpass

    assert roles.operator() == roles.Identity(getpass.getuser(), roles.TRUSTED_ROLE)
    assert roles.may(roles.operator(), "export data")
