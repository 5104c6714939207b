"""Lint a Triton model repository for the mistakes Triton reports only at load time, or never.

`lint_repository(root)` returns every problem found, sorted by path; it raises only when the
repository itself does not exist. Rules (layout rules follow Triton's model_repository.md):

- each non-hidden subdirectory of the root is a model and holds an explicit `config.pbtxt`
  (Triton can auto-complete some configs; this toolkit requires them written out);
- the config parses (errors carry line:column), and its `name`, when set, is the directory name;
- the config sets a platform or a backend; there are no leftover `${...}` template placeholders;
- every model, ensembles included, has at least one version directory; version directories are
  positive integers without a leading 0 (Triton silently ignores `-1/`, `v1/`, `latest/`, `01/`);
  no `config.pbtxt` sits inside a version directory (Triton ignores it there);
- every version directory holds the file its platform/backend loads (`model.plan`,
  `model.onnx`, `model.pt`, `model.py`; `default_model_filename` and `cc_model_filenames`
  override the name; ensembles need none);
- input/output dims contain no 0 and nothing below -1; empty dims need a `reshape` (a scalar is
  dims [1] with an empty reshape);
- label files (`label_filename`) and warmup data files (`warmup/<input_data_file>`) exist;
- the repository is self-contained: no config names a file outside its model directory. A
  config parameter, label file or warmup file whose value is an absolute path (`/...`, `C:\\`)
  or climbs with `..` is refused. By convention a parameter names a file only when it is
  `labels_file` or its value lies under `assets/` (where the builder copies a Python step's
  `assets:`); those must exist inside the model directory (symbolic links included). Other
  parameter values ("0.485,0.456,0.406", "conf_threshold,iou_threshold") are not paths;
- ensembles are wired correctly (`tritonkit.build.ensemble_check.validate_ensemble`);
- with `release`: every TensorRT plan has a build manifest whose TensorRT version the release's
  TensorRT loads: the same major.minor.patch, or for a version-compatible plan an older build
  of a supported major (`plan_compatibility.plan_loads_on`);
- with `server_flags` (the serving container's flags, docker/triton-server.flags): every flag a
  plan's manifest says it needs (a version-compatible plan needs
  `--backend-config=tensorrt,version-compatible=true`) is among them;
- with `compute_capabilities` (the GPU architectures the deployment declares, e.g. ("9.0",)):
  every plan's manifest records one of them, because a plan runs only on the GPU architecture
  it was built for.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tritonclient.grpc import model_config_pb2

from tritonkit import releases
from tritonkit.build.ensemble_check import ENSEMBLE_PLATFORM, validate_ensemble
from tritonkit.build.manifest import MANIFEST_NAME, Manifest, read_manifest
from tritonkit.errors import ConfigError, ToolkitError
from tritonkit.repository.config_io import CONFIG_NAME, parse_config
from tritonkit.runtime import parameters as parameter_names
from tritonkit.tensorrt.compatibility import plan_loads_on

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\$\{[^}\n]*\}")
_VERSION_DIR = re.compile(r"^[1-9][0-9]*$")
_COMPUTE_CAPABILITY = re.compile(r"^\d+\.\d+$")
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")
# Model-directory entries that are not versions: custom configs (`configs/`), warmup data
# (`warmup/`, where ModelWarmup.Input.input_data_file lives), a Python step's assets
# (`assets/`), Python's bytecode cache.
WARMUP_DIR = "warmup"
_NOT_VERSIONS = frozenset({"configs", WARMUP_DIR, parameter_names.ASSETS_DIR, "__pycache__"})
_SELF_CONTAINED = (
    "a repository must be self-contained: copy the file into the model directory (a Python "
    "step's `assets:` in the spec) and name it relative to the model directory"
)


def outside_problem(value: str) -> str | None:
    """Why a path named in a config leaves its model directory by itself, or None."""
    if value.startswith(("/", "\\")) or _WINDOWS_ABSOLUTE.match(value):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", value):
        return "which climbs out of the model directory with '..'"
    return None


def names_a_file(key: str, value: str) -> bool:
    """Whether a config parameter names a file in the model directory, by convention."""
    return key == parameter_names.LABELS_FILE or value == parameter_names.ASSETS_DIR or (
        value.startswith(f"{parameter_names.ASSETS_DIR}/"))


class ModelKind(str, Enum):
    """What loads a model, from its platform or backend."""

    TENSORRT = "tensorrt"
    ONNXRUNTIME = "onnxruntime"
    PYTORCH = "pytorch"
    PYTHON = "python"
    ENSEMBLE = "ensemble"
    OTHER = "other"


_DEFAULT_MODEL_FILE: dict[ModelKind, str] = {
    ModelKind.TENSORRT: "model.plan",
    ModelKind.ONNXRUNTIME: "model.onnx",
    ModelKind.PYTORCH: "model.pt",
    ModelKind.PYTHON: "model.py",
}


def model_kind(config: model_config_pb2.ModelConfig) -> ModelKind:
    platform, backend = config.platform, config.backend
    if platform == ENSEMBLE_PLATFORM:
        return ModelKind.ENSEMBLE
    if platform == "tensorrt_plan" or backend == "tensorrt":
        return ModelKind.TENSORRT
    if platform == "onnxruntime_onnx" or backend == "onnxruntime":
        return ModelKind.ONNXRUNTIME
    if platform == "pytorch_libtorch" or backend == "pytorch":
        return ModelKind.PYTORCH
    if backend == "python":
        return ModelKind.PYTHON
    return ModelKind.OTHER


def model_files(config: model_config_pb2.ModelConfig) -> tuple[str, ...]:
    """The file names every version directory must hold (empty for ensembles and unknown kinds).

    `cc_model_filenames` (one plan per GPU compute capability) names all of them; otherwise
    `default_model_filename`, or the backend's default name.
    """
    kind = model_kind(config)
    if kind not in _DEFAULT_MODEL_FILE:
        return ()
    per_gpu = sorted(set(config.cc_model_filenames.values()))
    if per_gpu:
        return tuple(per_gpu)
    return (config.default_model_filename or _DEFAULT_MODEL_FILE[kind],)


@dataclass(frozen=True, kw_only=True)
class LintProblem:
    """One problem; `path` is relative to the repository root ("." for the root itself). A
    warning names a risk of the deployment rather than an error of the repository."""

    path: Path
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {'warning: ' if self.warning else ''}{self.message}"


@dataclass(frozen=True, kw_only=True)
class _Model:
    name: str  # the directory name, which is the model name Triton uses
    directory: Path
    config_path: Path
    config: model_config_pb2.ModelConfig | None  # None: missing or unreadable
    versions: tuple[Path, ...]


class _Linter:
    def __init__(
        self,
        root: Path,
        release: releases.Release | None,
        compute_capabilities: tuple[str, ...] | None = None,
        server_flags: tuple[str, ...] | None = None,
    ) -> None:
        self.root = root
        self.release = release
        self.compute_capabilities = compute_capabilities
        self.server_flags = server_flags
        self.problems: list[LintProblem] = []

    def add(self, path: Path, message: str, *, warning: bool = False) -> None:
        try:
            shown = path.relative_to(self.root)
        except ValueError:
            shown = path
        self.problems.append(LintProblem(path=shown, message=message, warning=warning))

    def run(self) -> list[LintProblem]:
        if not self.root.is_dir():
            self.add(
                self.root,
                "is not a directory; a model repository is a directory holding "
                "one subdirectory per model",
            )
            return self.problems
        directories = sorted(
            d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        if not directories:
            self.add(self.root, "holds no model directories")
        models = [self._model(d) for d in directories]
        configs = {m.name: m.config for m in models if m.config is not None}
        unreadable = {m.name for m in models if m.config is None and m.config_path.is_file()}
        for model in models:
            if model.config is None:
                continue
            kind = model_kind(model.config)
            self._bytes_outputs(model, model.config)
            if kind is ModelKind.ENSEMBLE:
                self._ensemble(model, model.config, configs, unreadable)
            elif kind is ModelKind.TENSORRT and (
                self.release is not None
                or self.compute_capabilities is not None
                or self.server_flags is not None
            ):
                self._provenance(model, model.config, self.release)
        self.problems.sort(key=lambda p: (str(p.path), p.message))
        log.info(
            "linted %s: %d model(s), %d problem(s)", self.root, len(models), len(self.problems)
        )
        return self.problems

    def _bytes_outputs(self, model: _Model, config: model_config_pb2.ModelConfig) -> None:
        """On a release without the classification fixes, every BYTES output is one request
        away from ending the server."""
        if self.release is None or self.release.classification_bytes_fix:
            return
        for output in config.output:
            if output.data_type == model_config_pb2.TYPE_STRING:
                self.add(model.config_path, warning=True, message=(
                    f"output {output.name!r} is BYTES: on release {self.release.name} "
                    f"(Triton {self.release.triton}) one request for the classification "
                    f"extension on it (class_count; HTTP parameters.classification) ends the "
                    f"server with SIGFPE. Fixed by {releases.CLASSIFICATION_BYTES_FIX}: serve "
                    f"on such a release, or expose no BYTES output clients do not need"))

    def _model(self, directory: Path) -> _Model:
        config_path = directory / CONFIG_NAME
        config = self._config(directory, config_path)
        versions = self._versions(directory, config)
        if config is not None:
            self._tensors(config_path, config)
            self._side_files(directory, config_path, config)
            for version in versions:
                for file_name in model_files(config):
                    if not (version / file_name).exists():
                        self.add(
                            version,
                            f"no {file_name}: the {model_kind(config).value} backend loads it "
                            "from every version directory",
                        )
        return _Model(
            name=directory.name,
            directory=directory,
            config_path=config_path,
            config=config,
            versions=versions,
        )

    def _config(self, directory: Path, config_path: Path) -> model_config_pb2.ModelConfig | None:
        if not config_path.is_file():
            self.add(
                directory,
                f"no {CONFIG_NAME}: Triton can auto-complete some configs, but this toolkit "
                "requires every model to have an explicit one",
            )
            return None
        try:
            text = config_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.add(config_path, f"cannot be read ({e})")
            return None
        for number, line in enumerate(text.splitlines(), start=1):
            for match in _PLACEHOLDER.finditer(line):
                self.add(
                    config_path,
                    f"line {number}: leftover placeholder {match.group()} (a template value "
                    "was never filled in)",
                )
        try:
            config = parse_config(text)
        except ConfigError as e:
            self.add(config_path, f"syntax error at {e}")
            return None
        if not config.name:
            log.info(
                "%s: name not set; Triton uses the directory name %r", config_path, directory.name
            )
        elif config.name != directory.name:
            self.add(
                config_path,
                f"name '{config.name}' differs from its directory '{directory.name}'; Triton "
                "requires the config name to match the directory name",
            )
        if not config.platform and not config.backend:
            self.add(
                config_path,
                "sets neither platform nor backend, so Triton cannot tell "
                "what should load the model",
            )
        return config

    def _versions(
        self, directory: Path, config: model_config_pb2.ModelConfig | None
    ) -> tuple[Path, ...]:
        versions: list[Path] = []
        for entry in sorted(directory.iterdir()):
            if not entry.is_dir() or entry.name.startswith(".") or entry.name in _NOT_VERSIONS:
                continue
            if (entry / CONFIG_NAME).exists():
                self.add(
                    entry / CONFIG_NAME,
                    f"{CONFIG_NAME} inside a version directory is ignored; Triton reads "
                    f"{directory.name}/{CONFIG_NAME}",
                )
            if _VERSION_DIR.match(entry.name):
                versions.append(entry)
            elif entry.name.isdigit():
                self.add(
                    entry,
                    f"version directory '{entry.name}' starts with 0; Triton ignores it "
                    "(versions are 1, 2, ...)",
                )
            else:
                self.add(
                    entry,
                    f"'{entry.name}' is not a numeric version directory; Triton ignores it "
                    "(versions are positive integers: 1/, 2/, ...)",
                )
        if not versions:
            if config is not None and model_kind(config) is ModelKind.ENSEMBLE:
                why = "Triton needs one even for an ensemble (an empty 1/ is enough)"
            else:
                why = "it holds the model file"
            self.add(directory, f"has no version directory (1/, 2/, ...); {why}")
        return tuple(versions)

    def _tensors(self, config_path: Path, config: model_config_pb2.ModelConfig) -> None:
        tensors: Iterable[tuple[str, model_config_pb2.ModelInput | model_config_pb2.ModelOutput]]
        tensors = [("input", t) for t in config.input] + [("output", t) for t in config.output]
        for role, tensor in tensors:
            dims = list(tensor.dims)
            bad = [d for d in dims if d == 0 or d < -1]
            if bad:
                self.add(
                    config_path,
                    f"{role} '{tensor.name}' dims {dims} contain {bad}: every dim is a size "
                    "> 0 or -1 (variable)",
                )
            if not dims and not tensor.HasField("reshape"):
                self.add(
                    config_path,
                    f"{role} '{tensor.name}' has empty dims; Triton needs at least one dim "
                    "(a scalar is dims [1] plus an empty reshape)",
                )

    def _side_files(
        self, directory: Path, config_path: Path, config: model_config_pb2.ModelConfig
    ) -> None:
        """Label files, warmup data and assets named by the config are in the model directory."""
        for key, parameter in sorted(config.parameters.items()):
            value = parameter.string_value
            what = f"parameter '{key}' names '{value}'"
            outside = outside_problem(value)
            if outside is not None:
                self.add(config_path, f"{what}, {outside}; {_SELF_CONTAINED}")
            elif names_a_file(key, value):
                self._inside(directory, config_path, what, directory / value)
        for output in config.output:
            name = output.label_filename
            outside = outside_problem(name) if name else None
            if outside is not None:
                self.add(config_path, f"output '{output.name}' names label file '{name}', "
                                      f"{outside}; {_SELF_CONTAINED}")
            elif name and not (directory / name).is_file():
                self.add(
                    config_path,
                    f"output '{output.name}' names label file '{output.label_filename}', which "
                    f"is not in {directory.name}/",
                )
        for sample in config.model_warmup:
            for input_name, data in sorted(sample.inputs.items()):
                name = data.input_data_file
                outside = outside_problem(name) if name else None
                if outside is not None:
                    self.add(config_path, f"warmup sample '{sample.name}' input '{input_name}' "
                                          f"reads '{name}', {outside}; {_SELF_CONTAINED}")
                elif name and not (directory / WARMUP_DIR / name).is_file():
                    self.add(
                        config_path,
                        f"warmup sample '{sample.name}' input '{input_name}' reads "
                        f"'{name}', which is not in {directory.name}/{WARMUP_DIR}/",
                    )

    def _inside(self, directory: Path, config_path: Path, what: str, path: Path) -> None:
        """`path` exists and, through any symbolic link, stays inside `directory`."""
        if not path.exists():
            self.add(config_path, f"{what}, which is not in {directory.name}/")
            return
        resolved = path.resolve()
        if not resolved.is_relative_to(directory.resolve()):
            self.add(config_path, f"{what}, which resolves to {resolved}, outside "
                                  f"{directory.name}/; {_SELF_CONTAINED}")

    def _ensemble(
        self,
        model: _Model,
        config: model_config_pb2.ModelConfig,
        configs: dict[str, model_config_pb2.ModelConfig],
        unreadable: set[str],
    ) -> None:
        steps = config.ensemble_scheduling.step
        blocked = sorted({s.model_name for s in steps if s.model_name in unreadable})
        if blocked:
            names = ", ".join(f"'{n}'" for n in blocked)
            self.add(
                model.config_path,
                f"ensemble wiring not checked: the config of step model(s) {names} could not "
                "be read",
            )
            return
        named = config
        if not config.name:
            named = model_config_pb2.ModelConfig()
            named.CopyFrom(config)
            named.name = model.name
        for problem in validate_ensemble(named, configs):
            self.add(model.config_path, str(problem))

    def _provenance(
        self,
        model: _Model,
        config: model_config_pb2.ModelConfig,
        release: releases.Release | None,
    ) -> None:
        if release is not None:
            wanted = f"release {release.name} serves TensorRT {release.tensorrt}"
        elif self.compute_capabilities is not None:
            wanted = f"the deployment declares compute capabilities {self.compute_capabilities}"
        else:
            wanted = "the server flags it needs cannot be checked"
        for version in model.versions:
            plans = [version / f for f in model_files(config) if (version / f).is_file()]
            if not plans:
                continue  # the missing plan is reported already
            manifest_path = version / MANIFEST_NAME
            if not manifest_path.is_file():
                for plan in plans:
                    self.add(
                        plan,
                        f"no record of how it was built: no {MANIFEST_NAME} beside it, so its "
                        f"TensorRT version cannot be checked ({wanted})",
                    )
                continue
            try:
                manifest = read_manifest(manifest_path)
            except ToolkitError as e:
                self.add(manifest_path, f"not a valid build manifest ({e.__cause__ or e})")
                continue
            self._architecture(version, manifest)
            self._flags(version, manifest)
            if release is None:
                continue
            built = manifest.tools.get("tensorrt", "")
            if not built:
                self.add(manifest_path, f"records no TensorRT version (tools.tensorrt); {wanted}")
                continue
            compatible = manifest.options.get("version_compatible") is True
            try:
                loads = plan_loads_on(built, release.tensorrt, version_compatible=compatible)
            except ToolkitError:
                self.add(manifest_path, f"TensorRT version {built!r} is not a version number")
                continue
            if not loads:
                artifact = version / manifest.artifact if manifest.artifact else manifest_path
                rule = ("a version-compatible plan loads only on the same or a later TensorRT "
                        "of a supported major version" if compatible else
                        "a plan loads only on the TensorRT version that built it "
                        "(major.minor.patch must match; Triton reports 'Version tag does not "
                        "match')")
                self.add(
                    artifact,
                    f"built with TensorRT {built}, but {wanted}; {rule}. Rebuild it in "
                    f"{release.tensorrt_image}",
                )

    def _flags(self, version: Path, manifest: Manifest) -> None:
        """Every tritonserver flag the plan needs is set where it is served."""
        if self.server_flags is None:
            return
        artifact = version / manifest.artifact if manifest.artifact else version / MANIFEST_NAME
        for flag in manifest.server_flags:
            if flag not in self.server_flags:
                self.add(
                    artifact,
                    f"needs the tritonserver flag {flag} (its manifest says so), which the "
                    "server flags do not set; add it to the serving flags "
                    "(docker/triton-server.flags), or the plan fails to load",
                )

    def _architecture(self, version: Path, manifest: Manifest) -> None:
        """The plan was built for a GPU architecture the deployment declares."""
        declared = self.compute_capabilities
        if declared is None:
            return
        artifact = version / manifest.artifact if manifest.artifact else version / MANIFEST_NAME
        if manifest.gpu is None or not manifest.gpu.compute_capability:
            self.add(
                artifact,
                "its manifest records no GPU compute capability, so it cannot be checked "
                f"against the declared {', '.join(declared)}",
            )
        elif manifest.gpu.compute_capability not in declared:
            self.add(
                artifact,
                f"built for compute capability {manifest.gpu.compute_capability} "
                f"({manifest.gpu.name}), but the deployment declares {', '.join(declared)}; a "
                "plan runs only on the GPU architecture it was built for. Build it on a GPU of "
                "each declared architecture (or add the architecture to the declaration)",
            )


def lint_repository(
    root: Path,
    *,
    release: str | None = None,
    compute_capabilities: Sequence[str] | None = None,
    server_flags: Sequence[str] | None = None,
) -> list[LintProblem]:
    """Every problem of the model repository at `root`, sorted by path.

    `compute_capabilities` ("9.0", "8.9", ...) are the GPU architectures the deployment
    declares (docker/versions.env GPU_COMPUTE_CAPABILITIES); plans built for another one are
    reported. `server_flags` are the flags the serving tritonserver runs with; a plan whose
    manifest needs another one is reported. Raises `ToolkitError` only when `root` does not
    exist, `release` is not a known release or a compute capability is not `major.minor`;
    problems inside the repository are returned, never raised.
    """
    root = Path(root)
    if not root.exists():
        raise ToolkitError(f"{root}: model repository does not exist")
    target = releases.release(release) if release is not None else None
    declared: tuple[str, ...] | None = None
    if compute_capabilities is not None:
        declared = tuple(str(c).strip() for c in compute_capabilities)
        bad = [c for c in declared if not _COMPUTE_CAPABILITY.match(c)]
        if bad or not declared:
            raise ToolkitError(
                f"compute capabilities must be major.minor numbers such as 9.0, got {bad or '[]'}"
            )
    flags = tuple(server_flags) if server_flags is not None else None
    return _Linter(root, target, declared, flags).run()


def format_problems(problems: Iterable[LintProblem]) -> str:
    """One line per problem."""
    return "\n".join(str(p) for p in problems)
