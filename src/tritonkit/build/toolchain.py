"""Versions of the tools that shape an artifact, and stable cache keys derived from them."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from functools import cache
from pathlib import Path
from typing import Any

_PACKAGES = ("numpy", "onnx", "onnxruntime", "polygraphy", "tensorrt", "torch")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@cache
def tool_versions() -> dict[str, str]:
    """Installed versions of the build tools (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        found = _version(package)
        if found is not None:
            versions[package] = found
    return versions


@cache
def generator_fingerprint() -> str:
    """Hash of tritonkit's own source: a change to the generator invalidates stamps."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]  # the whole tritonkit package
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(*parts: Any) -> str:
    """A stable hex key for JSON-able parts (dataclasses should be passed as dicts)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
