"""The plain JPEG/PNG header reader says what Pillow says, or leaves the file to Pillow."""
import io

import numpy as np
import pytest
from PIL import Image

from core.imageheader import read_header
from core.scanning import PREFIX_BYTES, header_facts
from tests.conftest import SHARED_DATA, gradient, write_mode_zoo


def _pillow(path):
    with Image.open(path) as img:
        return img.size[0], img.size[1], img.mode, img.format


def _prefix(path):
    with open(path, "rb") as handle:
        return handle.read(PREFIX_BYTES)


@pytest.mark.parametrize("folder", ["blood_pbc", "glomeruli", "bccd_crops"])
def test_every_real_image_reads_as_pillow_reads_it(folder):
    paths = sorted(p for p in (SHARED_DATA / folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    read = 0
    for path in paths:
        header = read_header(_prefix(path))
        if header is not None:
            read += 1
            assert header == _pillow(path), path
    assert read > 0.9 * len(paths) > 0  # the plain reader is what the scan meets, not the exception


def _modes(folder):
    """The lab's modes, and the PNG bit depths and JPEG kinds beyond them."""
    paths = write_mode_zoo(folder)
    rgb = Image.fromarray(gradient(40, 30))
    extra = {
        "bilevel.png": (rgb.convert("1"), {}),
        "palette4.png": (rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), {"bits": 4}),
        "la.png": (rgb.convert("LA"), {}),
        "rgb16.png": (None, {}),
        "progressive.jpg": (rgb, {"progressive": True}),
        "grey.jpg": (rgb.convert("L"), {}),
        "interlaced.png": (rgb, {"interlace": 1}),
        "transparent.png": (rgb.convert("P"), {"transparency": 0}),
    }
    for name, (img, options) in extra.items():
        paths[name] = folder / name
        if img is None:  # 16-bit RGB, written by hand: Pillow writes no 16-bit RGB of its own
            continue
        img.save(paths[name], **options)
    deep = (np.asarray(rgb, dtype=np.uint16) * 257).byteswap().tobytes()
    _write_png16(paths["rgb16.png"], 40, 30, deep)
    return paths


def _write_png16(path, width, height, big_endian_rgb):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\0" + big_endian_rgb[y * width * 6:(y + 1) * width * 6] for y in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_every_mode_and_kind_reads_as_pillow_reads_it_or_goes_to_pillow(tmp_path):
    paths = _modes(tmp_path)
    leaves_to_pillow = {"rgb.tif", "rgb.bmp", "exif_rotated.jpg"}
    for name, path in paths.items():
        header = read_header(_prefix(path))
        if name in leaves_to_pillow:
            assert header is None, name
        else:
            assert header == _pillow(path), name
    facts = header_facts(str(paths["exif_rotated.jpg"]))
    assert (facts["width"], facts["height"]) == (30, 40)  # Pillow's EXIF rotation still applies


def test_unsure_or_damaged_headers_go_to_pillow(tmp_path):
    rgb = Image.fromarray(gradient(40, 30))
    frames = [rgb, rgb.rotate(90)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    assert read_header(buffer.getvalue()) is None  # an animated PNG: Pillow's check_still decides
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    assert read_header(jpeg) == (40, 30, "RGB", "JPEG")
    assert read_header(jpeg[:100]) is None  # the frame header lies past the bytes given
    assert read_header(b"\xff\xd8" + b"\0" * 50) is None
    assert read_header(b"not an image at all") is None
