"""The Python API and trtexec flags of one TensorRT release, held as committed project data.

A surface is extracted from NVIDIA's own sources (`extract.py`) and stored as JSON under
`data/`; `surface_for_tensorrt("10.8.0.43")` picks the held surface of the same major.minor.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tritonkit.errors import TensorRTApiError

SCHEMA = 1
_DATA_PACKAGE = "tritonkit.tensorrt.api"
_FILE = re.compile(r"^tensorrt-(?P<tag>[0-9][0-9.]*)\.json$")


def version_key(version: str) -> tuple[int, ...]:
    """`"10.16.0.72"` -> (10, 16, 0, 72); raises TensorRTApiError for anything else."""
    if not re.fullmatch(r"v?\d+(\.\d+)*", version):
        raise TensorRTApiError(f"{version!r} is not a TensorRT version (expected e.g. 10.8.0.43)")
    return tuple(int(part) for part in version.lstrip("v").split("."))


@dataclass(frozen=True, kw_only=True)
class TrtexecFlag:
    """One `--flag` that trtexec's samples/common/sampleOptions.cpp accepts."""

    name: str
    values: tuple[str, ...] | None  # None = free-form value
    takes_value: bool  # False: a switch (trtexec ignores any `=value`)
    # The subset of `values` that trtexec compares after lower- or upper-casing the argument.
    values_any_case: tuple[str, ...] = ()

    def accepts(self, token: str) -> bool:
        """Whether `token` is one of the enumerated values (always true for free-form flags)."""
        if self.values is None or token in self.values:
            return True
        return any(token.lower() == value.lower() for value in self.values_any_case)

    def as_json(self) -> dict[str, Any]:
        return {"takes_value": self.takes_value,
                "values": None if self.values is None else list(self.values),
                "values_any_case": list(self.values_any_case)}


def _frozen_map(mapping: Mapping[str, Any], convert: Any = tuple) -> Mapping[str, Any]:
    return MappingProxyType({key: convert(mapping[key]) for key in sorted(mapping)})


@dataclass(frozen=True, kw_only=True)
class TensorRTSurface:
    """Python names (enums, classes, module-level names) and trtexec flags of one release."""

    version: str  # from NvInferVersion.h, with the build number when it is there: "10.8.0.43"
    enums: Mapping[str, tuple[str, ...]]  # "BuilderFlag" -> members; nested: "ILogger.Severity"
    classes: Mapping[str, tuple[str, ...]]  # Python class -> methods/properties, inherited too
    functions: tuple[str, ...]  # module-level functions (`m.def`)
    trtexec_flags: Mapping[str, TrtexecFlag]  # "--fp16" -> flag
    # Module-level attributes (`m.attr`, exported enum values): "float32" -> "DataType.FLOAT".
    module_attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        version_key(self.version)
        object.__setattr__(self, "enums", _frozen_map(self.enums, lambda v: tuple(sorted(v))))
        object.__setattr__(self, "classes", _frozen_map(self.classes, lambda v: tuple(sorted(v))))
        object.__setattr__(self, "functions", tuple(sorted(self.functions)))
        object.__setattr__(self, "trtexec_flags", _frozen_map(self.trtexec_flags, lambda f: f))
        object.__setattr__(self, "module_attributes", _frozen_map(self.module_attributes, str))

    def __hash__(self) -> int:  # the mappings are read-only views, so hash what identifies
        return hash((self.version, tuple(self.enums), tuple(self.classes),
                     tuple(self.trtexec_flags)))

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor = version_key(self.version)[:2]
        return major, minor

    def has_enum_member(self, enum: str, member: str) -> bool:
        return member in self.enums.get(enum, ())

    def has_member(self, cls: str, member: str) -> bool:
        return member in self.classes.get(cls, ())

    def has_trtexec_flag(self, name: str) -> bool:
        return name in self.trtexec_flags

    def to_json(self) -> str:
        """Sorted, stable JSON (what `data/tensorrt-<tag>.json` holds)."""
        document = {
            "schema": SCHEMA,
            "version": self.version,
            "enums": {name: list(members) for name, members in self.enums.items()},
            "classes": {name: list(members) for name, members in self.classes.items()},
            "functions": list(self.functions),
            "module_attributes": dict(self.module_attributes),
            "trtexec_flags": {name: flag.as_json() for name, flag in self.trtexec_flags.items()},
        }
        return json.dumps(document, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TensorRTSurface:
        try:
            document = json.loads(text)
            if document.get("schema") != SCHEMA:
                raise TensorRTApiError(f"unsupported surface schema {document.get('schema')!r}")
            return cls(
                version=document["version"],
                enums=document["enums"],
                classes=document["classes"],
                functions=tuple(document["functions"]),
                module_attributes=document.get("module_attributes", {}),
                trtexec_flags={
                    name: TrtexecFlag(
                        name=name,
                        takes_value=bool(flag["takes_value"]),
                        values=None if flag["values"] is None else tuple(flag["values"]),
                        values_any_case=tuple(flag.get("values_any_case", ())),
                    )
                    for name, flag in document["trtexec_flags"].items()
                },
            )
        except (KeyError, TypeError, ValueError) as e:
            raise TensorRTApiError(f"malformed TensorRT surface JSON: {e}") from e


def data_file_name(tag: str) -> str:
    """`"v10.8.0"` or `"10.8.0"` -> `"tensorrt-10.8.0.json"`."""
    version_key(tag)
    return f"tensorrt-{tag.lstrip('v')}.json"


def held_surfaces() -> tuple[str, ...]:
    """Tags of the committed surfaces, oldest first: ("10.8.0", "10.16", "11.1")."""
    data = importlib.resources.files(_DATA_PACKAGE) / "data"
    tags = [m.group("tag") for entry in data.iterdir() if (m := _FILE.match(entry.name))]
    return tuple(sorted(tags, key=version_key))


@functools.cache
def load_surface(tag: str) -> TensorRTSurface:
    """The committed surface of one held release (`tag` as in held_surfaces(), "v" optional)."""
    resource = importlib.resources.files(_DATA_PACKAGE) / "data" / data_file_name(tag)
    if not resource.is_file():
        raise TensorRTApiError(
            f"no TensorRT API surface {tag!r} is held; held: {', '.join(held_surfaces())}")
    return TensorRTSurface.from_json(resource.read_text(encoding="utf-8"))


def surface_for_tensorrt(version: str) -> TensorRTSurface:
    """The held surface of the same major.minor as a full TensorRT version ("10.8.0.43")."""
    wanted = version_key(version)[:2]
    if len(wanted) < 2:
        raise TensorRTApiError(f"{version!r} has no minor version (expected e.g. 10.8.0.43)")
    for tag in held_surfaces():
        surface = load_surface(tag)
        if surface.major_minor == wanted:
            return surface
    held = ", ".join(f"{tag} (TensorRT {load_surface(tag).version})" for tag in held_surfaces())
    raise TensorRTApiError(
        f"no TensorRT API surface is held for TensorRT {version} "
        f"({wanted[0]}.{wanted[1]}); held: {held}. Add NVIDIA's sources for it under "
        "shared/third_party/tensorrt-api/ and run `python -m tritonkit.tensorrt.api extract`")
