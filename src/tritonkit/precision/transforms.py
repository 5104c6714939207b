"""Precision transforms (fp16, int8) done on the ONNX model, before any TensorRT build.

TensorRT 10 builds strongly typed networks from such models and TensorRT 11 accepts nothing else
(its `--fp16`/`--int8` builder flags and implicit INT8 calibration are gone), so precision is
decided here, where ONNX Runtime on the CPU can also check its accuracy (see accuracy.py).

- fp32: the source is copied unchanged.
- fp16: `onnxruntime.transformers.float16.convert_float_to_float16` with fp32 graph I/O; the op
  types in `SENSITIVE_OPS` (plus the spec's `keep_fp32_ops`) keep computing in fp32. The fp16
  round trips the converter leaves between two fp32 regions (Cast to fp16 straight into a Cast to
  fp32) are removed, so blocked ops really hand fp32 to each other and to the graph outputs.
- int8: explicit Q/DQ (QuantizeLinear/DequantizeLinear pairs) in the form TensorRT consumes,
  built by tritonkit.precision.quantization (its module doc has the recipe: Q/DQ on the inputs of
  the
  weighted ops with a constant weight, symmetric, per-channel weights, fp32 bias, residual
  placement, outlier smoothing, sensitive MatMuls kept out of int8).
  What stays outside Q/DQ stays fp32, not fp16, although NVIDIA's strongly typed recipe for
  TensorRT 11 is an fp16 model with int8 Q/DQ. Accuracy is not the reason: the fp16 transform
  applied to the int8 text_encoder (Q/DQ blocked) measured 0.9906 mean pooled cosine against
  0.9897 in fp32. The form is: the sources are opset 17, where Q/DQ scales must be fp32, so
  an fp16 graph wraps every Q/DQ in Casts (fp16 -> Cast -> Q -> DQ -> Cast -> MatMul; over a
  hundred Casts on text_encoder). Whether TensorRT 10/11 still fuse Q/DQ through those Casts
  into int8 kernels cannot be checked on a host without TensorRT; if not, the MatMuls run in
  fp16 on dequantized weights, a silent loss of int8 that no accuracy gate sees (and ORT's
  converter emitted duplicate node names for some block lists). The clean form is opset >= 19
  with fp16 scales, where DequantizeLinear produces fp16 itself; until that is built and
  verified with a TensorRT build, int8 models keep fp32 outside Q/DQ (TensorRT runs LayerNorm,
  Softmax, GELU, attention and the MatMuls kept out of int8 in fp32 there).

The accuracy gate (accuracy.py) evaluates every precision host-independently: Q/DQ as exact
fp32 fake-quantization, fp16 tensors rounded to fp16 with fp32 compute.

Outputs are written atomically (temp file + os.replace) and are byte-identical for identical
inputs. Graph input/output dtypes never change, so the Triton config is the same for every
precision.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnx import TensorProto
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from tritonkit.errors import PrecisionError
from tritonkit.precision.quantization import INT8_OPS, int8_op_types, to_int8
from tritonkit.spec import Precision

log = logging.getLogger(__name__)

# Op types the fp16 transform keeps computing in fp32. The criterion is numerical, not speed:
# - LayerNormalization, RMSNormalization, InstanceNormalization, GroupNormalization,
#   LpNormalization: mean/variance (sum of squares) over many elements; x**2 overflows fp16
#   (max 65504) once |x| > 256 and long fp16 sums lose the small variance terms.
# - Softmax, LogSoftmax: exp() overflows fp16 for inputs > ~11 and the normalizing sum loses
#   precision; this is where fp16 classifiers and attention blocks go wrong first.
# - ReduceMean, ReduceSum, ReduceSumSquare, ReduceL2, ReduceLogSum, ReduceLogSumExp: long
#   accumulations (also the pieces of LayerNorm exported as primitive ops).
# - Pow, Sqrt: the variance path of decomposed LayerNorm (x**2 overflows, sqrt of a tiny variance).
# - Exp, Log: exp overflows above ~11; log of fp16-underflowed values becomes -inf.
# Deliberately NOT listed:
# - BatchNormalization: at inference it is a per-channel scale and shift with frozen statistics
#   (benign in fp16) and TensorRT folds it into the preceding Conv; Casts around it would block
#   that fusion.
# - Erf (GELU): bounded output in [-1, 1] and its input is already fp16; fp32 would buy nothing
#   but would split TensorRT's GELU fusion with Casts.
# ONNX Runtime's own DEFAULT_OP_BLOCK_LIST (ops without fp16 CPU kernels, e.g. TopK, Range) is
# always added on top, because passing an explicit op_block_list replaces it.
SENSITIVE_OPS: tuple[str, ...] = (
    "LayerNormalization",
    "RMSNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "LpNormalization",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "Pow",
    "Sqrt",
    "Exp",
    "Log",
)

__all__ = ["INT8_OPS", "SENSITIVE_OPS", "fp16_block_list", "int8_op_types",
           "transform_fingerprint", "transform_precision"]

@functools.cache
def transform_fingerprint() -> str:
    """Hash of the transform and gate code (every module of `tritonkit.precision`): part of the
    precision cache key, so a changed recipe or evaluation never serves a stale cached model or
    figure."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def transform_precision(
    source: Path,
    destination: Path,
    *,
    precision: Precision,
    calibration: Mapping[str, np.ndarray] | None = None,
    keep_fp32_ops: Sequence[str] = (),
    model_name: str | None = None,
) -> Path:
    """Write `source` at `precision` to `destination` (atomically) and return `destination`.

    `calibration` (rows of preprocessed inputs keyed by input name) is required for int8 and
    ignored otherwise. `keep_fp32_ops` adds op types that stay fp32: in fp16 they join
    SENSITIVE_OPS, in int8 their nodes get no Q/DQ (a MatMul that pre-processing fuses with its
    Add into a Gemm stays excluded). `model_name` labels errors and logs
    (default: the source path). Every failure is a PrecisionError naming the model and the step.
    """
    source, destination = Path(source), Path(destination)
    label = model_name or str(source)
    if not source.is_file():
        raise PrecisionError(f"{label}: source model {source} does not exist")
    if precision is Precision.FP32:
        if source.resolve() != destination.resolve():
            _copy_atomically(source, destination, label)
        log.info("%s: fp32, copied %s -> %s", label, source, destination)
        return destination
    if precision is Precision.FP16:
        model = _to_fp16(_load(source, label), label, keep_fp32_ops)
    elif precision is Precision.INT8:
        if calibration is None:
            raise PrecisionError(f"{label}: int8 needs calibration samples (an .npz of real, "
                                 "preprocessed inputs keyed by input name); none were given")
        model = to_int8(source, label, calibration, keep_fp32_ops)
    else:  # pragma: no cover - exhaustive over Precision
        raise PrecisionError(f"{label}: unsupported precision {precision!r}")
    _check_io_unchanged(_load(source, label), model, label, precision)
    _validate(model, label, precision)
    _write_atomically(_serialize(model, label), destination, label)
    log.info("%s: wrote %s model %s", label, precision.value, destination)
    return destination


