"""Colour jitter on real glomeruli crops: saturation and hue move each image by its own factor and
leave what they must not touch (grey level, HSV value and saturation) as it was."""
import numpy as np
import pytest
import torch
from PIL import Image

from core.train.augment import augment
from tests.conftest import GLOMERULI_DEMO

NO_GEOMETRY = {"hflip": False, "vflip": False, "rotate90": False, "rotation": 0.0, "shift": 0.0, "color_jitter": 0.0}


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    """Eight demo crops at 48 px as (B, 3, S, S) floats in [0, 1]."""
    paths = sorted((GLOMERULI_DEMO / "images").rglob("*.jpg"))[::40][:8]
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((48, 48))) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def _jitter(x: torch.Tensor, seed: int = 0, **colour: float) -> torch.Tensor:
    return augment(x.clone(), {**NO_GEOMETRY, **colour}, torch.Generator().manual_seed(seed))


def _grey(x: torch.Tensor) -> torch.Tensor:
    return 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def test_saturation_scales_each_images_colour_by_its_own_factor_and_keeps_its_grey_level(crops):
    out = _jitter(crops, saturation=0.5)
    unclipped = (out > 0.01) & (out < 0.99)
    keep = unclipped.all(1)  # pixels no channel clipped: there the blend is exact
    assert torch.allclose(_grey(out)[keep], _grey(crops)[keep], atol=2e-3)
    chroma = (crops - _grey(crops)[:, None])
    factors = [float((out - _grey(out)[:, None])[i][:, keep[i]].norm() / chroma[i][:, keep[i]].norm())
               for i in range(len(crops))]
    assert all(0.5 - 1e-3 <= f <= 1.5 + 1e-3 for f in factors), factors
    assert max(factors) - min(factors) > 0.1, factors  # one factor per image, not one per batch


def test_hue_turns_each_image_by_its_own_shift_and_keeps_hsv_value_and_saturation(crops):
    out = _jitter(crops, hue=0.3)
    assert torch.allclose(out.amax(1), crops.amax(1), atol=1e-4)  # HSV value
    assert torch.allclose(out.amax(1) - out.amin(1), crops.amax(1) - crops.amin(1), atol=1e-4)  # chroma
    moved = [float((out[i] - crops[i]).abs().mean()) for i in range(len(crops))]
    assert max(moved) > 0.01 and max(moved) - min(moved) > 0.002, moved


def test_colour_jitter_repeats_with_its_seed_and_leaves_grey_images_alone(crops):
    colour = {"color_jitter": 0.2, "saturation": 0.4, "hue": 0.1}
    assert torch.equal(_jitter(crops, 3, **colour), _jitter(crops, 3, **colour))
    assert not torch.equal(_jitter(crops, 3, **colour), _jitter(crops, 4, **colour))
    grey = crops[:, :1]
    assert torch.equal(_jitter(grey, saturation=0.4, hue=0.3), grey)
