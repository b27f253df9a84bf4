"""`python -m core predict` and `evaluate --set`: a run's model on new images, in process."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from core import evaluation, rundir
from core.__main__ import main
from core.images import load_array
from core.predict import SOURCE_COLUMNS, class_codes
from core.registry import DEMO_DATASETS
from core.runmodel import load_run_model, preprocessor_of
from core.workspace import DEMO_DIR
from tests.conftest import train_tiny_run

GLOMERULI = next(iter(DEMO_DATASETS.values()))
DEMO_IMAGES = sorted((DEMO_DIR / "glomeruli" / "images").rglob("*.jpg"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("predict-home"))


@pytest.fixture
def own_run(run, tmp_path):
    """A copy of the run, for tests that save an operating point or sets of their own."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def unlabelled_folder(folder, n=7):
    """n demo glomeruli as PNGs in one flat folder, plus a truncated PNG and a text file named .png."""
    folder.mkdir()
    for path in DEMO_IMAGES[::len(DEMO_IMAGES) // n][:n]:
        Image.open(path).save(folder / f"{path.stem}.png")
    Image.open(DEMO_IMAGES[-1]).save(folder / "cut.png")
    data = (folder / "cut.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    (folder / "notes.png").write_text("not an image")
    return folder


def test_course_csv_of_an_unlabelled_folder_has_one_row_per_good_file(own_run, tmp_path, capsys):
    folder = unlabelled_folder(tmp_path / "new cases")
    out = tmp_path / "course.csv"
    code = main(["predict", str(own_run), str(folder), "--format", "course", "--out", str(out), "--batch-size", "3"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert out.read_text().splitlines()[0] == "Image,Label"
    course = pd.read_csv(out)
    good = sorted(p.name for p in folder.iterdir() if p.name not in ("cut.png", "notes.png"))
    assert sorted(course["Image"]) == good
    skipped = [line for line in printed.out.splitlines() if "skipped:" in line]
    assert len(skipped) == 2
    assert any("cut.png" in line and "truncated" in line for line in skipped)
    assert any("notes.png" in line and "not an image" in line for line in skipped)
    assert "predicting" in printed.err  # the progress bar
    stored = rundir.read_prediction_set(own_run, "new-cases").set_index("path")
    # no saved operating point: the rarer class of the run's own labels (GS) at 0.5
    expected = np.where(stored["prob_GS"] >= 0.5, 0, 1)  # the index of GS, else of nonGS
    by_name = dict(zip(stored.index.map(lambda p: p.rsplit("/", 1)[-1]), expected, strict=True))
    assert course.set_index("Image")["Label"].to_dict() == by_name


def test_stored_set_reads_back_with_the_runs_columns_and_single_image_probabilities(own_run, tmp_path, capsys):
    folder = unlabelled_folder(tmp_path / "flat")
    assert main(["predict", str(own_run), str(folder), "--name", "ward-7", "--out", str(tmp_path / "p.csv"),
                 "--batch-size", "2"]) == 0
    assert rundir.list_prediction_sets(own_run) == ["ward-7"]
    stored = rundir.read_prediction_set(own_run, "ward-7")
    own = rundir.read_predictions(own_run)
    assert list(stored.columns[:4]) == list(own.columns[:4]) == ["item_id", "split", "label", "group"]
    assert set(stored.columns) == set(own.columns) | set(SOURCE_COLUMNS)
    assert rundir.classes_of(stored) == rundir.classes_of(own)
    assert set(stored["split"]) == {"ward-7"} and stored["label"].isna().all()
    assert len(stored) == 7 and set(stored["source"]) == {str(folder.resolve())}
    model, ckpt = load_run_model(own_run)
    with torch.no_grad():  # one image at a time through the checkpoint's own Preprocessor
        single = np.concatenate([torch.softmax(model(preprocessor_of(ckpt)(load_array(p))), 1).numpy()
                                 for p in stored["path"]])
    np.testing.assert_allclose(stored[rundir.prob_columns(["GS", "nonGS"])].to_numpy(), single, atol=1e-6)
    lumen = pd.read_csv(tmp_path / "p.csv")
    assert list(lumen.columns) == ["file", "predicted", "prob_GS", "prob_nonGS", "decision"]
    assert sorted(lumen["file"]) == sorted(stored["item_id"])


def test_threshold_and_saved_temperature_decide_the_csv(own_run, tmp_path, capsys):
    folder = unlabelled_folder(tmp_path / "flat")
    evaluation.save_operating_point(own_run, "nonGS", 0.4, "val", "test point", temperature=3.0, who="admin")
    assert main(["predict", str(own_run), str(folder), "--out", str(tmp_path / "saved.csv")]) == 0
    assert "nonGS at threshold 0.4000 (saved, temperature 3)" in capsys.readouterr().out
    saved = pd.read_csv(tmp_path / "saved.csv")
    scaled = evaluation.apply_temperature(saved[["prob_GS", "prob_nonGS"]].to_numpy(), 3.0)[:, 1]
    assert (saved["decision"] == np.where(scaled >= 0.4, "nonGS", "GS")).all()
    assert main(["predict", str(own_run), str(folder), "--threshold", "0.9", "--out", str(tmp_path / "t.csv")]) == 0
    given = pd.read_csv(tmp_path / "t.csv")
    assert (given["decision"] == np.where(given["prob_nonGS"] >= 0.9, "nonGS", "GS")).all()
    assert (given["predicted"] == np.where(given["prob_nonGS"] > given["prob_GS"], "nonGS", "GS")).all()


def test_evaluate_set_scores_the_labelled_rows(own_run, tmp_path, capsys):
    source = GLOMERULI.path
    assert main(["predict", str(own_run), source, "--kind", "csv", "--label-column", "class", "--group-column",
                 "slide_id", "--name", "demo-glomeruli", "--out", str(tmp_path / "g.csv")]) == 0
    stored = rundir.read_prediction_set(own_run, "demo-glomeruli")
    assert len(stored) == 300 and set(stored["label"]) == {"GS", "nonGS"}
    # the run's own items through predict give the run's own probabilities: the same model and input
    own = rundir.read_predictions(own_run).set_index("item_id")
    again = stored.set_index("item_id").loc[own.index]
    np.testing.assert_allclose(again[["prob_GS", "prob_nonGS"]], own[["prob_GS", "prob_nonGS"]], atol=1e-5)
    assert (again["group"] == own["group"]).all()
    capsys.readouterr()
    assert main(["evaluate", str(own_run), "--set", "demo-glomeruli", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "demo-glomeruli" and report["n"] == 300 and report["positives"] == 60
    assert report["roc_auc"] == pytest.approx(roc_auc_score(stored["label"] == "GS", stored["prob_GS"]))
    assert sum(map(sum, report["confusion_matrix"])) == 300
    assert "sensitivity" in report["intervals_95"]


def test_evaluate_set_without_labels_and_unknown_sets_say_so(own_run, tmp_path, capsys):
    folder = unlabelled_folder(tmp_path / "flat")
    assert main(["predict", str(own_run), str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(own_run), "--set", "flat"]) == 2
    assert "error: The prediction set has no labelled rows" in capsys.readouterr().err
    assert main(["evaluate", str(own_run), "--set", "nope"]) == 2
    assert "has no prediction set 'nope'; it has flat." in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--name", "test"], "one of the run's own splits"),
    (["--name", "../escape"], "plain name"),
    (["--threshold", "1.5"], "between 0 and 1"),
])
def test_bad_input_is_a_plain_error(own_run, tmp_path, capsys, args, message):
    folder = unlabelled_folder(tmp_path / "flat")
    assert main(["predict", str(own_run), str(folder), "--out", str(tmp_path / "p.csv"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not rundir.list_prediction_sets(own_run)


def test_missing_sources_unfinished_runs_and_folders_without_images_fail_plainly(own_run, tmp_path, capsys):
    assert main(["predict", str(own_run), str(tmp_path / "missing")]) == 2
    assert "No such file or folder" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    assert main(["predict", str(unfinished), str(DEMO_IMAGES[0].parent)]) == 2
    assert "has not finished" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_text("no")
    assert main(["predict", str(own_run), str(broken)]) == 2
    assert "No image of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", str(own_run), str(broken), "--threshold", "high"])


def test_one_vs_rest_takes_the_positive_class_at_its_threshold_else_the_likeliest_other():
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.45, 0.1, 0.45], [0.1, 0.8, 0.1]])
    assert evaluation.one_vs_rest(probs, 1, 0.3).tolist() == [1, 1, 0, 1]
    assert evaluation.one_vs_rest(probs, 2, 0.5).tolist() == [0, 2, 0, 1]


def test_course_labels_are_the_class_numbers_when_the_classes_are_numbers():
    assert class_codes(["0", "1", "10", "2"]) == [0, 1, 10, 2]
    assert class_codes(["GS", "nonGS"]) == [0, 1]