# ----------------------------------------------------------------------------------------- fp16


def fp16_block_list(keep_fp32_ops: Sequence[str] = ()) -> list[str]:
    """The op types the fp16 transform keeps in fp32 (sorted, so the output is reproducible)."""
    return sorted(set(DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OPS) | set(keep_fp32_ops))


def _to_fp16(model: onnx.ModelProto, label: str, keep_fp32_ops: Sequence[str]) -> onnx.ModelProto:
    original_names = {n.name for n in _all_nodes(model.graph) if n.name}
    block_list = fp16_block_list(keep_fp32_ops)
    try:
        converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=block_list)
    except Exception as e:  # the converter raises whatever onnx/numpy raise (and asserts)
        raise PrecisionError(f"{label}: fp16 conversion failed: {type(e).__name__}: {e}") from e
    inserted = {n.name for n in converted.graph.node
                if n.op_type == "Cast" and n.name and n.name not in original_names}
    removed = _fold_cast_round_trips(converted.graph, inserted)
    _topological_sort(converted.graph, label)
    kept = sorted({n.op_type for n in converted.graph.node} & set(block_list))
    log.debug("%s: fp16 kept %s in fp32, removed %d redundant Casts", label, kept, removed)
    return converted


def _cast_to(node: onnx.NodeProto) -> int | None:
    for attr in node.attribute:
        if attr.name == "to":
            return int(attr.i)
    return None


def _fold_cast_round_trips(graph: onnx.GraphProto, inserted: set[str]) -> int:
    """Remove the fp32 -> fp16 -> fp32 Cast pairs the converter puts between two fp32 regions.

    Only Casts the converter inserted (`inserted` names) are touched, so an fp16 round trip that
    the source model itself contains survives. Returns how many Cast nodes were removed.
    """
    before = len(graph.node)
    producers = {out: n for n in graph.node for out in n.output}
    # 1. Cast(to=fp32) fed by an inserted Cast(to=fp16): read the fp16 Cast's input directly.
    for node in graph.node:
        if node.name in inserted and _cast_to(node) == TensorProto.FLOAT:
            src = producers.get(node.input[0])
            if src is not None and src.name in inserted and _cast_to(src) == TensorProto.FLOAT16:
                node.input[0] = src.input[0]
    _drop_unused(graph, inserted)
    # 2. Cast(to=fp32) whose input is already fp32 is an identity: drop it.
    types = _elem_types(graph)
    graph_outputs = {o.name for o in graph.output}
    producers = {out: n for n in graph.node for out in n.output}
    for node in list(graph.node):
        if node.name not in inserted or _cast_to(node) != TensorProto.FLOAT:
            continue
        x, y = node.input[0], node.output[0]
        if types.get(x) != TensorProto.FLOAT:
            continue
        if y not in graph_outputs:
            graph.node.remove(node)
            _rename_uses(graph, y, x)
        elif x in producers and x not in graph_outputs:
            graph.node.remove(node)
            producer = producers[x]
            for i, out in enumerate(producer.output):
                if out == x:
                    producer.output[i] = y
            _rename_uses(graph, x, y)
    _prune_value_info(graph)
    return before - len(graph.node)


