"""`python -m core scan` as a user runs it (``core.__main__.main`` in this process): JSON out, exit codes,
clear messages."""
import json

import pytest
from PIL import Image

from core.__main__ import main
from tests.conftest import SHARED_DATA, gradient, write_course_csv


def test_scan_csv_with_columns_prints_summary_json(cli):
    result = cli("scan", str(SHARED_DATA / "bccd_crops" / "labels.csv"), "--label-column", "cell_type",
                 "--group-column", "source_image", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["items"] == 1133
    assert summary["classes"] == {"Platelets": 361, "RBC": 400, "WBC": 372}
    assert summary["problems"] == []
    assert summary["sizes"]["width"]["min"] < summary["sizes"]["width"]["max"]
    assert summary["verified"] == 1133


def test_scan_lists_every_broken_file_with_a_reason(tmp_path, cli):
    folder = tmp_path / "cls"
    folder.mkdir()
    Image.fromarray(gradient(30, 30)).save(folder / "fine.png")
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    Image.fromarray(gradient(300, 200)).save(folder / "cut.jpg")
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    result = cli("scan", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    reasons = {p["path"].rsplit("/", 1)[-1]: p["reason"] for p in json.loads(result.stdout)["problems"]}
    assert set(reasons) == {"zero.png", "text.png", "cut.jpg"}
    assert all(reasons.values())
    summary = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert summary["imbalance_ratio"] is None  # one usable class: no ratio, and JSON null rather than NaN
    sizes = summary["sizes"]  # the truncated 300x200 file does not count
    assert sizes["width"]["max"] == sizes["height"]["max"] == 30


def test_scan_refuses_unreadable_sources_with_a_message(tmp_path, cli):
    missing = cli("scan", str(tmp_path / "nope"), "--json")
    assert missing.returncode != 0 and "No such file or folder" in missing.stderr
    empty = cli("scan", str(tmp_path), "--json")
    assert empty.returncode != 0 and "holds no images" in empty.stderr
    no_column = cli("scan", str(SHARED_DATA / "glomeruli" / "labels.csv"), "--label-column", "grade")
    assert no_column.returncode != 0 and "no label column 'grade'" in no_column.stderr


def test_scan_names_the_classes_of_an_npz(cli):
    npz = str(SHARED_DATA / "medmnist" / "breastmnist.npz")
    named = cli("scan", npz, "--class-names", "malignant, benign", "--no-verify", "--json")
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["classes"] == {"benign": 570, "malignant": 210}
    short = cli("scan", npz, "--class-names", "malignant", "--no-verify", "--json")
    assert short.returncode == 2 and short.stderr.startswith("error: 1 class names given")


def _demo_run_with_corrections():
    """The embedded demo run, with one item relabelled by two readers and one excluded by an admin."""
    from core import annotations, rundir
    from core.review import annotation_key

    run_dir = rundir.demo_runs()[0]
    key = annotation_key(rundir.read_config(run_dir))
    first, second = rundir.read_predictions(run_dir).query("label == 'GS'")["item_id"].iloc[:2]
    store = annotations.open_store()
    for reader in ("Dr A", "Dr B"):
        store.annotate(key, first, reader, label="nonGS", classes=["GS", "nonGS"], role="annotator")
    store.adjudicate(key, second, "Dr Admin", "exclude", classes=["GS", "nonGS"], role="admin")
    return run_dir, store, key, first, second


def test_corrected_labels_from_the_command_line_are_the_review_pages_file(tmp_path, capsys):
    import pandas as pd

    from core import rundir
    from core.__main__ import main
    from core.annotations import corrected_labels_csv
    from core.review import with_predicted_items
    from core.runconfig import dataset_spec
    from core.scanning import scan

    run_dir, store, key, relabelled, excluded = _demo_run_with_corrections()
    out = tmp_path / "labels.csv"
    assert main(["annotations", "corrected-labels", str(run_dir), "--out", str(out)]) == 0
    assert "1 relabelled, 1 excluded" in capsys.readouterr().out
    # what the Review page hands corrected_labels_csv: the manifest with every predicted item, under the dataset key
    items = with_predicted_items(scan(dataset_spec(rundir.read_config(run_dir))), rundir.read_predictions(run_dir))
    corrected_labels_csv(store, key, items, tmp_path / "page.csv", who="admin")
    assert out.read_bytes() == (tmp_path / "page.csv").read_bytes()
    table = pd.read_csv(out)
    assert len(table) == len(items) - 1 and table["mask_path"].notna().all()  # all but the excluded one
    by_path = table.set_index("path")
    assert by_path.filter(like=relabelled, axis=0)["label"].tolist() == ["nonGS"]
    assert by_path.filter(like=excluded, axis=0).empty


def test_corrected_labels_of_no_run_exit_2_with_a_message(tmp_path, capsys):
    from core.__main__ import main

    missing = tmp_path / "no-such-run"
    assert main(["annotations", "corrected-labels", str(missing), "--out", str(tmp_path / "x.csv")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "is not a run directory" in error and str(missing) in error
    assert not (tmp_path / "x.csv").exists()


def _scan_json(capsys, *args) -> dict:
    assert main(["scan", *args, "--no-verify", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_scan_a_csv_beside_its_image_folder_with_class_names(tmp_path, capsys, monkeypatch):
    csv = write_course_csv(tmp_path)
    missing = _scan_json(capsys, str(csv))
    assert len(missing["problems"]) == 24 and missing["usable"] == 0
    monkeypatch.chdir(tmp_path)  # --image-root is relative to where the command runs
    named = _scan_json(capsys, str(csv), "--image-root", "images", "--class-names", "0=nonGS, 1=GS")
    assert named["problems"] == [] and named["classes"] == {"GS": 12, "nonGS": 12}
    in_order = _scan_json(capsys, str(csv), "--image-root", "images", "--class-names", "nonGS, GS")
    assert in_order["classes"] == named["classes"]


@pytest.mark.parametrize("names, message", [("nonGS", "error: 1 class names given, but the data has 2 labels"),
                                            ("0=nonGS", "leave out label 1"), ("GS, GS", "GS is given twice")])
def test_scan_refuses_class_names_that_do_not_fit(tmp_path, capsys, names, message):
    csv = write_course_csv(tmp_path, per_class=2)
    assert main(["scan", str(csv), "--image-root", str(tmp_path / "images"), "--class-names", names]) == 2
    assert message in capsys.readouterr().err


def test_scan_reads_groups_from_names_and_takes_no_label_column(tmp_path, capsys):
    csv, images = write_course_csv(tmp_path), str(tmp_path / "images")
    grouped = _scan_json(capsys, str(csv), "--image-root", images, "--group-pattern", "^(.+)-")
    assert grouped["groups"] == len({line.rsplit("-", 1)[0] for line in csv.read_text().splitlines()[1:]})
    unlabelled = _scan_json(capsys, str(csv), "--image-root", images, "--label-column", "")
    assert unlabelled["unlabelled"] == 24 and unlabelled["classes"] == {}
    assert main(["scan", str(csv), "--group-pattern", "^(.+"]) == 2
    assert "not a valid regular expression" in capsys.readouterr().err
