"""Every image mode loads the way a person sees it."""
import numpy as np
import pytest
from PIL import Image

from core import images
from core.images import ImageTooLarge, load_array, load_item
from tests.conftest import SHARED_DATA, write_mode_zoo


@pytest.fixture
def zoo(tmp_path):
    return write_mode_zoo(tmp_path / "zoo")


@pytest.mark.parametrize("name", ["rgb.jpg", "rgb.tif", "rgb.bmp", "palette.png", "cmyk.jpg", "rgba.png"])
def test_colour_files_load_as_8bit_rgb(zoo, name):
    arr = load_array(zoo[name])
    assert arr.shape == (30, 40, 3) and arr.dtype == np.uint8
    # red grows left to right in every colour mode (JPEG/CMYK/palette are lossy: compare ends only)
    assert arr[15, -1, 0] > arr[15, 0, 0] + 150


@pytest.mark.parametrize("name", ["grey.png", "grey16.png"])
def test_grey_files_stay_grey_and_8bit(zoo, name):
    arr = load_array(zoo[name])
    assert arr.shape == (30, 40) and arr.dtype == np.uint8
    assert arr.max() >= 200  # 16-bit is scaled, not clipped or truncated to the low byte


def test_exif_rotation_is_applied(zoo):
    arr = load_array(zoo["exif_rotated.jpg"])
    assert arr.shape == (40, 30, 3)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[:, :5] = (200, 0, 0, 255)  # left half opaque red, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "half.png")
    arr = load_array(tmp_path / "half.png")
    assert tuple(arr[5, 0]) == (200, 0, 0) and tuple(arr[5, 9]) == (255, 255, 255)


def test_pixel_limit_refuses_bombs(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    Image.new("L", (20, 20)).save(tmp_path / "big.png")
    with pytest.raises(ImageTooLarge, match="400 pixels"):
        load_array(tmp_path / "big.png")


def test_pixel_limit_counts_the_padded_square(tmp_path):
    """A thin strip decodes to few pixels, but padding it to a square would allocate side x side."""
    Image.new("RGB", (1, 30000)).save(tmp_path / "strip.png")
    assert (tmp_path / "strip.png").stat().st_size < 2000
    with pytest.raises(ImageTooLarge, match="padded to a 30000x30000 square = 900,000,000 pixels"):
        load_array(tmp_path / "strip.png")


def test_npz_items_load_by_split_and_index():
    path = SHARED_DATA / "medmnist" / "breastmnist.npz"
    with np.load(path) as data:
        expected = data["test_images"][5]
    assert np.array_equal(load_item(str(path), 5, "test"), expected)
