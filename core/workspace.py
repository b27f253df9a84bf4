"""Where Lumen keeps its state: the dataset registry, caches and (later) runs.

Everything lives under one folder, ``LUMEN_HOME`` (default ``./workspace``), so a lab can point
several app instances at a shared disk and a test can point one at a temporary folder.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = PROJECT_ROOT / "assets" / "demo"
TEMP_SUFFIX = ".tmp"  # of a file being written; one a killed writer left is cleared on resume


def home() -> Path:
    """The workspace root, created on first use."""
    root = Path(os.environ.get("LUMEN_HOME", PROJECT_ROOT / "workspace")).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A sub-folder of the workspace cache, created on first use."""
    path = home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read_umask() -> int:
    """Read once at import, before any thread exists (os.umask can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: Path, write: Callable[[BinaryIO], object], link_as: Path | None = None,
                 durable: bool = True) -> None:
    """The one way Lumen writes a file: `write` fills a temporary file (a unique name in the same
    folder), which is flushed to disk and renamed over `path`, and the folder is synced, so a reader
    never sees half a file and a crash or power cut never leaves a torn one.

    `link_as` also publishes the same file under a second name (timm's best-from-last checkpoint),
    before `path` itself: a kill in between leaves the second name new and `path` old, never the
    reverse. `durable=False` skips the two syncs, for a cache whose reader checks what it reads and
    rebuilds it when damaged: a reader still never sees half a file, and the scan does not wait on
    the disk."""
    with atomic_path(path, link_as, durable) as tmp, open(tmp, "wb") as handle:
        write(handle)


@contextmanager
def atomic_path(path: Path, link_as: Path | None = None, durable: bool = True) -> Iterator[Path]:
    """atomic_write for a writer that needs a file name rather than a handle (a memory map): the
    block fills the temporary file it is given, which is published when the block ends, and
    removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a shared LUMEN_HOME needs the usual mode
        if link_as is not None:
            _publish_copy(Path(tmp), Path(link_as))
        os.replace(tmp, path)
        if durable:
            _sync_folder(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _publish_copy(source: Path, target: Path) -> None:
    """`target` becomes the same file as `source`: a hard link where the disk allows one, else a copy."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    """fsync a folder so a rename in it survives a power cut (not possible on every platform)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clear_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files a killed writer left under `folder`; returns what went."""
    stale = [p for p in Path(folder).rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    atomic_write(path, lambda handle: handle.write(data), durable=durable)


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())
