"""What the model sees: a crop of any shape squared, sized, given its channels and normalised.

`Preprocessor` is the one object that turns decoded pixels into a model's input. It travels in
every checkpoint (`to_dict`), so a checkpoint alone says what its model sees, and the image cache,
training, evaluation, Grad-CAM, features, the untrained-backbone view, exports and the Padding
preview all go through it: what a user previews is what the model gets.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image

if TYPE_CHECKING:
    import pandas as pd
    import torch

#: How the square around a non-square crop is filled. "mean" is the image's own mean colour, which
#: hides the border from a CNN better than black when the background is stained slide.
PadMode = Literal["zero", "white", "edge", "reflect", "mean"]
PAD_MODES: tuple[str, ...] = get_args(PadMode)  # the Literal is the run config's type, the tuple a list
#: How a crop becomes square: pad it, stretch it (aspect ratio lost) or cut the centre square out.
FitMode = Literal["pad", "stretch", "crop"]
FIT_MODES: tuple[str, ...] = get_args(FitMode)
MIN_SIZE, MAX_SIZE = 8, 4096
#: Where the per-channel mean and std come from: the run's training split (measured when training
#: starts, stored with the run), ImageNet's (for weights pretrained on it), or none (pixels in [0, 1]).
Normalisation = Literal["train", "imagenet", "none"]
NORMALISATIONS: tuple[str, ...] = get_args(Normalisation)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: Pillow modes of grey images: a dataset made only of them trains a one-channel model.
GREY_MODES = frozenset({"1", "L", "I", "I;16", "I;16B", "I;16L", "F"})
STATS_SAMPLE = 2048  # images the training statistics are measured on, evenly spaced

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


def _fill_value(arr: np.ndarray, mode: str) -> npt.ArrayLike:
    """The constant a square is filled with: a number, or one value per channel for "mean"."""
    if mode == "mean":
        mean: npt.ArrayLike = np.rint(arr.reshape(-1, arr.shape[2]).mean(axis=0) if arr.ndim == 3 else arr.mean())
        return mean
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
        return np.pad(arr, widths, mode="edge" if mode == "edge" else "reflect")
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


#: Image widths and heights: numbers, numpy arrays or pandas Series.
Sides = TypeVar("Sides", float, "np.ndarray", "pd.Series")


def padding_share(width: Sides, height: Sides) -> Sides:
    """Fraction of the padded square that is margin: 1 - w*h / max(w, h)**2.

    Works element-wise on numbers, numpy arrays and pandas Series (a Series stays a Series); a
    0x0 item (an unreadable file) gives NaN rather than a warning.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        side = np.maximum(width, height) * 1.0
        share: Sides = 1.0 - (width * 1.0) * height / (side * side)
        return share


def channels_for(modes: Sequence[str]) -> int:
    """1 when every image is grey (MedMNIST, X-rays), else 3 (grey ones are then repeated)."""
    return 1 if all(mode in GREY_MODES for mode in modes) else 3


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HxWxC uint8: grey repeated for a colour model, colour averaged for a grey one."""
    if channels == 3:
        return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    return image[:, :, None] if image.ndim == 2 else image.mean(axis=2, keepdims=True).astype(np.uint8)


def _fixed_statistics(normalize: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if normalize == "none":
        return (0.0,) * channels, (1.0,) * channels
    if channels == 1:  # a grey image is the mean of its channels, so it gets the mean statistics
        return (float(np.mean(IMAGENET_MEAN)),), (float(np.mean(IMAGENET_STD)),)
    return IMAGENET_MEAN, IMAGENET_STD


@lru_cache(maxsize=16)
def _statistics_on(mean: tuple[float, ...], std: tuple[float, ...], device: Any, dtype: Any
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) mean and std on a device, made once rather than on every batch."""
    import torch

    def shaped(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=device).view(1, -1, 1, 1)

    return shaped(mean), shaped(std)


