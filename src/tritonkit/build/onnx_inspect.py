"""ONNX inspection: I/O names, dtypes, dims, symbolic axes, checker, opset, batch axis.

`prove_dynamic_batch` runs ONNX Runtime at batch 1 and batch N, because a declared dynamic
batch axis is often baked into Reshape constants, and Triton then reports "between 1 and 1".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from tritonkit.errors import OnnxModelError
from tritonkit.hashing import sha256_file
from tritonkit.spec import DataType

log = logging.getLogger(__name__)

_ONNX_TO_DTYPE: dict[int, DataType] = {
    onnx.TensorProto.BOOL: DataType.BOOL,
    onnx.TensorProto.UINT8: DataType.UINT8,
    onnx.TensorProto.INT8: DataType.INT8,
    onnx.TensorProto.INT32: DataType.INT32,
    onnx.TensorProto.INT64: DataType.INT64,
    onnx.TensorProto.FLOAT16: DataType.FP16,
    onnx.TensorProto.FLOAT: DataType.FP32,
    onnx.TensorProto.DOUBLE: DataType.FP64,
    onnx.TensorProto.STRING: DataType.BYTES,
}

NUMPY_DTYPES: dict[DataType, type] = {
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.FP16: np.float16,
    DataType.FP32: np.float32,
    DataType.FP64: np.float64,
    DataType.BYTES: np.object_,
}


@dataclass(frozen=True, kw_only=True)
class OnnxTensor:
    name: str
    dtype: DataType
    shape: tuple[int | str, ...]  # full shape incl. batch axis; str = symbolic, -1 = unknown

    @property
    def leading_axis_dynamic(self) -> bool:
        return bool(self.shape) and (isinstance(self.shape[0], str) or self.shape[0] == -1)

    @property
    def dims_without_batch(self) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else -1 for d in self.shape[1:])

    @property
    def dims(self) -> tuple[int, ...]:
        """All dims, symbolic and unknown ones as -1 (for unbatched models)."""
        return tuple(d if isinstance(d, int) else -1 for d in self.shape)

    def describe(self) -> str:
        dims = "x".join(str(d) for d in self.shape) or "scalar"
        return f"{self.name}: {self.dtype.value}[{dims}]"


@dataclass(frozen=True, kw_only=True)
class OnnxModelInfo:
    path: Path
    sha256: str
    opset: int
    ir_version: int
    producer: str
    inputs: tuple[OnnxTensor, ...]
    outputs: tuple[OnnxTensor, ...]
    batched: bool  # every input and output has a dynamic leading axis

    def input(self, name: str) -> OnnxTensor | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> OnnxTensor | None:
        return next((t for t in self.outputs if t.name == name), None)

    def describe(self) -> str:
        ins = ", ".join(t.describe() for t in self.inputs)
        outs = ", ".join(t.describe() for t in self.outputs)
        return (f"{self.path.name}: opset {self.opset}, IR {self.ir_version}, "
                f"batch axis {'dynamic' if self.batched else 'none'}; in: {ins}; out: {outs}")


def _tensor(value: onnx.ValueInfoProto, path: Path) -> OnnxTensor:
    ttype = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise OnnxModelError(f"{path.name}: graph I/O {value.name!r} is not a tensor "
                             "(sequences and maps cannot be served by Triton)")
    dtype = _ONNX_TO_DTYPE.get(ttype.elem_type)
    if dtype is None:
        raise OnnxModelError(
            f"{path.name}: tensor {value.name!r} has ONNX element type "
            f"{onnx.TensorProto.DataType.Name(ttype.elem_type)}, which Triton cannot serve")
    shape: list[int | str] = []
    if ttype.HasField("shape"):
        for dim in ttype.shape.dim:
            if dim.HasField("dim_value"):
                shape.append(int(dim.dim_value))
            elif dim.HasField("dim_param") and dim.dim_param:
                shape.append(dim.dim_param)
            else:
                shape.append(-1)
    return OnnxTensor(name=value.name, dtype=dtype, shape=tuple(shape))


def _check_external_data(model: onnx.ModelProto, path: Path) -> None:
    """External-data files must stay inside the model's directory (no '..', no absolute paths)."""
    root = path.parent.resolve()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key != "location":
                continue
            target = (root / entry.value).resolve()
            if Path(entry.value).is_absolute() or not target.is_relative_to(root):
                raise OnnxModelError(
                    f"{path.name}: initializer {tensor.name!r} points to external data "
                    f"{entry.value!r} outside the model directory; keep external data beside "
                    "the .onnx file")


