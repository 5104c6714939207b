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
Add a release only after reading its row there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from build_scripts.errors import BuildError

_VERSION = re.compile(r"^\d+(\.\d+)*$")


@dataclass(frozen=True, kw_only=True)
class Release:
    """One NGC release (`YY.MM`) and the component versions inside its containers."""

    name: str  # "25.01"
    triton: str  # Triton Inference Server version, "2.54.0"
    tensorrt: str  # full TensorRT version, "10.8.0.43"
    cuda: str  # CUDA toolkit version, "12.8.0.038"

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
        Release(name="24.12", triton="2.53.0", tensorrt="10.7.0.23", cuda="12.6.3"),
        # rel-25-01 release notes: CUDA 12.8.0.038; compatibility.md row 25.01: TensorRT
        # 10.8.0.43 with that same CUDA; Triton 2.54.0 (archive triton-inference-server-2540).
        Release(name="25.01", triton="2.54.0", tensorrt="10.8.0.43", cuda="12.8.0.038"),
    )
}


def known_releases() -> tuple[str, ...]:
    return tuple(sorted(RELEASES))


def release(name: str) -> Release:
    """The release called `name` ("25.01"); a `BuildError` listing the known ones otherwise."""
    try:
        return RELEASES[name]
    except KeyError:
        raise BuildError(
            f"unknown NGC release {name!r}; known releases: {', '.join(known_releases())} "
            "(add a release to build_scripts/releases.py after checking NVIDIA's support matrix)"
        ) from None


def version_triplet(version: str) -> tuple[int, int, int]:
    """`major.minor.patch` of a version string: "10.8.0.43" -> (10, 8, 0); "10.8" -> (10, 8, 0).

    TensorRT releases are numbered major.minor.patch plus a build number; plans are compared
    with the release on these three numbers.
    """
    text = version.strip()
    if not _VERSION.match(text):
        raise BuildError(f"not a version number: {version!r}")
    parts = [int(p) for p in text.split(".")][:3]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]
