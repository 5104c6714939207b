"""A content-addressed cache of built artifacts: one directory per key, written atomically."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class ArtifactCache:
    """`<root>/<kind>/<key>/` holds the files of one build step's result."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def lookup(self, kind: str, key: str) -> Path | None:
        path = self.entry(kind, key)
        return path if path.is_dir() else None

    def produce(self, kind: str, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """Return (entry, was_cached); on a miss, `build(tmpdir)` fills a temp dir first."""
        found = self.lookup(kind, key)
        if found is not None:
            log.debug("cache hit %s/%s", kind, key)
            return found, True
        final = self.entry(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            build(tmp)
            try:
                os.rename(tmp, final)
            except OSError:  # another build filled it meanwhile
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final, False


def link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link when possible (same file system, no copy), else copy."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
