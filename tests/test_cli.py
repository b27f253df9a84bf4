"""`python -m core scan` as a user runs it: JSON out, exit codes, clear messages."""
import json
import subprocess
import sys

import pytest

from PIL import Image

from tests.conftest import ROOT, SHARED_DATA, gradient


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_scan_csv_with_columns_prints_summary_json():
    result = run_cli("scan", str(SHARED_DATA / "bccd_crops" / "labels.csv"), "--label-column", "cell_type",
                     "--group-column", "source_image", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["items"] == 1133
    assert summary["classes"] == {"Platelets": 361, "RBC": 400, "WBC": 372}
    assert summary["problems"] == []
    assert summary["sizes"]["width"]["min"] < summary["sizes"]["width"]["max"]
    assert summary["verified"] == 1133


def test_scan_lists_every_broken_file_with_a_reason(tmp_path):
    folder = tmp_path / "cls"
    folder.mkdir()
    Image.fromarray(gradient(30, 30)).save(folder / "fine.png")
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    Image.fromarray(gradient(300, 200)).save(folder / "cut.jpg")
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    result = run_cli("scan", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    reasons = {p["path"].rsplit("/", 1)[-1]: p["reason"] for p in json.loads(result.stdout)["problems"]}
    assert set(reasons) == {"zero.png", "text.png", "cut.jpg"}
    assert all(reasons.values())
    summary = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert summary["imbalance_ratio"] is None  # one usable class: no ratio, and JSON null rather than NaN
    sizes = summary["sizes"]  # the truncated 300x200 file does not count
    assert sizes["width"]["max"] == sizes["height"]["max"] == 30


def test_scan_refuses_unreadable_sources_with_a_message(tmp_path):
    missing = run_cli("scan", str(tmp_path / "nope"), "--json")
    assert missing.returncode != 0 and "No such file or folder" in missing.stderr
    empty = run_cli("scan", str(tmp_path), "--json")
    assert empty.returncode != 0 and "holds no images" in empty.stderr
    no_column = run_cli("scan", str(SHARED_DATA / "glomeruli" / "labels.csv"), "--label-column", "grade")
    assert no_column.returncode != 0 and "no label column 'grade'" in no_column.stderr


def test_scan_names_the_classes_of_an_npz():
    npz = str(SHARED_DATA / "medmnist" / "breastmnist.npz")
    named = run_cli("scan", npz, "--class-names", "malignant, benign", "--no-verify", "--json")
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["classes"] == {"benign": 570, "malignant": 210}
    short = run_cli("scan", npz, "--class-names", "malignant", "--no-verify", "--json")
    assert short.returncode == 2 and short.stderr.startswith("error: 1 class names given")
