"""Spec options against the TensorRT of the targeted NGC release, refused at spec load.

Each `tensorrt:` option needs names in TensorRT's Python API (for the builder) and trtexec flag
values (for the recipe). They come from the release's held API surface (`tensorrt_api`), so an
option the pinned TensorRT lacks fails when the spec is read, naming the release and the held
TensorRT version that has it, instead of as an AttributeError in the container.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonkit.releases import Release
from tritonkit.spec import HardwareCompatibility, TensorRTOptions
from tritonkit.tensorrt.api.surface import TensorRTSurface, held_surfaces, load_surface


@dataclass(frozen=True, kw_only=True)
class Requirement:
    """What one option needs of TensorRT: a Python enum member, a trtexec flag (and value)."""

    field: str  # the spec field under `tensorrt:`
    shown: str  # the option as the user wrote it
    enum: str
    member: str
    flag: str
    flag_value: str | None = None

    def met_by(self, surface: TensorRTSurface) -> bool:
        flag = surface.trtexec_flags.get(self.flag)
        return (surface.has_enum_member(self.enum, self.member) and flag is not None
                and (self.flag_value is None or flag.accepts(self.flag_value)))

    @property
    def needs(self) -> str:
        value = f"={self.flag_value}" if self.flag_value is not None else ""
        return f"tensorrt.{self.enum}.{self.member} (trtexec {self.flag}{value})"


# Every plan is strongly typed: precision comes from the ONNX model.
STRONGLY_TYPED = Requirement(field="", shown="strongly typed plans",
                             enum="NetworkDefinitionCreationFlag", member="STRONGLY_TYPED",
                             flag="--stronglyTyped")
_HARDWARE: dict[HardwareCompatibility, tuple[str, str]] = {
    HardwareCompatibility.AMPERE_PLUS: ("AMPERE_PLUS", "ampere+"),
    HardwareCompatibility.SAME_COMPUTE_CAPABILITY: ("SAME_COMPUTE_CAPABILITY",
                                                    "sameComputeCapability"),
}


def requirements(options: TensorRTOptions) -> list[Requirement]:
    """What these options need of the TensorRT that builds the plan."""
    needed = [STRONGLY_TYPED]
    if options.version_compatible:
        needed.append(Requirement(field="version_compatible", shown="version_compatible: true",
                                  enum="BuilderFlag", member="VERSION_COMPATIBLE",
                                  flag="--versionCompatible"))
    level = _HARDWARE.get(options.hardware_compatibility)
    if level is not None:
        needed.append(Requirement(
            field="hardware_compatibility",
            shown=f"hardware_compatibility: {options.hardware_compatibility.value}",
            enum="HardwareCompatibilityLevel", member=level[0],
            flag="--hardwareCompatibilityLevel", flag_value=level[1]))
    return needed


def _first_holder(requirement: Requirement) -> str:
    for tag in held_surfaces():
        surface = load_surface(tag)
        if requirement.met_by(surface):
            return f"TensorRT {surface.version} has it"
    return "no TensorRT release the project holds has it"


def unsupported(options: TensorRTOptions, release: Release) -> list[tuple[str, str]]:
    """(field under `tensorrt:`, problem) for every option the release's TensorRT lacks.

    A release without a held surface cannot be checked: nothing is reported for it.
    """
    if release.tensorrt_api is None:
        return []
    surface = load_surface(release.tensorrt_api)
    problems = []
    for requirement in requirements(options):
        if requirement.met_by(surface):
            continue
        problems.append((requirement.field, (
            f"{requirement.shown} needs {requirement.needs}, which TensorRT "
            f"{release.tensorrt} of NGC release {release.name} lacks; "
            f"{_first_holder(requirement)}. Remove the option or pin a release whose TensorRT "
            "has it (docker/versions.env)")))
    return problems
