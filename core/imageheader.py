"""Width, height, mode and format of plain JPEG and PNG files, read from their first bytes.

The header scan meets tens of thousands of crops, nearly all plain JPEG or PNG. Pillow's opener
parses every header segment in Python (quantisation tables, text chunks), 5-10 times what the
size and mode cost; this reads only the frame header (JPEG) or IHDR (PNG), with Pillow's own PNG
mode table. Whatever it is not sure of (EXIF or XMP that may rotate the image, an MPO or animated
PNG, 12-bit or lossless JPEG, a header past the bytes given, any other format or a malformed
one) gives None, and the caller asks Pillow.
"""
from __future__ import annotations

from PIL.PngImagePlugin import _MODES as PNG_MODES

Header = tuple[int, int, str, str]  # width, height, mode, format (as Pillow names them)

_JPEG_FRAMES = (0xC0, 0xC1, 0xC2)  # baseline, extended and progressive Huffman: what Pillow opens alike
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_UNSURE = (b"acTL", b"eXIf", b"iTXt")  # animation; EXIF or XMP orientation


def read_header(data: bytes) -> Header | None:
    """The header of a plain JPEG or PNG starting ``data``, or None (then ask Pillow)."""
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    if data[:8] == _PNG_SIGNATURE:
        return _png(data)
    return None


def _jpeg(data: bytes) -> Header | None:
    frame: Header | None = None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the header is complete
            return frame
        if marker == 0xE1 or (marker == 0xE2 and data[pos + 4:pos + 8] == b"MPF\0") or 0xD0 <= marker <= 0xD9:
            return None  # EXIF/XMP (orientation), a multi-picture file, or a stray marker
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
            if marker not in _JPEG_FRAMES or frame is not None or pos + 10 > len(data) or data[pos + 4] != 8:
                return None
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            mode = _JPEG_MODES.get(data[pos + 9])
            if mode is None or not width or not height:
                return None
            frame = (width, height, mode, "JPEG")
        if length < 2:
            return None
        pos += 2 + length
    return None


def _png(data: bytes) -> Header | None:
    if data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    mode = PNG_MODES.get((data[24], data[25]))
    if mode is None or not width or not height:
        return None
    pos = 8
    while pos + 8 <= len(data):
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            return (width, height, mode[0], "PNG")
        if kind in _PNG_UNSURE:
            return None
        pos += 12 + int.from_bytes(data[pos:pos + 4], "big")
    return None
