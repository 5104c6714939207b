"""Serving overlays: measured serving settings (`tritonkit tune` writes them) laid over a spec.

An overlay names models and Python steps of a spec and sets only serving settings:
`instance_group`, `dynamic_batching` and (models) `onnxruntime`. It is merged into the spec's
YAML before validation, so an overlaid spec is checked exactly like a hand-written one (the
BYTES steps' queue-delay rule included). It belongs to one build target: `build` refuses an
overlay measured for another.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tritonkit.errors import SpecError
from tritonkit.spec.types import Target

log = logging.getLogger(__name__)

OVERLAY_VERSION = 1
MODEL_KEYS = frozenset({"instance_group", "dynamic_batching", "onnxruntime"})
STEP_KEYS = frozenset({"instance_group", "dynamic_batching"})
_SECTIONS = {"models": MODEL_KEYS, "python_steps": STEP_KEYS}
_TOP_LEVEL_KEYS = {"version", "target", "models", "python_steps"}


@dataclass(frozen=True, kw_only=True)
class SpecOverlay:
    """Serving settings per model (`models`) and per Python step (`python_steps`)."""

    source: Path
    target: Target
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    python_steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sha256: str = ""

    def section(self, name: str) -> Mapping[str, Mapping[str, Any]]:
        return self.models if name == "models" else self.python_steps


def parse_overlay(text: str, source: Path) -> SpecOverlay:
    """Parse and check overlay text (structure only; values are checked when it is applied)."""
    name = source.name
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(name, "", f"is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise SpecError(name, "", "an overlay is a mapping with version, target, models, "
                        "python_steps")
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
    if unknown:
        raise SpecError(name, unknown[0], f"unknown key; an overlay has {sorted(_TOP_LEVEL_KEYS)}")
    if data.get("version") != OVERLAY_VERSION:
        raise SpecError(name, "version", f"must be {OVERLAY_VERSION}, got {data.get('version')!r}")
    try:
        target = Target(data.get("target"))
    except ValueError as e:
        raise SpecError(name, "target", f"must be one of {[t.value for t in Target]}, got "
                        f"{data.get('target')!r}") from e
    sections: dict[str, dict[str, Mapping[str, Any]]] = {}
    for section, allowed in _SECTIONS.items():
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise SpecError(name, section, "must map model names to serving settings")
        for model, settings in entries.items():
            if not isinstance(settings, dict):
                raise SpecError(name, f"{section}.{model}", "must be a mapping of settings")
            extra = sorted(set(settings) - allowed)
            if extra:
                raise SpecError(name, f"{section}.{model}.{extra[0]}",
                                f"an overlay sets only serving settings here: {sorted(allowed)}")
        sections[section] = dict(entries)
    return SpecOverlay(source=source.resolve(), target=target, models=sections["models"],
                       python_steps=sections["python_steps"],
                       sha256=hashlib.sha256(text.encode()).hexdigest())


def applicable_overlay(overlay: SpecOverlay | None, *, requested: Target,
                       resolved: Target) -> SpecOverlay | None:
    """`overlay` if it was measured for the build's target. With target auto a mismatch only
    drops it (logged): auto means whatever this machine is; an explicit target refuses it."""
    if overlay is None or overlay.target is resolved:
        return overlay
    if requested is not Target.AUTO:
        raise SpecError(overlay.source.name, "target",
                        f"the overlay was measured for target {overlay.target.value!r}; this "
                        f"build is for {resolved.value!r} (leave the overlay out, or tune for it)")
    log.warning("%s was measured for target %s; target auto is %s here: building without it",
                overlay.source.name, overlay.target.value, resolved.value)
    return None


def load_overlay(path: str | Path) -> SpecOverlay:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(str(path), "", f"cannot be read: {e.strerror}") from e
    return parse_overlay(text, path)


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_overlay(document: Any, overlay: SpecOverlay, spec_name: str) -> Any:
    """The spec's YAML document with the overlay's settings merged into the named entries."""
    if not isinstance(document, dict):
        return document
    merged = dict(document)
    for section in _SECTIONS:
        settings = overlay.section(section)
        if not settings:
            continue
        entries = document.get(section)
        entries = list(entries) if isinstance(entries, list) else []
        names = [e.get("name") if isinstance(e, dict) else None for e in entries]
        for model, values in settings.items():
            if model not in names:
                raise SpecError(overlay.source.name, f"{section}.{model}",
                                f"{spec_name} has no {section} entry named {model!r}")
            i = names.index(model)
            entries[i] = _merge(entries[i], values)
        merged[section] = entries
    return merged


def render_overlay(overlay: SpecOverlay, *, header: str = "") -> str:
    """YAML text of `overlay`, with `header` as comment lines on top."""
    body: dict[str, Any] = {"version": OVERLAY_VERSION, "target": overlay.target.value}
    for section in _SECTIONS:
        settings = overlay.section(section)
        if settings:
            body[section] = {k: _plain(v) for k, v in sorted(settings.items())}
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=100)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
