"""The app's prediction job: a real background process on a real run, its job file and its failures."""
import os
import signal

import pandas as pd
import pytest
from PIL import Image

from core import prediction_jobs, rundir
from core.roles import Identity
from core.sources import SourceError, SourceSpec
from tests.conftest import EXTERNAL_CENTRE, TRAIN_CENTRES, train_centre_run

ADMIN = Identity("ann", "admin")


@pytest.fixture(scope="module")
def centre_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("jobs-home")
    return train_centre_run(home, home / "csv")


@pytest.fixture
def run(centre_run, lumen_home, tmp_path):
    """A copy of the two-centre run in this test's workspace, and the CSV of every centre."""
    import shutil

    run_dir, every = centre_run
    copy = lumen_home / "runs" / "two-centres"
    shutil.copytree(run_dir, copy)
    return copy, every


def with_broken_rows(every, folder):
    """The every-centre CSV plus a truncated image and a text file named .png."""
    folder.mkdir()
    table = pd.read_csv(every)
    Image.open(table["path"].iloc[0]).save(folder / "cut.png")
    data = (folder / "cut.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 3])
    (folder / "notes.png").write_text("not an image")
    extra = pd.DataFrame({"path": [str(folder / "cut.png"), str(folder / "notes.png")], "class": ["GS", "nonGS"],
                          "slide_id": "x", "center": EXTERNAL_CENTRE})
    out = folder / "with-broken.csv"
    pd.concat([table, extra]).to_csv(out, index=False)
    return out, len(table)


def test_job_predicts_in_the_background_with_progress_skips_bad_files_and_keeps_the_centre(run, tmp_path):
    run_dir, every = run
    source, good = with_broken_rows(every, tmp_path / "broken")
    pid = prediction_jobs.launch(run_dir, SourceSpec(path=str(source), kind="csv"), "every-centre", ADMIN)
    assert pid != os.getpid()
    final = prediction_jobs.wait(run_dir, "every-centre", timeout=300)
    assert final["state"] == "finished", final
    # the header scan refuses the text file; the truncated PNG's header reads, and its decode fails
    assert final["done"] == final["total"] == good + 1
    assert sorted(s["path"].rsplit("/", 1)[-1] for s in final["skipped"]) == ["cut.png", "notes.png"]
    table = rundir.read_prediction_set(run_dir, "every-centre")
    assert len(table) == final["items"] == final["labelled"] == good
    centre = f"{rundir.SOURCE_COLUMN_PREFIX}center"
    assert set(table[centre]) == {*TRAIN_CENTRES, EXTERNAL_CENTRE}
    by_path = pd.read_csv(every).set_index("path")["center"]
    assert (table.set_index("path")[centre] == by_path.loc[table["path"]].to_numpy()).all()
    assert "every-centre" in prediction_jobs.jobs(run_dir)


def test_only_a_role_that_may_launch_runs_starts_a_job(run):
    run_dir, every = run
    for who in (Identity("vera", "viewer"), Identity("ann", "annotator"), "nobody"):
        with pytest.raises(PermissionError):
            prediction_jobs.launch(run_dir, SourceSpec(path=str(every)), "refused", who)
    assert not rundir.prediction_job_path(run_dir, "refused").exists()


def test_a_missing_source_or_a_bad_name_is_refused_before_anything_starts(run, tmp_path):
    run_dir, every = run
    with pytest.raises(SourceError, match="No such file"):
        prediction_jobs.launch(run_dir, SourceSpec(path=str(tmp_path / "gone.csv")), "gone", ADMIN)
    with pytest.raises(ValueError, match="plain name"):
        prediction_jobs.launch(run_dir, SourceSpec(path=str(every)), "../escape", ADMIN)
    with pytest.raises(ValueError, match="own splits"):
        prediction_jobs.launch(run_dir, SourceSpec(path=str(every)), "test", ADMIN)


def test_a_job_that_fails_says_why_with_its_output(run):
    run_dir, every = run
    spec = SourceSpec(path=str(every), kind="csv", label_column="no such column")
    prediction_jobs.launch(run_dir, spec, "wrong-column", ADMIN)
    final = prediction_jobs.wait(run_dir, "wrong-column", timeout=300)
    assert final["state"] == "failed"
    assert "no label column 'no such column'" in final["message"]
    assert "SourceError" in final["log_tail"]
    assert "wrong-column" not in rundir.list_prediction_sets(run_dir)


def test_a_killed_job_is_found_dead_and_marked_failed(run):
    run_dir, every = run
    pid = prediction_jobs.launch(run_dir, SourceSpec(path=str(every), kind="csv"), "killed", ADMIN)
    os.kill(pid, signal.SIGKILL)
    final = prediction_jobs.wait(run_dir, "killed", timeout=60)
    assert final["state"] == "failed"
    assert "died without finishing" in final["message"]


def test_an_active_job_name_cannot_be_launched_twice(run):
    run_dir, every = run
    spec = SourceSpec(path=str(every), kind="csv")
    prediction_jobs.launch(run_dir, spec, "twice", ADMIN)
    try:
        with pytest.raises(ValueError, match="still running"):
            prediction_jobs.launch(run_dir, spec, "twice", ADMIN)
    finally:
        assert prediction_jobs.wait(run_dir, "twice", timeout=300)["state"] == "finished"
