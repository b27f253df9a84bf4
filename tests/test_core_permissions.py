"""Core refuses what a role may not do, whatever a page shows: each gated function called directly
as a viewer (and as an annotator where it needs an admin) raises a plain PermissionError before it
changes or hands out anything."""
from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core import annotations, bundle, evaluation, predict, prediction_jobs, registry, roles, rundir, runs, slurm, study
from core.export import export_preprocessed
from core.registry import DEMO_DATASETS
from core.review import write_corrected_labels
from core.scanning import scan
from tests.conftest import ROOT
from tests.test_study import TINY

DEMO = next(iter(DEMO_DATASETS.values()))
ADMIN = roles.Identity("boss@lab.org", "admin")
CLASSES = ["GS", "nonGS"]


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


# ---------------------------------------------------------------- runs, studies, SLURM, annotations


@pytest.fixture
def sleeper():
    """A real process standing in for a run's trainer: a refused cancel must leave it running."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def runs_of_each_state(lumen_home, sleeper) -> dict[str, Path]:
    """Real run folders an admin created: one queued, one running (the sleeper as its pid), one
    cancelled, one queued for SLURM and never submitted, one finished."""
    made = dict(zip(["queued", "running", "cancelled", "slurm", "finished"],
                    runs.create_runs({**TINY, "repeats": 5}, who=ADMIN)))
    rundir.write_status(made["running"], state="running", pid=sleeper.pid, scheduler="local")
    rundir.write_status(made["cancelled"], state="cancelled")
    rundir.write_status(made["slurm"], state="queued", scheduler="slurm", slurm_job_id=None)
    rundir.write_status(made["finished"], state="finished")
    return made


def run_calls(made: dict[str, Path], store, study_dir: Path):
    """(what, least role, call taking `who`) for the run, study, SLURM and annotation functions."""
    spec = study.parse_spec({"base": TINY})
    return [
        ("create runs", "admin", lambda who: runs.create_runs(TINY, who=who)),
        ("launch a run", "admin", lambda who: runs.launch(made["queued"], who=who)),
        ("cancel a run", "admin", lambda who: runs.cancel(made["running"], who=who)),
        ("cancel a SLURM run", "admin", lambda who: runs.cancel(made["slurm"], who=who)),
        ("withdraw a SLURM job", "admin",
         lambda who: slurm.cancel(made["slurm"], rundir.read_status(made["slurm"]), who=who)),
        ("resume a run", "admin", lambda who: runs.resume(made["cancelled"], who=who)),
        ("delete a run", "admin", lambda who: runs.delete(made["finished"], who=who)),
        ("write a SLURM job", "admin", lambda who: slurm.write_sbatch(made["queued"], who=who, gpus=0)),
        ("submit a SLURM job", "admin", lambda who: slurm.submit(made["queued"], who=who, gpus=0)),
        ("create a study", "admin", lambda who: study.create_study(spec, who=who)),
        ("launch a study", "admin", lambda who: study.launch_study(study_dir, who=who)),
        ("save an operating point", "admin",
         lambda who: evaluation.save_operating_point(made["finished"], "GS", 0.3, "val", "youden", who=who)),
        ("label an item", "annotator",
         lambda who: store.annotate("ds", "a", "reader", label="GS", classes=CLASSES, role=roles.role_of(who))),
        ("clear a label", "annotator", lambda who: store.clear("ds", "a", "reader", role=roles.role_of(who))),
        ("adjudicate", "admin",
         lambda who: store.adjudicate("ds", "a", "reader", "GS", classes=CLASSES, role=roles.role_of(who))),
    ]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_run_study_slurm_and_annotation_calls_are_refused_below_their_role_and_change_nothing(
        store, runs_of_each_state, sleeper, lumen_home):
    study_dir = study.create_study(study.parse_spec({"base": TINY}), who=ADMIN)
    before = _snapshot(lumen_home)
    refused = 0
    for what, least, call in run_calls(runs_of_each_state, store, study_dir):
        for role in [*_weaker_roles(least), "superuser"]:
            expected = "Unknown role" if role == "superuser" else f"cannot .*needs the {least} role"
            with pytest.raises(PermissionError, match=expected):
                call(roles.Identity("someone@lab.org", role))
            refused += 1
        assert _snapshot(lumen_home) == before, f"{what}: a refused call changed the workspace"
    assert refused == 13 * 3 + 2 * 2
    assert sleeper.poll() is None, "a refused cancel stopped the run's process"
    assert store.count() == 0


def test_the_new_doors_take_the_identity_as_a_required_keyword():
    """No default to fall back on: a caller that forgets who is acting gets a TypeError, never a role."""
    doors = {runs.create_runs: "who", runs.launch: "who", runs.cancel: "who", runs.resume: "who",
             runs.delete: "who", slurm.write_sbatch: "who", slurm.submit: "who", slurm.cancel: "who",
             study.create_study: "who", study.launch_study: "who", evaluation.save_operating_point: "who",
             annotations.Store.annotate: "role", annotations.Store.clear: "role", annotations.Store.adjudicate: "role"}
    for function, name in doors.items():
        parameter = inspect.signature(function).parameters[name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, function.__qualname__
        assert parameter.default is inspect.Parameter.empty, function.__qualname__


@pytest.mark.slow
def test_an_admins_resume_is_recorded_and_its_training_process_lets_it_train(runs_of_each_state):
    run_dir = runs_of_each_state["cancelled"]
    runs.resume(run_dir, who=ADMIN)
    assert rundir.read_launcher(run_dir) == ADMIN
    final = runs.wait(run_dir, timeout=600)
    assert final["state"] == "finished", rundir.log_tail(run_dir)
    assert rundir.read_launcher(run_dir) == ADMIN


def test_the_training_process_refuses_a_run_whose_recorded_launcher_may_not_launch(runs_of_each_state):
    """The back door: a run folder that says a viewer launched it does not train, even started by hand."""
    run_dir = runs_of_each_state["queued"]
    rundir.write_launcher(run_dir, roles.Identity("vera@lab.org", "viewer"))
    result = subprocess.run([sys.executable, "-m", "core", "train", "--config", str(rundir.config_path(run_dir)),
                             "--run-dir", str(run_dir)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    status = rundir.read_status(run_dir)
    assert status["state"] == "failed"
    assert status["message"] == "A viewer cannot launch runs; that needs the admin role."
    assert rundir.read_metrics(run_dir).empty and not rundir.checkpoint_path(run_dir, "last").exists()
