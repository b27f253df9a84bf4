"""Predict with a Lumen model bundle, without Lumen: needs only Python 3.10+, torch, pillow and numpy.

    python predict.py IMAGE_OR_FOLDER... [--out predictions.csv] [--threshold T] [--batch-size 64]

It reads model.pt (TorchScript), preprocessor.json, classes.json and operating_point.json from its
own folder and writes a CSV with one row per image: file (the path within the folder given, or the
path as given), predicted (the most probable class), prob_<class> per class (the model's softmax)
and decision (the class at the operating point: the positive class where its score, scaled by the
stored temperature, reaches the threshold, else the most probable other class; --threshold T
decides on the raw scores instead). Files that cannot be read are listed on stderr and skipped.

This file is a copy of Lumen's core/bundle_predict.py; it repeats, for image files (PNG, JPEG,
TIFF, BMP; not MedMNIST .npz), what Lumen does before its model, so that both give the same
probabilities:

- decoding as core/images.py does: EXIF rotation applied; grey (L, 1) stays grey; RGBA, LA and
  palette images with transparency composited on white; other palettes, CMYK, YCbCr, LAB and HSV
  converted to RGB; 16- and 32-bit images (I;16, I;16B, I;16L, I, F) scaled so that the brightest
  pixel is 255;
- the geometry of core/preprocess.py: pad to square (zero, white, edge, reflect or the image's
  mean colour, centred, an odd pixel after), stretch, or centre crop; Pillow's bilinear resize
  with reducing_gap=3.0; grey repeated to three channels or colour averaged to one;
- pixels scaled to [0, 1], then normalised with the stored per-channel mean and std.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
MAX_PIXELS = 256_000_000  # Lumen's safety limit against decompression bombs
Image.MAX_IMAGE_PIXELS = None  # the limit above applies instead, as a skipped file rather than a crash
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
_CONSTANT_FILLS = {"zero": 0, "white": 255}


# ---------------------------------------------------------------- decoding (core/images.py)


def to_uint8_array(img: Image.Image) -> np.ndarray:
    """An HxW (grey) or HxWx3 (colour) uint8 array, as a person sees the image in a viewer."""
    img = ImageOps.exif_transpose(img)
    if img.mode in _WIDE_MODES:
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max()
        scaled = arr * (255.0 / top) if top > 0 else arr
        return np.clip(scaled, 0, 255).astype(np.uint8)
    if img.mode == "1":
        img = img.convert("L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "LA":
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        img = background
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def load_array(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > MAX_PIXELS:
                raise ValueError(f"image too large: {img.size[0]}x{img.size[1]} pixels")
            img.load()
            return to_uint8_array(img)


# ---------------------------------------------------------------- geometry (core/preprocess.py)


def _halves(gap: int) -> tuple[int, int]:
    return gap // 2, gap - gap // 2


def pad_to_square(arr: np.ndarray, mode: str) -> np.ndarray:
    height, width = arr.shape[:2]
    side = max(height, width)
    top, bottom = _halves(side - height)
    left, right = _halves(side - width)
    if mode in ("edge", "reflect"):
        widths = [(top, bottom), (left, right)] + [(0, 0)] * (arr.ndim - 2)
        return np.pad(arr, widths, mode="edge" if mode == "edge" else "reflect")
    if mode == "mean":
        fill: Any = np.rint(arr.reshape(-1, arr.shape[2]).mean(axis=0) if arr.ndim == 3 else arr.mean())
    else:
        fill = _CONSTANT_FILLS[mode]
    square = np.empty((side, side) + arr.shape[2:], dtype=np.uint8)
    square[...] = fill
    square[top:top + height, left:left + width] = arr
    return square


def centre_crop(arr: np.ndarray) -> np.ndarray:
    height, width = arr.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return arr[top:top + side, left:left + side]


def model_pixels(arr: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
    """S x S x C uint8: squared, resized and given the model's channels."""
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"the image is empty (shape {arr.shape})")
    if prep["fit"] == "pad":
        arr = pad_to_square(arr, prep["pad_mode"])
    elif prep["fit"] == "crop":
        arr = centre_crop(arr)
    size = int(prep["size"])
    if arr.shape[:2] != (size, size):
        arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))
    if prep["channels"] == 3:
        return np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr
    return arr[:, :, None] if arr.ndim == 2 else arr.mean(axis=2, keepdims=True).astype(np.uint8)


