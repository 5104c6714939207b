"""Build Triton's own ONNX Runtime backend for the local tritonserver, once, and cache it.

The local server (`tritonserver` 2.51 of the nvidia-pytriton wheel, NGC release 24.10) ships
only the Python backend. This compiles the r24.10 `onnxruntime_backend` (with Triton's `core`,
`backend` and `common` of the same branch and ONNX Runtime's C header) against the
`libonnxruntime` that the installed `onnxruntime` wheel carries; the recipe is
`../shared/third_party/SOURCES.md`'s.

Sources: `TRITONKIT_BACKEND_SOURCES` (a folder holding `onnxruntime_backend/`, `core/`,
`backend/`, `common/`) and `TRITONKIT_ONNXRUNTIME_HEADERS` (a folder holding
`onnxruntime_c_api.h`); without them, shallow git clones of the r24.10 branches and the header
of ONNX Runtime 1.19 from GitHub. The result is cached under a key of the sources' identity,
the ONNX Runtime build it links, the compiler and cmake; a second call finds it and builds
nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tritonkit.errors import NativeBuildError

log = logging.getLogger(__name__)

BACKEND_BRANCH = "r24.10"  # Triton 2.51 = NGC 24.10: its backends come from these branches
REPOSITORIES = ("onnxruntime_backend", "core", "backend", "common")
GITHUB = "https://github.com/triton-inference-server/{name}.git"
HEADER_URL = ("https://raw.githubusercontent.com/microsoft/onnxruntime/v1.19.0/"
              "include/onnxruntime/core/session/onnxruntime_c_api.h")
HEADER = "onnxruntime_c_api.h"
SOURCES_ENV = "TRITONKIT_BACKEND_SOURCES"
HEADERS_ENV = "TRITONKIT_ONNXRUNTIME_HEADERS"
BACKEND_LIBRARY = "libtriton_onnxruntime.so"
ORT_SONAME = "libonnxruntime.so.1"
RECORD = "build.json"
_BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True, kw_only=True)
class BackendBuild:
    """What a cached backend was built from: the cache key is the hash of all of it."""

    branch: str
    sources: dict[str, str]  # repository -> git commit, or "tree:<sha256>" of a plain folder
    header_sha256: str
    onnxruntime: str  # the onnxruntime wheel's version, whose library the backend links
    compiler: str
    cmake: str

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tritonkit" / "onnxruntime-backend"


def onnxruntime_library() -> Path:
    """The shared ONNX Runtime library of the installed `onnxruntime` wheel."""
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError as e:
        raise NativeBuildError(
            "the ONNX Runtime backend needs the onnxruntime wheel (pip install onnxruntime)"
        ) from e
    capi = Path(onnxruntime.__file__).parent / "capi"
    found = sorted(capi.glob("libonnxruntime.so.*"))
    if not found:
        raise NativeBuildError(f"{capi}: holds no libonnxruntime.so.<version>")
    return found[0]


def _onnxruntime_version() -> str:
    return onnxruntime_library().name.removeprefix("libonnxruntime.so.")


def _tool_version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeBuildError(
            f"`{command[0]}` is needed to build the ONNX Runtime backend and could not run "
            f"({e}); install cmake, g++, make and rapidjson-dev (scripts/install_system_deps.sh)"
        ) from e
    return out.stdout.splitlines()[0].strip()


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return "tree:" + digest.hexdigest()


def _identity(folder: Path) -> str:
    if (folder / ".git").exists():
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        return commit
    return _tree_digest(folder)


def _fetch_sources(work: Path) -> tuple[Path, Path]:
    """Clone the r24.10 branches and download the header (a machine that reaches GitHub)."""
    sources = work / "sources"
    for name in REPOSITORIES:
        log.info("cloning %s (%s)", name, BACKEND_BRANCH)
        _run(["git", "clone", "--quiet", "--depth", "1", "--branch", BACKEND_BRANCH,
              GITHUB.format(name=name), str(sources / name)], cwd=work, what=f"cloning {name}")
    headers = work / "headers"
    headers.mkdir()
    try:
        with urllib.request.urlopen(HEADER_URL, timeout=60) as answer:
            (headers / HEADER).write_bytes(answer.read())
    except OSError as e:
        raise NativeBuildError(f"downloading {HEADER_URL} failed ({e}); set {HEADERS_ENV} to a "
                               f"folder holding {HEADER}") from e
    return sources, headers


def _source_folders(work: Path) -> tuple[Path, Path]:
    given, headers = os.environ.get(SOURCES_ENV), os.environ.get(HEADERS_ENV)
    if not given:
        return _fetch_sources(work)
    sources = Path(given).resolve()
    missing = [n for n in REPOSITORIES if not (sources / n / "CMakeLists.txt").is_file()]
    if missing:
        raise NativeBuildError(f"{SOURCES_ENV}={sources} lacks {', '.join(missing)} "
                               f"(each a checkout of its {BACKEND_BRANCH} branch)")
    if not headers or not (Path(headers) / HEADER).is_file():
        raise NativeBuildError(f"{HEADERS_ENV} must name a folder holding {HEADER} "
                               f"(ONNX Runtime 1.19's) when {SOURCES_ENV} is set")
    return sources, Path(headers).resolve()


def _run(command: list[str], *, cwd: Path, what: str) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False,
                            timeout=_BUILD_TIMEOUT_S)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise NativeBuildError(f"{what} failed (exit {result.returncode}):\n{tail}")


def _without_googletest(common: Path, work: Path) -> Path:
    """A copy of `common` whose src/CMakeLists.txt skips its test folder (which downloads
    googletest, impossible offline)."""
    copy = work / "common"
    shutil.copytree(common, copy, ignore=shutil.ignore_patterns(".git"))
    cmake_lists = copy / "src" / "CMakeLists.txt"
    text = cmake_lists.read_text(encoding="utf-8")
    cmake_lists.write_text(re.sub(r"^[ \t]*add_subdirectory\(test\)[ \t]*$", "", text, flags=re.M),
                           encoding="utf-8")
    return copy


def _compile(sources: Path, headers: Path, work: Path, jobs: int) -> Path:
    ort_libs = work / "onnxruntime-lib"
    ort_libs.mkdir()
    library = onnxruntime_library()
    for name in ("libonnxruntime.so", ORT_SONAME):  # find_library wants the plain name
        (ort_libs / name).symlink_to(library)
    common = _without_googletest(sources / "common", work)
    build = work / "build"
    build.mkdir()
    options = {
        "CMAKE_BUILD_TYPE": "Release",
        "TRITON_ENABLE_GPU": "OFF",
        "TRITON_ENABLE_ONNXRUNTIME_TENSORRT": "OFF",
        "TRITON_ENABLE_ONNXRUNTIME_OPENVINO": "OFF",
        "TRITON_ONNXRUNTIME_INCLUDE_PATHS": str(headers),
        "TRITON_ONNXRUNTIME_LIB_PATHS": str(ort_libs),
        "TRITON_COMMON_REPO_TAG": BACKEND_BRANCH,
        "TRITON_CORE_REPO_TAG": BACKEND_BRANCH,
        "TRITON_BACKEND_REPO_TAG": BACKEND_BRANCH,
        "FETCHCONTENT_FULLY_DISCONNECTED": "ON",
        "FETCHCONTENT_SOURCE_DIR_REPO-COMMON": str(common),
        "FETCHCONTENT_SOURCE_DIR_REPO-CORE": str(sources / "core"),
        "FETCHCONTENT_SOURCE_DIR_REPO-BACKEND": str(sources / "backend"),
    }
    configure = ["cmake", str(sources / "onnxruntime_backend"),
                 *(f"-D{k}={v}" for k, v in options.items())]
    _run(configure, cwd=build, what="configuring the ONNX Runtime backend (cmake)")
    _run(["cmake", "--build", ".", "--parallel", str(jobs),
          "--target", "triton-onnxruntime-backend"],
         cwd=build, what="compiling the ONNX Runtime backend")
    found = list(build.rglob(BACKEND_LIBRARY))
    if not found:
        raise NativeBuildError(f"the build produced no {BACKEND_LIBRARY}")
    return found[0]


def ensure_onnxruntime_backend(cache_dir: Path | None = None, *, jobs: int | None = None) -> Path:
    """The cached `libtriton_onnxruntime.so` for the installed onnxruntime, built when missing.

    Raises NativeBuildError naming what is missing (a tool, a source, the onnxruntime wheel).
    """
    cache = (cache_dir or default_cache_dir()).resolve()
    with tempfile.TemporaryDirectory(prefix="ort-backend-") as tmp:
        work = Path(tmp)
        sources, headers = _source_folders(work)
        record = BackendBuild(
            branch=BACKEND_BRANCH,
            sources={name: _identity(sources / name) for name in REPOSITORIES},
            header_sha256=hashlib.sha256((headers / HEADER).read_bytes()).hexdigest(),
            onnxruntime=_onnxruntime_version(),
            compiler=_tool_version(["c++", "--version"]),
            cmake=_tool_version(["cmake", "--version"]),
        )
        target = cache / record.key()
        if (target / BACKEND_LIBRARY).is_file() and (target / RECORD).is_file():
            log.info("ONNX Runtime backend: cached at %s", target)
            return target / BACKEND_LIBRARY
        log.info("building Triton's ONNX Runtime backend (%s, onnxruntime %s) into %s",
                 BACKEND_BRANCH, record.onnxruntime, target)
        built = _compile(sources, headers, work, jobs or max(1, os.cpu_count() or 1))
        staging = cache / f".{record.key()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copy2(built, staging / BACKEND_LIBRARY)
        (staging / RECORD).write_text(json.dumps(asdict(record), indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target / BACKEND_LIBRARY


_ONNXRUNTIME_MODEL = re.compile(r'^\s*(backend:\s*"onnxruntime"|platform:\s*"onnxruntime_onnx")',
                                re.M)


def serves_onnxruntime(repository: Path) -> bool:
    """Whether a model of the repository runs on Triton's ONNX Runtime backend."""
    return any(_ONNXRUNTIME_MODEL.search(config.read_text(encoding="utf-8", errors="replace"))
               for config in repository.glob("*/config.pbtxt"))


def find_onnxruntime_backend(cache_dir: Path | None = None) -> Path | None:
    """The newest cached backend built against the installed onnxruntime, or None.

    Serving needs no source and no network: any cached build linked against this exact
    onnxruntime version loads (the library carries ONNX Runtime's symbol versions).
    """
    cache = cache_dir or default_cache_dir()
    version = _onnxruntime_version()
    matching = []
    for record in cache.glob(f"*/{RECORD}"):
        try:
            built = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if built.get("onnxruntime") == version and (record.parent / BACKEND_LIBRARY).is_file():
            matching.append(record.parent / BACKEND_LIBRARY)
    return max(matching, key=lambda p: p.stat().st_mtime) if matching else None


def onnxruntime_backend_library(cache_dir: Path | None = None) -> Path:
    """A backend for the local server: the cached one, else built now (see the module doc)."""
    return find_onnxruntime_backend(cache_dir) or ensure_onnxruntime_backend(cache_dir)