def _drop_unused(graph: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove candidate nodes whose outputs nothing reads (repeat until stable)."""
    while True:
        used = _used_names(graph) | {o.name for o in graph.output}
        dead = [n for n in graph.node
                if n.name in candidates and not any(o in used for o in n.output if o)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _used_names(graph: onnx.GraphProto) -> set[str]:
    used: set[str] = set()
    for node in _all_nodes(graph):
        used.update(i for i in node.input if i)
    return used


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of `graph` and of its subgraphs (If/Loop/Scan bodies), depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_nodes(g)


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in _all_nodes(graph):
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    types = {t.name: t.data_type for t in graph.initializer}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _prune_value_info(graph: onnx.GraphProto) -> None:
    """Drop value_info for tensors that no longer exist or that are graph inputs/outputs."""
    produced = {o for n in graph.node for o in n.output if o}
    io = {v.name for v in (*graph.input, *graph.output)}
    keep = [vi for vi in graph.value_info if vi.name in produced and vi.name not in io]
    seen: set[str] = set()
    unique = []
    for vi in keep:
        if vi.name not in seen:
            seen.add(vi.name)
            unique.append(vi)
    del graph.value_info[:]
    graph.value_info.extend(unique)


def _outer_refs(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope."""
    refs: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            defined = {v.name for v in g.input} | {t.name for t in g.initializer}
            used: set[str] = set()
            for inner in g.node:
                used.update(i for i in inner.input if i)
                used |= _outer_refs(inner)
                defined.update(o for o in inner.output if o)
            refs |= used - defined
    return refs


def _topological_sort(graph: onnx.GraphProto, label: str) -> None:
    """Stable topological sort (original order wherever dependencies allow).

    The fp16 converter appends its Casts at the end of the node list; onnx.checker (and
    TensorRT's parser) require producers before consumers.
    """
    nodes = list(graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    dependents: list[list[int]] = [[] for _ in nodes]
    indegree = [0] * len(nodes)
    for i, node in enumerate(nodes):
        deps = {producer[name] for name in (*node.input, *_outer_refs(node))
                if name in producer and producer[name] != i}
        indegree[i] = len(deps)
        for d in deps:
            dependents[d].append(i)
    ready = [i for i, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in dependents[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        stuck = sorted({nodes[i].name or nodes[i].op_type for i in range(len(nodes))
                        if indegree[i] > 0})[:5]
        raise PrecisionError(f"{label}: the transformed graph has a cycle (nodes {stuck})")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


# -------------------------------------------------------------------------------------- helpers


def _load(path: Path, label: str) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except (OSError, ValueError, DecodeError) as e:
        raise PrecisionError(f"{label}: cannot read ONNX model {path}: {e}") from e


def _io_types(model: onnx.ModelProto) -> dict[str, str]:
    """'input x' / 'output y' -> element type name, for the real graph inputs and outputs."""
    initializers = {t.name for t in model.graph.initializer}
    types = {f"input {v.name!r}": v.type.tensor_type.elem_type
             for v in model.graph.input if v.name not in initializers}
    types.update({f"output {v.name!r}": v.type.tensor_type.elem_type for v in model.graph.output})
    return {k: TensorProto.DataType.Name(v) for k, v in types.items()}


def _check_io_unchanged(
    source: onnx.ModelProto, result: onnx.ModelProto, label: str, precision: Precision,
) -> None:
    before, after = _io_types(source), _io_types(result)
    if before != after:
        raise PrecisionError(f"{label}: the {precision.value} transform changed the graph I/O "
                             f"(before {before}, after {after}); I/O must stay as in the source")


def _validate(model: onnx.ModelProto, label: str, precision: Precision) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise PrecisionError(f"{label}: the {precision.value} model fails onnx.checker: {e}") from e
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's pybind errors (Fail, InvalidGraph, ...) derive from Exception
        raise PrecisionError(f"{label}: ONNX Runtime cannot load the {precision.value} model: "
                             f"{type(e).__name__}: {e}") from e


def _serialize(model: onnx.ModelProto, label: str) -> bytes:
    try:
        return model.SerializeToString()
    except ValueError as e:  # protobuf's 2 GiB limit
        raise PrecisionError(f"{label}: the transformed model cannot be serialized (over 2 GiB? "
                             f"external data is not supported here): {e}") from e


def _write_atomically(data: bytes, destination: Path, label: str) -> None:
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp",
                                   dir=destination.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, destination)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as e:
        raise PrecisionError(f"{label}: cannot write {destination}: {e}") from e


def _copy_atomically(source: Path, destination: Path, label: str) -> None:
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp",
                                   dir=destination.parent)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, destination)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as e:
        raise PrecisionError(f"{label}: cannot copy {source} to {destination}: {e}") from e