def model_input(pixels: list[np.ndarray], prep: dict[str, Any]) -> torch.Tensor:
    """(B, C, S, S) floats: [0, 1], then (x - mean) / std per channel."""
    x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(prep["mean"], dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(prep["std"], dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


# ---------------------------------------------------------------- the decision (core/evaluation.py)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted: np.ndarray = z - z.max(axis=1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return result


def decide(probs: np.ndarray, positive: int, threshold: float, temperature: float) -> np.ndarray:
    """Class index per row: the positive class where its (temperature-scaled) score reaches the
    threshold, else the most probable other class."""
    scaled = np.exp(_log_softmax(np.log(np.clip(probs, 1e-12, 1)) / temperature)) if temperature != 1.0 else probs
    others = np.where(np.arange(probs.shape[1]) == positive, -np.inf, probs)
    return np.where(scaled[:, positive] >= threshold, positive, others.argmax(axis=1))


# ---------------------------------------------------------------- files and the command line


def image_files(inputs: list[str]) -> list[tuple[str, Path]]:
    """(name in the CSV, path) of each file named and each image file under each folder named."""
    found: list[tuple[str, Path]] = []
    for given in inputs:
        root = Path(given)
        if not root.is_dir():
            found.append((given, root))
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(folder) / name
                if not name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS:
                    found.append((path.relative_to(root).as_posix(), path))
    return found


def _pixels_or_error(path: Path, prep: dict[str, Any]) -> np.ndarray | str:
    try:
        return model_pixels(load_array(path), prep)
    except Exception as exc:  # noqa: BLE001 - a damaged file: Pillow raises many kinds, each a skipped file
        return f"{type(exc).__name__}: {exc}"


def predictions(files: list[tuple[str, Path]], batch_size: int) -> Iterator[tuple[str, np.ndarray | str]]:
    """(name, probabilities or the reason the file was skipped), in order, batch by batch."""
    prep = json.loads((HERE / "preprocessor.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice; it loads fine
        model = torch.jit.load(str(HERE / "model.pt"), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2)) as pool, torch.no_grad():
        for start in range(0, len(files), batch_size):
            batch = files[start:start + batch_size]
            decoded = list(pool.map(lambda f: _pixels_or_error(f[1], prep), batch))
            good = [arr for arr in decoded if not isinstance(arr, str)]
            probs = iter(torch.softmax(model(model_input(good, prep)), dim=1).numpy() if good else [])
            for (name, _), arr in zip(batch, decoded, strict=True):
                yield name, arr if isinstance(arr, str) else next(probs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Predict with this Lumen model bundle.")
    parser.add_argument("inputs", nargs="+", help="image files and folders of images (searched recursively)")
    parser.add_argument("--out", default="predictions.csv", help="the CSV to write")
    parser.add_argument("--threshold", type=float, help="decide at this threshold on the raw scores instead of "
                                                        "the bundle's operating point")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    classes: list[str] = json.loads((HERE / "classes.json").read_text())
    point = json.loads((HERE / "operating_point.json").read_text())
    threshold, temperature = (args.threshold, 1.0) if args.threshold is not None else \
        (point["threshold"], point["temperature"])
    files = image_files(args.inputs)
    names, rows, skipped = [], [], 0
    for name, result in predictions(files, max(1, args.batch_size)):
        if isinstance(result, str):
            print(f"skipped: {name}: {result}", file=sys.stderr)
            skipped += 1
        else:
            names.append(name)
            rows.append(result)
    if not rows:
        print(f"error: none of the {len(files)} files could be read as an image", file=sys.stderr)
        return 2
    probs = np.stack(rows).astype(np.float64)
    decided = decide(probs, classes.index(point["positive_class"]), float(threshold), float(temperature))
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "predicted", *(f"prob_{c}" for c in classes), "decision"])
        for name, p, d in zip(names, np.stack(rows), decided, strict=True):
            writer.writerow([name, classes[int(p.argmax())], *(format(v, ".9g") for v in p), classes[int(d)]])
    print(f"{len(rows)} images predicted, {skipped} skipped; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
