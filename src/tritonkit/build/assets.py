"""A Python step's assets: files it needs at serving time, copied into its model directory.

The spec declares `assets: {<parameter>: <path>}` on a Python step. The builder copies each
file or directory into `<model dir>/assets/<its name>` (`copy_asset`) and sets the config
parameter to that path relative to the model directory (`asset_location`), so a repository
never names a file outside itself. Copies are deterministic and byte-identical: file contents
only (no metadata), directories walked in sorted order. Inside a directory, a symbolic link to
a file of the same directory tree is copied as that file; a link that leaves the tree, a linked
directory and anything that is not a regular file are refused.

Kept free of heavy imports: the build stamp lists asset files (`asset_files`) on every build.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tritonkit.errors import ToolkitError, UnsafePathError
from tritonkit.runtime.parameters import ASSETS_DIR

log = logging.getLogger(__name__)


def asset_location(source: Path) -> str:
    """The config parameter value naming `source`'s copy: relative to the model directory."""
    return f"{ASSETS_DIR}/{source.name}"


def asset_files(source: Path) -> list[Path]:
    """Every file of an asset (itself, or every file below a directory), sorted.

    Tolerant: a missing or unreadable asset gives what can be listed (the build reports it).
    """
    if source.is_file():
        return [source]
    files: list[Path] = []
    for directory, subdirectories, names in os.walk(source, followlinks=False):
        subdirectories.sort()
        files.extend(Path(directory) / name for name in sorted(names))
    return files


def _entries(root: Path, directory: Path) -> Iterator[tuple[Path, Path]]:
    """(source file, path relative to root) below `directory`, sorted, links checked."""
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.is_symlink():
            target = entry.resolve()
            if not target.is_relative_to(root):
                raise UnsafePathError(f"asset {root}: {entry} is a symbolic link to {target}, "
                                      "outside the asset; copy the file into it instead")
            if not target.is_file():
                raise UnsafePathError(f"asset {root}: {entry} is a symbolic link to "
                                      f"{target}, which is not a file; only linked files are "
                                      "copied (replace it by a real directory)")
            yield target, entry.relative_to(root)
        elif entry.is_dir():
            yield from _entries(root, entry)
        elif entry.is_file():
            yield entry, entry.relative_to(root)
        else:
            raise ToolkitError(f"asset {root}: {entry} is not a regular file")


def copy_asset(source: Path, destination: Path) -> int:
    """Copy file or directory `source` to `destination` (which must not exist); file count.

    A symbolic link given as `source` itself is followed: its target is the asset.
    """
    if not source.exists():
        raise ToolkitError(f"{source} not found")
    root = source.resolve()
    if destination.exists():
        raise ToolkitError(f"{destination} exists already: two assets with one name")
    destination.parent.mkdir(parents=True, exist_ok=True)
    if root.is_file():
        shutil.copyfile(root, destination)
        return 1
    if not root.is_dir():
        raise ToolkitError(f"{source} is neither a file nor a directory")
    entries = list(_entries(root, root))  # every link checked before anything is written
    destination.mkdir()
    for file, relative in entries:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    log.debug("copied asset %s (%d files) to %s", source, len(entries), destination)
    return len(entries)
