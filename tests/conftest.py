"""Shared fixtures: a private workspace per test and real image files in every mode labs produce."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def lumen_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("lumen-home")
    monkeypatch.setenv("LUMEN_HOME", str(home))
    return home


@dataclass(frozen=True)
class CliResult:
    """What `python -m core ...` gave: its exit code and what it printed."""
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys) -> Callable[..., CliResult]:
    """`python -m core ARGS` run in this process (``core.__main__.main``), with its output captured."""
    from core.__main__ import main

    def run(*args: object) -> CliResult:
        capsys.readouterr()  # what the test printed before is not the command's
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exc:  # argparse refusing the arguments, as the process would exit
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(code, out, err)
    return run


def gradient(width: int, height: int) -> np.ndarray:
    """An RGB image whose pixels tell where they came from (x in red, y in green)."""
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return np.stack([x, y, np.full_like(x, 128)], axis=2)


def write_mode_zoo(folder: Path) -> dict[str, Path]:
    """One file per colour mode and format a lab's scanner may produce, 40x30 pixels each."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(gradient(40, 30))
    files = {
        "rgb.jpg": rgb,
        "grey.png": rgb.convert("L"),
        "rgba.png": rgb.convert("RGBA"),
        "palette.png": rgb.convert("P"),
        "grey16.png": Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257),
        "cmyk.jpg": rgb.convert("CMYK"),
        "rgb.tif": rgb,
        "rgb.bmp": rgb,
    }
    paths = {}
    for name, img in files.items():
        paths[name] = folder / name
        img.save(paths[name])
    rotated = folder / "exif_rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (rotate 90 degrees clockwise)
    rgb.save(rotated, exif=exif)
    paths["exif_rotated.jpg"] = rotated
    return paths


def train_tiny_run(home: Path, name: str = "tiny", spec=None, epochs: int = 1, dataset_name: str = "g",
                   split: dict | None = None) -> Path:
    """A real run at 32 px on a demo dataset (default: the glomeruli), trained in this process
    into ``home``/runs/``name``; analysis tests need real predictions and checkpoints."""
    import json

    from core import rundir, train
    from core.registry import DEMO_DATASETS
    from core.runconfig import make_config

    spec = spec or next(iter(DEMO_DATASETS.values()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUMEN_HOME", str(home))
        config = make_config({"dataset": {"name": dataset_name, "source": spec.to_dict()},
                              "preprocess": {"size": 32}, "epochs": epochs, "batch_size": 64,
                              **({"split": split} if split else {})})
        run_dir = home / "runs" / name
        run_dir.mkdir(parents=True)
        rundir.config_path(run_dir).write_text(json.dumps(config))
        train.run(config, run_dir)
    return run_dir


def open_page(page: str, home: Path, monkeypatch, run: str, timeout: int = 180):
    """AppTest of one page with ``run`` chosen in the run picker; fails on any exception."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LUMEN_HOME", str(home))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    app.session_state["analysis_run"] = run
    app.switch_page(page)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def write_course_csv(folder: Path, per_class: int = 12) -> Path:
    """The course's layout: a CSV of `name,ground truth` (names without their extension, labels 0 and 1)
    lying beside the folder `images/` of its PNGs, here demo glomeruli spread over their slides."""
    images = folder / "images"
    images.mkdir(parents=True)
    rows = []
    for label, cls in ((0, "nonGS"), (1, "GS")):
        files = sorted((ROOT / "assets" / "demo" / "glomeruli" / "images" / cls).glob("*.jpg"))
        for path in files[:: len(files) // per_class][:per_class]:
            Image.open(path).save(images / f"{path.stem}.png")
            rows.append(f"{path.stem},{label}")
    csv = folder / "public.csv"
    csv.write_text("name,ground truth\n" + "\n".join(rows) + "\n")
    return csv


GLOMERULI_DEMO = ROOT / "assets" / "demo" / "glomeruli"
TRAIN_CENTRES = ("SESCAM", "VUHSK")
EXTERNAL_CENTRE = "SAS"


def centre_csvs(folder: Path) -> tuple[Path, Path]:
    """Two CSVs of the demo glomeruli with absolute image paths: the training centres (SESCAM,
    VUHSK) and every centre (SAS, the third, is external), each keeping the `center` column."""
    import pandas as pd

    table = pd.read_csv(GLOMERULI_DEMO / "labels.csv")
    table = table.assign(path=[str(GLOMERULI_DEMO / p) for p in table["path"]])[["path", "class", "slide_id",
                                                                                  "center"]]
    folder.mkdir(parents=True, exist_ok=True)
    train, every = folder / "two-centres.csv", folder / "all-centres.csv"
    table[table["center"].isin(TRAIN_CENTRES)].to_csv(train, index=False)
    table.to_csv(every, index=False)
    return train, every


def train_centre_run(home: Path, folder: Path, epochs: int = 2) -> tuple[Path, Path]:
    """A real run on the two training centres (grouped by slide), and the CSV of every centre."""
    from core.sources import SourceSpec

    train, every = centre_csvs(folder)
    spec = SourceSpec(path=str(train), kind="csv", path_column="path", label_column="class",
                      group_column="slide_id")
    return train_tiny_run(home, name="two-centres", spec=spec, epochs=epochs), every
