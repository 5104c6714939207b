"""docker/versions.env: the one NGC release the deployment files use, checked everywhere.

`read_versions(path)` parses the file; `consistency_problems(root)` compares it with
`tritonkit.releases` and with every image tag and release named in the Dockerfiles,
compose file, Kubernetes manifests and README (an empty list means all agree).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.scaleout.errors import ScaleoutError
from tritonkit import releases
from tritonkit.errors import ToolkitError

VERSIONS_FILE = releases.VERSIONS_FILE
_NGC_IMAGE = re.compile(r"nvcr\.io/nvidia/(tritonserver|tensorrt):(\d\d\.\d\d)-py3")
_OWN_IMAGE = re.compile(r"triton-onnx-toolkit[/-](serving|plan-builder)(?::([\w.-]+))?")
_RELEASE_LABEL = re.compile(r'(?:com\.nvidia\.ngc\.release|NGC_RELEASE)\s*[=:]\s*"?(\d\d\.\d\d)')
_NEW_TAG = re.compile(r'newTag:\s*"?([\w.-]+)"?')
#: Files and directories whose image tags and releases must agree with versions.env.
CHECKED_PATHS: tuple[str, ...] = ("docker", "deploy", "README.md", "Makefile")


@dataclass(frozen=True, kw_only=True)
class Versions:
    """The values of docker/versions.env."""

    ngc_release: str
    triton_version: str
    tensorrt_version: str
    cuda_version: str
    triton_image: str
    tensorrt_image: str
    serving_image: str
    plan_builder_image: str
    gpu_compute_capabilities: tuple[str, ...]


def read_versions(path: Path) -> Versions:
    """Parse `KEY=value` lines (comments and blank lines skipped); ScaleoutError names the
    file and the missing key."""
    try:
        values = releases.read_env_file(path)
    except ToolkitError as e:
        raise ScaleoutError(str(e)) from e
    try:
        return Versions(
            ngc_release=values["NGC_RELEASE"],
            triton_version=values["TRITON_VERSION"],
            tensorrt_version=values["TENSORRT_VERSION"],
            cuda_version=values["CUDA_VERSION"],
            triton_image=values["TRITON_IMAGE"],
            tensorrt_image=values["TENSORRT_IMAGE"],
            serving_image=values["SERVING_IMAGE"],
            plan_builder_image=values["PLAN_BUILDER_IMAGE"],
            gpu_compute_capabilities=tuple(
                c.strip() for c in values["GPU_COMPUTE_CAPABILITIES"].split(",") if c.strip()
            ),
        )
    except KeyError as e:
        raise ScaleoutError(f"{path}: missing {e.args[0]}=...") from e


def release_problems(versions: Versions) -> list[str]:
    """Disagreements between versions.env and its entry in src/tritonkit/releases.py."""
    try:
        entry = releases.release(versions.ngc_release)
    except ToolkitError as e:
        return [str(e)]
    expected = {
        "TRITON_VERSION": (versions.triton_version, entry.triton),
        "TENSORRT_VERSION": (versions.tensorrt_version, entry.tensorrt),
        "CUDA_VERSION": (versions.cuda_version, entry.cuda),
        "TRITON_IMAGE": (versions.triton_image, entry.triton_image),
        "TENSORRT_IMAGE": (versions.tensorrt_image, entry.tensorrt_image),
    }
    problems = [
        f"versions.env {key}={have} but src/tritonkit/releases.py release "
        f"{entry.name} says {want}"
        for key, (have, want) in expected.items()
        if have != want
    ]
    for image in (versions.serving_image, versions.plan_builder_image):
        if not image.endswith(f":{versions.ngc_release}"):
            problems.append(f"versions.env image {image} is not tagged {versions.ngc_release}")
    return problems


def _files(root: Path) -> list[Path]:
    found: list[Path] = []
    for name in CHECKED_PATHS:
        path = root / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file())
    return found


def file_problems(path: Path, versions: Versions, *, shown: str) -> list[str]:
    """Release names and image tags in one file that differ from versions.env."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    problems: list[str] = []
    release = versions.ngc_release
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _NGC_IMAGE.finditer(line):
            if match.group(2) != release:
                problems.append(f"{shown}:{number}: {match.group()} is not release {release}")
        for match in _OWN_IMAGE.finditer(line):
            tag = match.group(2)
            if tag is not None and tag != release:
                problems.append(f"{shown}:{number}: {match.group()} is not tagged {release}")
        for pattern in (_RELEASE_LABEL, _NEW_TAG):
            for match in pattern.finditer(line):
                if match.group(1) != release:
                    problems.append(f"{shown}:{number}: names release {match.group(1)}, "
                                    f"not {release}")
    return problems


def consistency_problems(root: Path) -> list[str]:
    """Everything under `root` (the project) that disagrees with docker/versions.env."""
    versions = read_versions(root / VERSIONS_FILE)
    problems = release_problems(versions)
    for path in _files(root):
        problems += file_problems(path, versions, shown=str(path.relative_to(root)))
    return problems