def inspect_onnx(path: Path) -> OnnxModelInfo:
    """Load, check and describe an ONNX model. Raises OnnxModelError with the reason."""
    if not path.is_file():
        raise OnnxModelError(f"{path}: ONNX model not found (run `make models` for the examples)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others from protobuf
        raise OnnxModelError(f"{path.name}: not a readable ONNX model: {e}") from e
    _check_external_data(model, path)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise OnnxModelError(f"{path.name}: fails onnx.checker: {first}") from e
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    initializers = {t.name for t in model.graph.initializer}
    inputs = tuple(_tensor(v, path) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_tensor(v, path) for v in model.graph.output)
    if not inputs or not outputs:
        raise OnnxModelError(f"{path.name}: a servable model needs at least one input and output")
    batched = all(t.leading_axis_dynamic for t in inputs + outputs)
    info = OnnxModelInfo(
        path=path, sha256=sha256_file(path), opset=opset, ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=inputs, outputs=outputs, batched=batched,
    )
    log.debug("inspected %s", info.describe())
    return info


def sample_inputs(info: OnnxModelInfo, batch: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the model's dtypes; symbolic non-batch dims get size 2."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for t in info.inputs:
        dims = [batch] + [d if d > 0 else 2 for d in t.dims_without_batch]
        dtype = NUMPY_DTYPES[t.dtype]
        if t.dtype is DataType.BYTES:
            raise OnnxModelError(f"{info.path.name}: input {t.name!r} is a string tensor; "
                                 "the dynamic-batch probe needs numeric inputs")
        if np.issubdtype(dtype, np.floating):
            feeds[t.name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[t.name] = np.zeros(dims, dtype=dtype)
    return feeds


def prove_dynamic_batch(info: OnnxModelInfo, *, max_batch_size: int, probe_batch: int) -> None:
    """Run ONNX Runtime at batch 1 and `probe_batch`; every output must follow the batch size.

    Raises OnnxModelError naming the model, the output and the likely cause when the batch
    axis is declared dynamic but baked in (e.g. a Reshape to a constant batch of 1).
    """
    if max_batch_size == 0:
        return
    if not info.batched:
        static = [t.describe() for t in info.inputs + info.outputs if not t.leading_axis_dynamic]
        raise OnnxModelError(
            f"{info.path.name}: max_batch_size is {max_batch_size} but these tensors have no "
            f"dynamic leading (batch) axis: {', '.join(static)}. Re-export with a dynamic batch "
            "axis (torch.onnx.export dynamic_axes / dynamic_shapes), or set max_batch_size: 0")
    import onnxruntime as ort  # noqa: PLC0415  (heavy import, only when building)

    options = ort.SessionOptions()
    options.log_severity_level = 3
    ort.set_default_logger_severity(3)
    try:
        session = ort.InferenceSession(str(info.path), options,
                                       providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types
        raise OnnxModelError(f"{info.path.name}: ONNX Runtime cannot load it: {e}") from e
    for batch in sorted({1, probe_batch}):
        try:
            results = session.run(None, sample_inputs(info, batch))
        except Exception as e:  # ORT raises its own exception types
            reason = str(e).splitlines()[0]
            raise OnnxModelError(
                f"{info.path.name}: declares a dynamic batch axis but fails at batch {batch} "
                f"in ONNX Runtime ({reason}). The batch size is probably baked into a "
                "Reshape/Expand constant; export with a dynamic batch (e.g. reshape to "
                "[-1, ...] or use flatten) and rebuild") from e
        for tensor, value in zip(info.outputs, results, strict=True):
            if value.ndim == 0 or value.shape[0] != batch:
                got = value.shape[0] if value.ndim else "a scalar"
                raise OnnxModelError(
                    f"{info.path.name}: output {tensor.name!r} has batch {got} for an input "
                    f"batch of {batch}: the batch axis is baked in (typically a Reshape "
                    "constant with a fixed batch). Fix the export so every output follows "
                    "the input batch size")
    log.info("%s: batch axis proven dynamic at batch 1 and %d", info.path.name, probe_batch)
