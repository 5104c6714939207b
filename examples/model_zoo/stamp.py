"""Build stamps: a digest of everything that determines a model's artifacts.

A stamp (source files of the modules involved, tool versions, seed and settings) is written
beside the outputs last; a rebuild is skipped when the stored stamp matches and every output
exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from examples.model_zoo import ModelZooError

log = logging.getLogger(__name__)

STAMP_FILE = "stamp.json"


@dataclass(frozen=True, kw_only=True)
class Stamp:
    """The digest plus the components it was computed from (kept for provenance)."""

    digest: str
    sources: tuple[tuple[str, str], ...]  # (module name, sha256 of its source)
    settings: tuple[tuple[str, str], ...]  # (key, value): versions, seed, hyper-parameters

    def to_json(self) -> str:
        return json.dumps({"digest": self.digest, "sources": dict(self.sources),
                           "settings": dict(self.settings)}, indent=2, sort_keys=True) + "\n"


def _module_source(module: ModuleType) -> bytes:
    path = getattr(module, "__file__", None)
    if path is None:
        raise ModelZooError(f"module {module.__name__} has no source file to stamp")
    return Path(path).read_bytes()


def make_stamp(*, modules: Sequence[ModuleType], settings: Mapping[str, str]) -> Stamp:
    """Digest the modules' source bytes (by module name, not path) and the settings."""
    sources = tuple(sorted((m.__name__, hashlib.sha256(_module_source(m)).hexdigest())
                           for m in modules))
    items = tuple(sorted((str(k), str(v)) for k, v in settings.items()))
    payload = json.dumps({"sources": sources, "settings": items}, sort_keys=True)
    return Stamp(digest=hashlib.sha256(payload.encode()).hexdigest(), sources=sources,
                 settings=items)


def read_stamp_digest(path: Path) -> str | None:
    """The digest stored at `path`, or None when absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    digest = data.get("digest") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) else None


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_stamp(path: Path, stamp: Stamp) -> None:
    write_atomic(path, stamp.to_json().encode())


def is_up_to_date(stamp_path: Path, stamp: Stamp, outputs: Sequence[Path]) -> bool:
    """True when the stored stamp matches `stamp` and every output exists."""
    stored = read_stamp_digest(stamp_path)
    if stored != stamp.digest:
        log.debug("stamp %s: stored %s, wanted %s", stamp_path, stored, stamp.digest)
        return False
    missing = [str(p) for p in outputs if not p.is_file()]
    if missing:
        log.debug("stamp %s matches but outputs are missing: %s", stamp_path, missing)
        return False
    return True
