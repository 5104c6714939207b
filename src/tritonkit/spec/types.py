"""The build spec's types: frozen dataclasses and enums, one per section of `models.yaml`.

Instances come from `tritonkit.spec.load_spec`, which validates every field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from tritonkit.runtime import parameters as parameter_names

SPEC_VERSION = 1
# Safe for Triton model names, file names and URLs: no separators, no dots-only names.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,62}$")
TENSOR_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/\-]{0,127}$")
FUNCTION_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
PARAMETER_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# What an asset is called inside `<model dir>/assets/`: its source's own name, kept plain.
ASSET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,100}$")
# A dynamic axis of a PyTorch source: a torch.export.Dim name and the ONNX dim_param it becomes.
AXIS_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Where `tritonkit build --target onnxruntime --out <this>` (run from the spec's folder) puts
# each model's served ONNX: the ONNX a TensorRT plan of a transformed or exported model parses.
ONNXRUNTIME_REPOSITORY = Path("build") / "onnxruntime_repository"
# Parameters the adapter itself reads (or the builder writes): never an asset's parameter.
ADAPTER_PARAMETERS = frozenset({
    parameter_names.FUNCTION, parameter_names.LABELS_FILE, parameter_names.MAX_ELEMENT_BYTES,
    parameter_names.TEXT_INPUTS, parameter_names.REQUEST_PARAMETERS,
})


class Target(str, Enum):
    """What serves the core models."""

    AUTO = "auto"
    TENSORRT = "tensorrt"
    ONNXRUNTIME = "onnxruntime"
    LOCAL = "local"


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class ImageFormat(str, Enum):
    """The layout of a model's one image input (config `format`), which image clients read to
    know how to feed it (Triton's stock image_client, for one)."""

    NONE = "none"
    NCHW = "nchw"
    NHWC = "nhwc"


class InstanceKind(str, Enum):
    """`auto` is KIND_GPU for the tensorrt/onnxruntime targets and KIND_CPU for local."""

    AUTO = "auto"
    CPU = "cpu"
    GPU = "gpu"


class AccuracyMetric(str, Enum):
    """How a transformed model is compared with its fp32 source on held-out samples."""

    TOP1_AGREEMENT = "top1_agreement"  # fraction of rows whose argmax agrees; budget is a minimum
    COSINE = "cosine"  # smallest per-row cosine similarity; budget is a minimum
    MAX_ABS_DIFF = "max_abs_diff"  # largest absolute difference; budget is a maximum
    # mean-pooled (attention_mask) rows of an encoder's hidden states; smallest cosine, minimum
    MEAN_POOLED_COSINE = "mean_pooled_cosine"
    # YOLO-format detector: fp32 mAP@0.5 minus the candidate's on the holdout's ground truth
    # (gt_boxes/gt_classes in the .npz); budget is a maximum
    MAP50_DELTA = "map50_delta"
    # image-to-image model: mean PSNR (dB, luma, border crop) of fp32 minus the candidate's,
    # against the ground-truth images (`target` in the .npz); budget is a maximum
    PSNR_DELTA = "psnr_delta"

    @property
    def higher_is_better(self) -> bool:
        return self not in (AccuracyMetric.MAX_ABS_DIFF, AccuracyMetric.MAP50_DELTA,
                            AccuracyMetric.PSNR_DELTA)


class DataType(str, Enum):
    """Triton data types, named as in config.pbtxt without the TYPE_ prefix."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    INT8 = "INT8"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


class HardwareCompatibility(str, Enum):
    """TensorRT hardware-compatibility level of a plan (opt-in; costs some speed)."""

    NONE = "none"
    AMPERE_PLUS = "ampere_plus"
    SAME_COMPUTE_CAPABILITY = "same_compute_capability"


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """A tensor of a Python step, dims without the batch axis (-1 marks a variable dim)."""

    name: str
    dtype: DataType
    dims: tuple[int, ...]


class QueueTimeoutAction(str, Enum):
    """What Triton does with a request that waited past its queue timeout."""

    REJECT = "reject"  # answer it with an error at once (the default: explicit, fast)
    DELAY = "delay"  # keep it, behind every request that has not timed out


DEFAULT_QUEUE_DELAY_US = 100
# Python steps with BYTES inputs: the BYTES batch guard needs batches formed without delay
# (see src/tritonkit/build/batch_guard.py).
BYTES_STEP_QUEUE_DELAY_US = 0
DEFAULT_MAX_QUEUE_SIZE = 128


@dataclass(frozen=True, kw_only=True)
class DynamicBatching:
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    # Default queue policy: a bounded queue, and requests that wait too long are rejected.
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    queue_timeout_us: int = 0  # 0: no server-side timeout; clients may set one per request
    timeout_action: QueueTimeoutAction = QueueTimeoutAction.REJECT


@dataclass(frozen=True, kw_only=True)
class InstanceGroup:
    kind: InstanceKind = InstanceKind.AUTO
    count: int = 1
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AxisRange:
    """min/opt/max of one dynamic, non-batch axis of a TensorRT optimization profile."""

    min: int
    opt: int
    max: int


@dataclass(frozen=True, kw_only=True)
class TensorRTOptions:
    """Options of the `tensorrt` target. The main profile is min 1, opt, max = max_batch_size."""

    opt_batch_size: int | None = None  # default: max_batch_size
    extra_profile_batch_sizes: tuple[tuple[int, int, int], ...] = ()  # (min, opt, max) each
    # ONNX dim name -> range, for dynamic axes other than batch (default: what the pipeline feeds)
    dynamic_axes: Mapping[str, AxisRange] = field(default_factory=dict)
    workspace_mib: int = 1024
    builder_optimization_level: int = 3
    version_compatible: bool = False
    hardware_compatibility: HardwareCompatibility = HardwareCompatibility.NONE
    cuda_graphs: bool = False


@dataclass(frozen=True, kw_only=True)
class OnnxRuntimeOptions:
    """Options of the `onnxruntime` target."""

    tensorrt_accelerator: bool = False
    accelerator_precision: Precision = Precision.FP32  # precision_mode of the TRT accelerator
    intra_op_threads: int = 0  # 0: ONNX Runtime's default


@dataclass(frozen=True, kw_only=True)
class AccuracyBudget:
    metric: AccuracyMetric
    threshold: float  # a minimum for top1_agreement/cosine, a maximum for max_abs_diff
    holdout: Path  # .npz of held-out inputs keyed by model input name


@dataclass(frozen=True, kw_only=True)
class Warmup:
    samples: Path  # .npz keyed by model input name, rows along the batch axis
    batch_size: int = 1
    count: int = 1


@dataclass(frozen=True, kw_only=True)
class VersionPolicy:
    latest: int | None = 1  # serve the latest N versions; None with specific/all
    specific: tuple[int, ...] = ()
    all: bool = False


@dataclass(frozen=True, kw_only=True)
class ServingOptions:
    """Config fields shared by ONNX models and Python steps."""

    max_batch_size: int
    dynamic_batching: DynamicBatching | None = DynamicBatching()
    instance_group: InstanceGroup = InstanceGroup()
    version: int = 1
    version_policy: VersionPolicy = VersionPolicy()
    labels: Path | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    response_cache: bool = False


class ExporterKind(str, Enum):
    """How a PyTorch source becomes ONNX."""

    # torch.export.export with a Dim per declared axis, then torch.onnx.export(dynamo=True)
    DYNAMO = "dynamo"
    # torch.onnx.export(dynamo=False): the fallback for models torch.export cannot trace
    TORCHSCRIPT = "torchscript"


@dataclass(frozen=True, kw_only=True)
class DynamicAxis:
    """A declared dynamic axis of an example input: its name (the torch.export.Dim and ONNX
    dim_param) and the second size the export is checked at (`probe`)."""

    name: str
    probe: int


@dataclass(frozen=True, kw_only=True)
class ExampleInput:
    """One input of a PyTorch source: the example the export traces, and its dynamic axes."""

    name: str
    dtype: DataType
    shape: tuple[int, ...]
    dynamic_axes: Mapping[int, DynamicAxis] = field(default_factory=dict)  # axis -> its name
    high: int | None = None  # integer inputs: example data in [0, high) (default 2)


@dataclass(frozen=True, kw_only=True)
class PyTorchSource:
    """A model built from PyTorch: `factory` (`module:function`) returns the nn.Module, `weights`
    (optional) is a state_dict file. The builder exports it to ONNX and checks the export."""

    factory: str
    weights: Path | None = None
    exporter: ExporterKind = ExporterKind.DYNAMO
    opset: int = 18
    tolerance: float = 1e-4  # max abs diff of ONNX Runtime vs PyTorch
    inputs: tuple[ExampleInput, ...]
    outputs: tuple[str, ...]

    @property
    def description(self) -> str:
        return f"pytorch:{self.factory}"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """An ONNX model. Tensor names, dtypes and dims come from the ONNX file, not from the spec.

    A model with a PyTorch source (`pytorch` set) has no ONNX of its own in the spec: the
    loader sets `onnx` to where `tritonkit build --target onnxruntime --out
    build/onnxruntime_repository` publishes it (`ONNXRUNTIME_REPOSITORY`), and
    `build_repository` exports the source (cached) and builds from the export instead.
    """

    name: str
    onnx: Path
    serving: ServingOptions
    precision: Precision = Precision.FP32
    calibration: Path | None = None  # .npz keyed by input name; required for int8
    accuracy: AccuracyBudget | None = None  # required for fp16 and int8
    keep_fp32_ops: tuple[str, ...] = ()  # extra op types kept in fp32 by the fp16 transform
    dynamic_batch_probe: int = 3  # ONNX Runtime proves batch 1 and this batch size agree
    warmup: Warmup | None = None
    tensorrt: TensorRTOptions = TensorRTOptions()
    onnxruntime: OnnxRuntimeOptions = OnnxRuntimeOptions()
    image_format: ImageFormat = ImageFormat.NONE  # checked against the ONNX input at build
    pytorch: PyTorchSource | None = None  # the source `onnx` is exported from, when set

    @property
    def max_batch_size(self) -> int:
        return self.serving.max_batch_size


@dataclass(frozen=True, kw_only=True)
class PythonStepSpec:
    """A Python-backend step that calls a plain function `module:callable` over a whole batch."""

    name: str
    function: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    serving: ServingOptions
    # config parameter -> file or directory the step needs at serving time. The builder copies
    # each into `<model dir>/assets/<its name>` and sets the parameter to that relative path.
    assets: Mapping[str, Path] = field(default_factory=dict)

    @property
    def max_batch_size(self) -> int:
        return self.serving.max_batch_size

    @property
    def takes_bytes(self) -> bool:
        return has_bytes(self.inputs)


def has_bytes(tensors: tuple[TensorSpec, ...]) -> bool:
    return any(t.dtype is DataType.BYTES for t in tensors)


@dataclass(frozen=True, kw_only=True)
class PipelineStep:
    """One step of a pipeline; maps rename the step's tensors to ensemble tensor names."""

    model: str
    inputs: Mapping[str, str] = field(default_factory=dict)  # step input -> ensemble tensor
    outputs: Mapping[str, str] = field(default_factory=dict)  # step output -> ensemble tensor


@dataclass(frozen=True, kw_only=True)
class PipelineSpec:
    """A chain of steps served as one Triton ensemble."""

    name: str
    max_batch_size: int
    steps: tuple[PipelineStep, ...]
    outputs: tuple[str, ...] = ()  # ensemble outputs; default: the last step's outputs


@dataclass(frozen=True, kw_only=True)
class BuildSpec:
    source: Path  # the YAML file; relative paths in it resolve against its directory
    models: tuple[ModelSpec, ...]
    python_steps: tuple[PythonStepSpec, ...]
    pipelines: tuple[PipelineSpec, ...]
    sha256: str  # of the YAML text

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)

    def python_step(self, name: str) -> PythonStepSpec | None:
        return next((s for s in self.python_steps if s.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(
            [m.name for m in self.models]
            + [s.name for s in self.python_steps]
            + [p.name for p in self.pipelines]
        )
