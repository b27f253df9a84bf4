"""Turning a crop of any shape into the square the model sees.

`prepare` is the single path from pixels to model input size: the padding page previews it, and
training, evaluation and Grad-CAM call it too, so what a user previews is what the model sees.
"""
from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from PIL import Image

#: How the square around a non-square crop is filled. "mean" is the image's own mean colour, which
#: hides the border from a CNN better than black when the background is stained slide.
PadMode = Literal["zero", "white", "edge", "reflect", "mean"]
PAD_MODES: tuple[str, ...] = get_args(PadMode)  # the Literal is the run config's type, the tuple a list
#: How a crop becomes square: pad it, stretch it (aspect ratio lost) or cut the centre square out.
FitMode = Literal["pad", "stretch", "crop"]
FIT_MODES: tuple[str, ...] = get_args(FitMode)
MIN_SIZE, MAX_SIZE = 8, 4096

_CONSTANT_FILLS = {"zero": 0, "white": 255}


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {what} '{value}': use one of {', '.join(choices)}.")


def check_options(size: int, pad_mode: str = "zero", fit: str = "pad") -> None:
    """Refuse bad preprocessing settings with a message a user can act on."""
    _check_choice(pad_mode, PAD_MODES, "pad mode")
    _check_choice(fit, FIT_MODES, "fit")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"The image size must be a whole number of pixels, not {size!r}.")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"The image size must be between {MIN_SIZE} and {MAX_SIZE} pixels, not {size}.")


def _check_image(arr: np.ndarray) -> None:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
        raise ValueError("Expected a uint8 image array (as core.images.load_item returns).")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"Expected an HxW grey or HxWx3 colour image, got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"The image is empty (shape {arr.shape}).")


def _halves(gap: int) -> tuple[int, int]:
    """Split a gap in two; an odd extra pixel goes after (bottom or right)."""
    return gap // 2, gap - gap // 2


def _fill_value(arr: np.ndarray, mode: str):
    """The constant a square is filled with: a number, or one value per channel for "mean"."""
    if mode == "mean":
        return np.rint(arr.reshape(-1, arr.shape[2]).mean(axis=0) if arr.ndim == 3 else arr.mean())
    return _CONSTANT_FILLS[mode]


def pad_to_square(arr: np.ndarray, mode: str = "zero") -> np.ndarray:
    """The image centred in a square of side max(h, w), the margin filled according to ``mode``.

    Grey stays 2-D, colour stays HxWx3. numpy's "reflect" repeats its mirror when the margin is
    wider than the image, so even a 3x200 strip pads without error.
    """
    _check_choice(mode, PAD_MODES, "pad mode")
    _check_image(arr)
    height, width = arr.shape[:2]
    side = max(height, width)
    top, bottom = _halves(side - height)
    left, right = _halves(side - width)
    if mode in ("edge", "reflect"):
        widths = [(top, bottom), (left, right)] + [(0, 0)] * (arr.ndim - 2)
        return np.pad(arr, widths, mode=mode)
    square = np.empty((side, side) + arr.shape[2:], dtype=np.uint8)
    square[...] = _fill_value(arr, mode)
    square[top:top + height, left:left + width] = arr
    return square


def centre_crop(arr: np.ndarray) -> np.ndarray:
    """The centred square of side min(h, w); an odd leftover pixel is cut from the bottom/right."""
    _check_image(arr)
    height, width = arr.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return arr[top:top + side, left:left + side]


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size with Pillow's bilinear filter.

    Bilinear rather than Lanczos: Pillow widens the bilinear kernel when shrinking, so downscaling
    is antialiased like torchvision's default Resize, it costs about half as much, and it does not
    ring (overshoot) at the hard edge between tissue and a zero or white margin. reducing_gap=3
    first box-reduces very large tiles by an integer factor, which is much faster and, per
    Pillow's documentation, indistinguishable from a full resample at that gap.
    """
    if arr.shape[:2] == (size, size):
        return arr
    img = Image.fromarray(arr)
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))


def prepare(arr: np.ndarray, size: int, pad_mode: str = "zero", fit: str = "pad") -> np.ndarray:
    """A uint8 size x size image (grey or RGB as given): the one way Lumen squares and sizes a crop."""
    check_options(size, pad_mode, fit)
    _check_image(arr)
    if fit == "pad":
        arr = pad_to_square(arr, pad_mode)
    elif fit == "crop":
        arr = centre_crop(arr)
    return _resize(arr, int(size))


def padding_share(width, height):
    """Fraction of the padded square that is margin: 1 - w*h / max(w, h)**2.

    Works element-wise on numbers, numpy arrays and pandas Series (a Series stays a Series); a
    0x0 item (an unreadable file) gives NaN rather than a warning.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        side = np.maximum(width, height) * 1.0
        return 1.0 - (width * 1.0) * height / (side * side)
