"""Shared fixtures: a private workspace per test and real image files in every mode labs produce."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def lumen_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("lumen-home")
    monkeypatch.setenv("LUMEN_HOME", str(home))
    return home


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
        "grey16.png": Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)),
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