@dataclass(frozen=True)
class Preprocessor:
    """Size, pad mode, fit, channels and normalisation: everything between a decoded image and
    the tensor a model takes. `mean` and `std` are empty until `fitted` measures them (for
    normalize="train"); the other normalisations know theirs from the start."""

    size: int
    pad_mode: str = "zero"
    fit: str = "pad"
    channels: int = 3
    normalize: str = "train"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_options(self.size, self.pad_mode, self.fit)
        _check_choice(self.normalize, NORMALISATIONS, "normalisation")
        if self.channels not in (1, 3):
            raise ValueError(f"A model input has 1 or 3 channels, not {self.channels!r}.")
        if self.normalize != "train" and not self.mean:
            mean, std = _fixed_statistics(self.normalize, self.channels)
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.mean and (len(self.mean) != self.channels or len(self.std) != self.channels):
            raise ValueError(f"mean and std need one value per channel ({self.channels}).")

    @classmethod
    def from_config(cls, preprocess: dict[str, Any], channels: int) -> Preprocessor:
        """From a run config's `preprocess` section (statistics still to measure, for "train")."""
        return cls(int(preprocess["size"]), preprocess.get("pad_mode", "zero"), preprocess.get("fit", "pad"),
                   channels, preprocess.get("normalize", "train"))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocessor:
        return cls(**{**values, "mean": tuple(values.get("mean", ())), "std": tuple(values.get("std", ()))})

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples) that survive JSON and torch.load(weights_only=True)."""
        values = asdict(self)
        return {**values, "mean": list(self.mean), "std": list(self.std)}

    @property
    def geometry(self) -> tuple[int, str, str, int]:
        """What decides the stored uint8 pixels (the image cache's key): not the normalisation."""
        return self.size, self.pad_mode, self.fit, self.channels

    def image(self, arr: np.ndarray) -> np.ndarray:
        """The squared, sized uint8 image as a person sees it (grey stays 2-D), padding visible."""
        return prepare(arr, self.size, self.pad_mode, self.fit)

    def pixels(self, arr: np.ndarray) -> np.ndarray:
        """S x S x C uint8: what the image cache stores for one image."""
        return to_channels(self.image(arr), self.channels)

    def fitted(self, pixels: np.ndarray, indices: np.ndarray) -> Preprocessor:
        """With the per-channel mean and std of the given rows of an (N, S, S, C) uint8 array
        (at most STATS_SAMPLE of them, evenly spaced); unchanged unless normalize is "train"."""
        if self.normalize != "train":
            return self
        if len(indices) == 0:
            raise ValueError("Normalisation statistics need at least one training image.")
        pick = np.asarray(indices)[np.linspace(0, len(indices) - 1, min(STATS_SAMPLE, len(indices))).astype(int)]
        sample = np.asarray(pixels[pick], dtype=np.float32) / 255.0
        mean = sample.mean(axis=(0, 1, 2), dtype=np.float64)
        std = np.maximum(sample.std(axis=(0, 1, 2), ddof=1, dtype=np.float64), 1e-3)  # images have 64+ pixels
        return replace(self, mean=tuple(mean.tolist()), std=tuple(std.tolist()))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) floats in [0, 1] to the model's scale, on x's own device."""
        if not self.mean:
            raise ValueError("This preprocessor has no statistics yet: call fitted() on the training images.")
        mean, std = _statistics_on(self.mean, self.std, x.device, x.dtype)
        return (x - mean) / std

    def tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) uint8 (as the image cache gives it) to the model's float input."""
        return self.normalise(batch.float().div_(255))

    def __call__(self, arr: np.ndarray) -> torch.Tensor:
        """One decoded image to a (1, C, S, S) model input."""
        import torch

        chw = np.ascontiguousarray(self.pixels(arr).transpose(2, 0, 1))
        return self.tensor(torch.from_numpy(chw).unsqueeze(0))
