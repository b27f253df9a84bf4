"""Small JPEG previews, made on first view and kept on disk by content hash.

Keyed by the image's content hash, a thumbnail is made once per image version, shared by every
dataset that contains the file, and never goes stale when a file is replaced.
"""
from __future__ import annotations

import io

from PIL import Image

from core import workspace
from core.images import load_item


def thumbnail(path: str, content_hash: str, index: int = -1, split: str | None = None, size: int = 160) -> bytes:
    """JPEG bytes of the item scaled to fit in size x size."""
    cached = workspace.cache_dir("thumbs", str(size)) / f"{content_hash}.jpg"
    if cached.exists():
        return cached.read_bytes()
    img = Image.fromarray(load_item(path, index, split))
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=88)
    data = buffer.getvalue()
    workspace.atomic_write_bytes(cached, data)
    return data
