"""NGC container releases and the Triton, TensorRT and CUDA versions they ship.

A TensorRT plan loads only on the TensorRT version that built it, so a plan meant for the
`nvcr.io/nvidia/tritonserver:<release>-py3` container must be built in the
`nvcr.io/nvidia/tensorrt:<release>-py3` container of the same release.

Only entries whose versions were checked against NVIDIA's published tables are listed here.
Sources:
- Triton release notes, e.g.
  https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-25-01.html
  ("Release 25.01 is based on CUDA 12.8.0.038").
- Triton release compatibility matrix (TensorRT and CUDA version per release):
  https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/introduction/compatibility.html
  (source: triton-inference-server/server docs/introduction/compatibility.md). The Triton 2.54.0
  archive of that page lists 25.01 as its newest release:
  https://docs.nvidia.com/deeplearning/triton-inference-server/archives/triton-inference-server-2540/user-guide/docs/introduction/compatibility.html
- Frameworks support matrix (the complete table):
  https://docs.nvidia.com/deeplearning/frameworks/support-matrix/index.html
- CUDA DL container release notes (the contents of the base of an NGC release's containers), e.g.
  https://docs.nvidia.com/deeplearning/frameworks/cuda-dl-release-notes/rel-26-03.html
- The Triton version of a release: branch rYY.MM of triton-inference-server/server (its
  TRITON_VERSION file, and `build.py`'s DEFAULT_TRITON_VERSION_MAP, "release_version" beside
  "triton_container_version"), tagged vX.Y.Z.
Add a release only after reading its row there.

Not listed: 25.04 ... 26.02 and 26.04 and later. Their Triton release notes give the CUDA
version, but no NVIDIA table read so far gives the TensorRT version of their `-py3` containers
(compatibility.md's TensorRT column is that of the `-trtllm-python-py3` container, whose CUDA
differs from the release notes' in those releases, so it is not the `-py3` container's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tritonkit.errors import ToolkitError
from tritonkit.tensorrt.api.surface import held_surfaces, load_surface

_VERSION = re.compile(r"^\d+(\.\d+)*$")


def version_triplet(version: str) -> tuple[int, int, int]:
    """`major.minor.patch` of a version string: "10.8.0.43" -> (10, 8, 0); "10.8" -> (10, 8, 0).

    TensorRT releases are numbered major.minor.patch plus a build number; plans are compared
    with the release on these three numbers.
    """
    text = version.strip()
    if not _VERSION.match(text):
        raise ToolkitError(f"not a version number: {version!r}")
    parts = [int(p) for p in text.split(".")][:3]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


#: What `classification_bytes_fix` stands for, for messages (lint names it).
#: Asking for the classification extension (`class_count`, or `parameters.classification` over
#: HTTP) on a BYTES output divided by TRITONSERVER_DataTypeByteSize(BYTES) == 0 in
#: src/classification.cc: SIGFPE, the whole server dies (seen on Triton 2.51).
#: - server PR #8267 "fix: Improve data type validation for classification": merge commit
#:   251f8ae4b2a566ae2c0b25df727eb6f42ab4795c on main (2025-07-01) returns INVALID_ARG
#:   "class result not available for output due to unsupported type 'BYTES'". Contained in
#:   branches r25.08 ... r26.08 (tags v2.60.0 ... v2.71.0); cherry-picked to r25.07 as
#:   c70ea0353e45b6fc5a41adab68a0cd1365ba8066 (PR #8309, tag v2.59.1). Not in r25.01 ... r25.06.
#: - server PR #8603 "feat: guard against unbounded output size": commit
#:   3ef60624854bab83f5da3a725a3dac960640c051 on main (2026-01-23) rejects classification outputs
#:   of more than 1,000,000 elements (INVALID_ARG "classification output tensor too large").
#:   Contained in branches r26.02 ... r26.08 (tags v2.66.0 ... v2.71.0); not in r26.01 or older.
#: (`git branch --contains` / `git tag --contains` in github.com/triton-inference-server/server,
#: and src/classification.cc read on every rYY.MM branch.)
CLASSIFICATION_BYTES_FIX = (
    "Triton server PRs #8267 (classification on a BYTES output: INVALID_ARG instead of SIGFPE; "
    "Triton 2.59.1/r25.07, 2.60.0/r25.08 and later) and #8603 (classification output size "
    "bound; Triton 2.66.0/r26.02 and later)"
)


def tensorrt_api_surface(tensorrt: str) -> str | None:
    """The held TensorRT API surface for a TensorRT version ("10.16.0.72" -> "10.16"), or None."""
    major, minor, _ = version_triplet(tensorrt)
    for tag in held_surfaces():  # the committed data of tritonkit/tensorrt/api
        if load_surface(tag).major_minor == (major, minor):
            return tag
    return None


@dataclass(frozen=True, kw_only=True)
class Release:
    """One NGC release (`YY.MM`) and the component versions inside its containers."""

    name: str  # "25.01"
    triton: str  # Triton Inference Server version, "2.54.0"
    tensorrt: str  # full TensorRT version, "10.8.0.43"
    cuda: str  # CUDA toolkit version, "12.8.0.038"
    # The held TensorRT API surface whose major.minor is this release's TensorRT ("10.8.0",
    # "10.16", "11.1"), None when the project holds none for it; checked against `tensorrt`.
    tensorrt_api: str | None
    # True when the release's Triton contains both server fixes of CLASSIFICATION_BYTES_FIX
    # (#8267 and #8603); False means one classification request on a BYTES output can kill it
    # (before #8267) or an unbounded classification output is still accepted (before #8603).
    classification_bytes_fix: bool

    def __post_init__(self) -> None:
        for field_name in ("triton", "tensorrt", "cuda"):
            value = getattr(self, field_name)
            if not _VERSION.match(value):
                raise ToolkitError(f"release {self.name}: {field_name} {value!r} is not a version")
        expected = tensorrt_api_surface(self.tensorrt)
        if self.tensorrt_api != expected:
            raise ToolkitError(
                f"release {self.name}: tensorrt_api {self.tensorrt_api!r} but TensorRT "
                f"{self.tensorrt} has held API surface {expected!r}"
            )

    @property
    def triton_image(self) -> str:
        return f"nvcr.io/nvidia/tritonserver:{self.name}-py3"

    @property
    def tensorrt_image(self) -> str:
        return f"nvcr.io/nvidia/tensorrt:{self.name}-py3"


RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        # compatibility.md row 24.12: TensorRT 10.7.0, CUDA 12.6.3; Triton 2.53.0.
        Release(
            name="24.12",
            triton="2.53.0",
            tensorrt="10.7.0.23",
            cuda="12.6.3",
            tensorrt_api=None,
            classification_bytes_fix=False,
        ),
        # rel-25-01 release notes: CUDA 12.8.0.038; compatibility.md row 25.01: TensorRT
        # 10.8.0.43 with that same CUDA; Triton 2.54.0 (archive triton-inference-server-2540).
        Release(
            name="25.01",
            triton="2.54.0",
            tensorrt="10.8.0.43",
            cuda="12.8.0.038",
            tensorrt_api="10.8.0",
            classification_bytes_fix=False,
        ),
        # rel-25-02 release notes: "Release 25.02 is based on CUDA 12.8.0.38"; compatibility.md
        # row 25.02 (tritonserver:25.02-trtllm-python-py3): TensorRT 10.8.0.43, CUDA 12.8.0.038,
        # the same CUDA; Triton 2.55.0: server branch r25.02 TRITON_VERSION, tag v2.55.0.
        Release(
            name="25.02",
            triton="2.55.0",
            tensorrt="10.8.0.43",
            cuda="12.8.0.038",
            tensorrt_api="10.8.0",
            classification_bytes_fix=False,
        ),
        # rel-25-03 release notes: "Release 25.03 is based on CUDA 12.8.1.012"; compatibility.md
        # row 25.03 (tritonserver:25.03-trtllm-python-py3): TensorRT 10.9.0.34, CUDA 12.8.1.012,
        # the same CUDA; Triton 2.56.0: server branch r25.03 TRITON_VERSION, tag v2.56.0.
        Release(
            name="25.03",
            triton="2.56.0",
            tensorrt="10.9.0.34",
            cuda="12.8.1.012",
            tensorrt_api=None,
            classification_bytes_fix=False,
        ),
        # CUDA DL release notes rel-26-03 (the 26.03 containers' base): "NVIDIA CUDA 13.2.0.046",
        # "NVIDIA TensorRT 10.16.0.72", "Release 26.03 is based on CUDA 13.2.0";
        # compatibility.md row 26.03 (tritonserver:26.03-vllm-python-py3): CUDA 13.2.0.046, the
        # same CUDA (its trtllm row, TensorRT 10.14.1.48 / CUDA 13.1.0.036, is that other
        # container's); Triton 2.67.0: server branch r26.03 TRITON_VERSION and build.py
        # ("release_version": "2.67.0", "triton_container_version": "26.03"), tag v2.67.0.
        # r26.03 contains #8267 (251f8ae4b) and #8603 (3ef606248).
        Release(
            name="26.03",
            triton="2.67.0",
            tensorrt="10.16.0.72",
            cuda="13.2.0.046",
            tensorrt_api="10.16",
            classification_bytes_fix=True,
        ),
    )
}


def known_releases() -> tuple[str, ...]:
    return tuple(sorted(RELEASES))


def release(name: str) -> Release:
    """The release called `name` ("25.01"); a `ToolkitError` listing the known ones otherwise."""
    try:
        return RELEASES[name]
    except KeyError:
        raise ToolkitError(
            f"unknown NGC release {name!r}; known releases: {', '.join(known_releases())} "
            "(add a release to src/tritonkit/releases.py after checking NVIDIA's support matrix)"
        ) from None


#: The file that pins the NGC release of a project (relative to the project's folder).
VERSIONS_FILE = Path("docker") / "versions.env"
_ENV_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines of a versions file (comments and blank lines skipped); a ToolkitError
    names the file and line that is neither."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ToolkitError(f"{path}: cannot read ({e.strerror})") from e
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise ToolkitError(f"{path}:{number}: not a KEY=value line: {raw!r}")
        values[match.group(1)] = match.group(2).strip().strip('"')
    return values


def pinned_release(project_dir: Path) -> str | None:
    """NGC_RELEASE of `<project_dir>/docker/versions.env`, or None when there is no such file."""
    path = project_dir / VERSIONS_FILE
    if not path.is_file():
        return None
    name = read_env_file(path).get("NGC_RELEASE")
    if not name:
        raise ToolkitError(f"{path}: sets no NGC_RELEASE")
    return name
