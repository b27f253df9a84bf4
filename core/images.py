"""Safe image loading: every mode a lab produces becomes an 8-bit RGB (or grey) array.

Grey, RGB, RGBA, palette, 16-bit, CMYK and EXIF-rotated files all come out the way a person sees
them in an image viewer. Alpha is composited onto white, because bright-field microscopy
backgrounds are white; a transparent margin then looks like slide, not like black tissue.
"""
from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"}

#: Images above this many pixels are refused as possible decompression bombs (about 16k x 16k).
MAX_PIXELS = 256_000_000

# PIL's own guard would raise inside open() at twice its limit; Lumen applies MAX_PIXELS itself
# so that the refusal becomes a readable problem row instead of an exception.
Image.MAX_IMAGE_PIXELS = None


class ImageTooLarge(ValueError):
    """Raised for images whose pixel count exceeds MAX_PIXELS."""


class NotAStillImage(ValueError):
    """Raised for an animation (GIF, APNG, multi-page TIFF): which frame is the crop is not Lumen's to guess."""


def check_still(img: Image.Image) -> None:
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        raise NotAStillImage(f"an animation or multi-page image ({frames} frames): save the frame you mean "
                             "as a PNG")


def is_image_path(path: str | Path) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS  # no Path object: called per listed file


def check_pixel_limit(width: int, height: int, limit: int | None = None) -> None:
    """Refuse an image whose decoding or padding would take too much memory. Padding allocates the
    square of the longer side, so that square is what counts: a 201-byte 1x30000 PNG would
    otherwise ask for 900 million pixels."""
    limit = MAX_PIXELS if limit is None else limit
    side = max(width, height)
    if side * side > limit:
        size = f"{width}x{height} = {width * height:,} pixels" if width == height else \
            f"{width}x{height}, padded to a {side}x{side} square = {side * side:,} pixels"
        raise ImageTooLarge(f"image too large: {size}, over the {limit:,}-pixel safety limit "
                            "(possible decompression bomb)")


def to_uint8_array(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to an HxW (grey) or HxWx3 (colour) uint8 array."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
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
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return np.asarray(img, dtype=np.uint8)


def load_array(path: str | Path) -> np.ndarray:
    """Decode a file fully into a uint8 array; raises on truncated or unreadable files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as img:
            check_pixel_limit(*img.size)
            check_still(img)
            img.load()
            return to_uint8_array(img)


def as_rgb(arr: np.ndarray) -> np.ndarray:
    """Grey arrays repeated to three channels, for models and displays that want colour."""
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    return arr


@lru_cache(maxsize=4)
def _npz_arrays(path: str, mtime_ns: int) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files if key.endswith("_images")}


def load_item(path: str, index: int = -1, split: str | None = None) -> np.ndarray:
    """Pixels of one manifest item: a file, or row ``index`` of ``<split>_images`` in an npz."""
    if index is not None and int(index) >= 0:
        arrays = _npz_arrays(str(path), Path(path).stat().st_mtime_ns)
        arr: np.ndarray = arrays[f"{split}_images"][int(index)]
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 / max(float(arr.max()), 1.0)), 0, 255).astype(np.uint8)
        return arr
    return load_array(path)
