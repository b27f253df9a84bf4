"""Where data may come from and go to: the configured data roots, and never the system's own files.

`LUMEN_DATA_ROOTS` (folders separated by the OS path separator, as in PATH) confines every
dataset, image folder, image file and export to those folders, after symlinks are resolved, so a
class folder that links to /usr/share or a dataset at /proc/self cannot reach the rest of the
server. Unset, Lumen runs for one person on their own machine and any folder is allowed, except
/proc, /sys and /dev, which are never data.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ENV = "LUMEN_DATA_ROOTS"
SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))


class OutsideDataRoots(ValueError):
    """A path that data may not be read from or written to; the message says what to do."""


def roots() -> list[Path] | None:
    """The configured data roots (resolved), or None when none are configured."""
    folders = [Path(p).expanduser().resolve() for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]
    return folders or None


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def problem(path: str | Path) -> str | None:
    """Why `path` (after resolving links) may not be used as data, or None when it may."""
    real = Path(path).expanduser().resolve()
    if any(_under(real, system) for system in SYSTEM):
        return f"{real} is part of the operating system ({', '.join(map(str, SYSTEM))}), never data"
    allowed = roots()
    if allowed is not None and not any(_under(real, root) for root in allowed):
        return (f"{real} is outside the data roots ({os.pathsep.join(map(str, allowed))}); an admin can add "
                f"its folder to {ENV}")
    return None


def check(path: str | Path) -> Path:
    """`path` resolved, or OutsideDataRoots with the reason."""
    reason = problem(path)
    if reason:
        raise OutsideDataRoots(reason[0].upper() + reason[1:] + ".")
    return Path(path).expanduser().resolve()


def problems(paths: Iterable[str]) -> list[str | None]:
    """`problem` of many files, cheaply: each folder is resolved once, and a file on its own only
    when it is itself a link (a scan lists tens of thousands of files in a few folders)."""
    by_folder: dict[str, str | None] = {}
    out: list[str | None] = []
    for path in paths:
        if not path:
            out.append(None)
            continue
        folder = os.path.dirname(path)
        if folder not in by_folder:
            by_folder[folder] = problem(folder)
        reason = by_folder[folder]
        out.append(reason if reason or not os.path.islink(path) else problem(path))
    return out
