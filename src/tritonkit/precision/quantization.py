"""The int8 transform: explicit Q/DQ in the form TensorRT 10 and 11 build as int8 kernels.

The recipe follows NVIDIA's Q/DQ placement guidance for TensorRT (as TensorRT Model Optimizer's
ONNX int8 path implements it):

- Q/DQ on the INPUTS of the weighted compute ops (`INT8_OPS`), never on their outputs: int8
  activations and weights, symmetric (every zero point 0), per-output-channel weight scales,
  bias left in fp32 (TensorRT adds it in the GEMM/conv epilogue). Calibration runs on real,
  preprocessed samples with ONNX Runtime's MinMax calibrator.
- Only ops with a constant weight are quantized (weightless_nodes). A MatMul between two
  activations (attention's Q.K^T and softmax.V) stays out of int8: TensorRT runs those in its
  fused attention kernels, and per-tensor int8 of softmax probabilities and per-head keys costs
  accuracy for little speed.
- Residual Adds (residual_adds, place_activation_qdq): after a Conv/ConvTranspose backbone (through
  its bias Add, constant Mul, BatchNormalization, Relu) the skip input gets Q/DQ, so TensorRT
  fuses the Add into the convolution's epilogue ("quantize the residual input in skip
  connections"; ModelOpt's `build_non_residual_input_map`, which applies it to Conv backbones
  only). After a MatMul/Gemm backbone (transformer blocks) the skip input is read in high
  precision: ONNX Runtime's quantizer routes EVERY consumer of a tensor it quantized through the
  DQ, which silently quantized the residual stream of every encoder layer (a post-LN BERT's
  skip input is the LayerNorm output its Q/K/V MatMuls read). Measured on text_encoder
  (all-MiniLM-L6-v2), mean pooled cosine: 0.9897 with float skips, 0.9849 with the 6 skips
  after int8 MatMuls quantized (and 0.9446 -> 0.9348 for the 12 skips under the previous
  recipe). TensorRT fuses bias + residual Add into the GEMM epilogue with a float residual.
- Outlier smoothing (tune_inputs, outlier_smoothing): activations with a few outlier channels
  (LayerNorm and GELU outputs of transformers reach 20x the typical channel) waste per-tensor
  int8 range. SmoothQuant's exact rewrite x @ W == (x / s) @ (s W) moves them into the
  per-channel weight scales; s shrinks only the outlier channels, and the strength is chosen
  per input on calibration data by the MatMul/Gemm output error.
- Inputs whose best int8 output SQNR stays below MIN_INT8_SQNR_DB (30 dB) keep their
  MatMul/Gemm nodes out of int8 (TensorRT runs them at the model's float precision). On
  text_encoder these are the FFN down-projections of layers 0-4 (post-GELU inputs) and one
  attention output projection: 30 of its 36 weighted MatMuls stay int8.
- Everything else (LayerNorm, Softmax, GELU, the residual sums) stays as in the source, fp32.
  See precision.py's module doc for why the parts outside Q/DQ are not made fp16 here.

The output is deterministic: calibration, names and node order depend on the inputs only.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from tritonkit.errors import PrecisionError
from tritonkit.precision.onnx_edit import insert_after_producers, load_model, save_model
from tritonkit.precision.outlier_smoothing import (
    INT8_QMAX,
    MIN_INT8_SQNR_DB,
    max_int8_error,
    tune_inputs,
)
from tritonkit.precision.samples import (
    SamplePurpose,
    batch_size_for,
    conform_samples,
    iter_batches,
    read_model_inputs,
    sample_count,
)

log = logging.getLogger(__name__)

# Op types whose inputs get Q/DQ: the compute-bound ops TensorRT runs as int8 kernels, when they
# have a constant weight (see `weightless_nodes`).
INT8_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")



class _SampleReader(CalibrationDataReader):
    """Feeds calibration samples to ONNX Runtime's calibrator, batch by batch, in file order."""

    def __init__(self, samples: Mapping[str, np.ndarray], batch_size: int) -> None:
        self._samples = {name: samples[name] for name in sorted(samples)}
        self._batch_size = batch_size
        self._batches = iter_batches(self._samples, batch_size)

    def get_next(self) -> dict[str, np.ndarray] | None:  # type: ignore[override]
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = iter_batches(self._samples, self._batch_size)


@dataclass(frozen=True, kw_only=True)
class ResidualQuantization:
    """One residual Add's skip input and what the residual rule did with it."""

    add: str
    tensor: str  # the skip tensor (float)
    quantized: bool  # True: read through Q/DQ (Conv backbone); False: read in high precision
    shared: bool  # True: reuses the Q/DQ of the tensor's other consumers


def int8_op_types(keep_fp32_ops: Sequence[str] = ()) -> list[str]:
    """The op types whose inputs get Q/DQ (INT8_OPS minus the spec's keep_fp32_ops)."""
    return [op for op in INT8_OPS if op not in set(keep_fp32_ops)]


def to_int8(
    source: Path, label: str, calibration: Mapping[str, np.ndarray],
    keep_fp32_ops: Sequence[str],
) -> onnx.ModelProto:
    """The int8 Q/DQ model of `source` (see the module doc), calibrated on `calibration`."""
    inputs = read_model_inputs(source)
    samples = conform_samples(calibration, inputs, model=label,
                              purpose=SamplePurpose.CALIBRATION)
    batch_size = batch_size_for(inputs, sample_count(samples), model=label)
    op_types = int8_op_types(keep_fp32_ops)
    with tempfile.TemporaryDirectory(prefix="precision-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "quantized.onnx"
        _prepare_for_quantization(source, prepared, label)
        excluded, candidates = _exclusions(load_model(source, label), prepared, label, op_types,
                                           keep_fp32_ops)
        tuned = tune_inputs(prepared, samples, batch_size, label, op_types=op_types,
                            excluded=excluded)
        excluded = sorted({*excluded, *(n for t in tuned if t.error > max_int8_error()
                                       for n in t.consumers)})
        if set(candidates) <= set(excluded):
            raise PrecisionError(
                f"{label}: int8 leaves nothing quantized: every {list(op_types)} node either "
                f"has no constant weight, is kept by keep_fp32_ops, or stays below "
                f"{MIN_INT8_SQNR_DB:g} dB SQNR in int8; use fp16 instead")
        try:
            quantize_static(
                str(prepared), str(quantized), _SampleReader(samples, batch_size),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                nodes_to_exclude=excluded,
                per_channel=True,
                reduce_range=False,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_providers=["CPUExecutionProvider"],
                extra_options={
                    "ActivationSymmetric": True,  # zero point 0: TensorRT requires it
                    "WeightSymmetric": True,
                    # TensorRT consumes fp32 bias and quantizes it itself; an int32 bias DQ is
                    # not part of its explicit-quantization pattern.
                    "QuantizeBias": False,
                    # Q/DQ on the inputs of INT8_OPS only (NVIDIA's placement rule).
                    "OpTypesToExcludeOutputQuantization": op_types,
                    # Belt and braces for weightless_nodes: a MatMul needs a constant B.
                    "MatMulConstBOnly": True,
                },
            )
        except Exception as e:  # ORT's quantizer raises ORT, onnx, numpy and assert errors
            raise PrecisionError(f"{label}: int8 quantization (quantize_static) failed: "
                                 f"{type(e).__name__}: {e}") from e
        model = load_model(quantized, label)
        residuals = place_activation_qdq(model, prepared, samples, batch_size, label,
                                         quantized=set(candidates) - set(excluded))
    qdq = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    if qdq == 0:
        raise PrecisionError(f"{label}: int8 quantization inserted no QuantizeLinear nodes")
    kept = [t for t in tuned if t.error > max_int8_error()]
    smoothed = sum(t.alpha is not None and t.outlier_channels > 0 for t in tuned
                   if t not in kept)
    log.info("%s: int8 calibrated on %d samples (batch %d): %d QuantizeLinear nodes; %d of %d "
             "MatMul/Gemm inputs outlier-smoothed, %d kept out of int8 (output SQNR < %g dB: "
             "%s); residual skip inputs: %d quantized, %d in high precision; %d nodes in all "
             "kept out of int8", label, sample_count(samples), batch_size, qdq, smoothed,
             len(tuned), len(kept), MIN_INT8_SQNR_DB,
             [n for t in kept for n in t.consumers], sum(r.quantized for r in residuals),
             sum(not r.quantized for r in residuals), len(excluded))
    return model


# ----------------------------------------------------------------------------------- placement


def _constants(graph: onnx.GraphProto) -> set[str]:
    """Tensors that are constant: initializers and Constant outputs (and their DQ'd forms)."""
    constant = {t.name for t in graph.initializer}
    constant |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    for node in graph.node:  # a weight already in Q/DQ form (int8 initializer -> DQ)
        if node.op_type == "DequantizeLinear" and node.input[0] in constant:
            constant.update(node.output)
    return constant


def weightless_nodes(graph: onnx.GraphProto, op_types: Sequence[str]) -> list[str]:
    """Names of the `op_types` nodes without a constant weight (activation x activation).

    A MatMul/Gemm qualifies when neither of its two operands is constant (attention's Q.K^T and
    softmax.V); a Conv/ConvTranspose when its weight (input 1) is not constant. Unnamed nodes
    are skipped (the caller names them first).
    """
    constant = _constants(graph)
    found = []
    for node in graph.node:
        if node.op_type not in op_types or not node.name:
            continue
        operands = node.input[:2] if node.op_type in ("MatMul", "Gemm") else node.input[1:2]
        if not any(name in constant for name in operands):
            found.append(node.name)
    return found


def _exclusions(
    source: onnx.ModelProto, prepared: Path, label: str, op_types: Sequence[str],
    keep_fp32_ops: Sequence[str],
) -> tuple[list[str], list[str]]:
    """Name the prepared graph's nodes; return (those that must stay out of int8, all
    `op_types` nodes).

    Two reasons: no constant weight (weightless_nodes), or the spec's keep_fp32_ops.
    Pre-processing fuses MatMul+Add into Gemm, so `keep_fp32_ops: [MatMul]` must also exclude
    the Gemms whose weight a MatMul read in the source. Unnamed nodes get stable names
    (`<op>_<index>`) so nodes_to_exclude can address them. The prepared model is rewritten.
    """
    model = load_model(prepared, label)
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    candidates = [n for n in model.graph.node if n.op_type in op_types]
    if not candidates:
        present = sorted({n.op_type for n in model.graph.node})
        raise PrecisionError(f"{label}: int8 found nothing to quantize: the model has none of "
                             f"{list(op_types)} (op types present: {present})")
    matmul_weights = {n.input[1] for n in source.graph.node
                      if n.op_type == "MatMul" and len(n.input) > 1}
    kept = {n.name for n in model.graph.node
            if "MatMul" in keep_fp32_ops and n.op_type == "Gemm" and n.input[1] in matmul_weights}
    if len(kept) == len(candidates):
        raise PrecisionError(f"{label}: int8 found nothing to quantize: keep_fp32_ops "
                             f"{list(keep_fp32_ops)} excludes every {list(op_types)} node")
    weightless = weightless_nodes(model.graph, op_types)
    if weightless:
        log.info("%s: %d %s nodes have no constant weight (activation x activation, e.g. "
                 "attention) and stay out of int8", label, len(weightless), list(op_types))
    excluded = sorted(kept | set(weightless))
    if len(excluded) == len(candidates):
        raise PrecisionError(f"{label}: int8 found nothing to quantize: none of the "
                             f"{len(candidates)} {list(op_types)} nodes has a constant weight")
    save_model(model, prepared, label)
    return excluded, [n.name for n in candidates]


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                found.setdefault(name, []).append(node)
    return found


# Ops between a quantized backbone and the residual Add that TensorRT fuses into the backbone's
# epilogue (ModelOpt's fusible paths: bias Add, constant Mul, BatchNormalization, Relu).
_EPILOGUE_OPS = ("Add", "Mul", "BatchNormalization", "Relu")


def residual_adds(graph: onnx.GraphProto,
                  quantized: set[str]) -> list[tuple[onnx.NodeProto, int, str]]:
    """(Add, index of its skip input, backbone op type) for every residual Add.

    A residual Add sums the local branch (the output of a `quantized` node, directly or through
    its epilogue: bias Add, constant Mul, BatchNormalization, Relu, each read by nothing else)
    with a non-constant skip input. When both operands are local branches (a ResNet
    downsample), the branch whose backbone comes later in the graph is the local one.
    """
    producers = {o: n for n in graph.node for o in n.output if o}
    order = {n.name: i for i, n in enumerate(graph.node)}
    constant = _constants(graph)
    consumers = _consumers(graph)

    def backbone(name: str) -> onnx.NodeProto | None:
        node = producers.get(name)
        if node is None:
            return None
        if node.name in quantized:
            return node
        if node.op_type not in _EPILOGUE_OPS or len(consumers.get(name, [])) != 1:
            return None
        if node.op_type in ("Add", "Mul"):  # bias Add, constant Mul: one constant operand
            operands = [i for i in node.input if i not in constant]
            return backbone(operands[0]) if len(node.input) == 2 and len(operands) == 1 \
                else None
        return backbone(node.input[0])  # BatchNormalization, Relu

    found = []
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        a, b = node.input
        if a in constant or b in constant:
            continue  # a bias Add, not a skip connection
        local_a, local_b = backbone(a), backbone(b)
        if local_a is not None and (local_b is None or
                                    order[local_a.name] > order[local_b.name]):
            found.append((node, 1, local_a.op_type))
        elif local_b is not None:
            found.append((node, 0, local_b.op_type))
    return found


def place_activation_qdq(
    model: onnx.ModelProto, prepared: Path, samples: Mapping[str, np.ndarray], batch_size: int,
    label: str, *, quantized: set[str],
) -> list[ResidualQuantization]:
    """Leave activation Q/DQ only where TensorRT consumes it; `model` is changed in place.

    ONNX Runtime's quantizer routes EVERY consumer of a tensor it quantized through the
    DequantizeLinear. Here only the `quantized` nodes (INT8_OPS kept in int8) and the skip input
    of a residual Add after a Conv/ConvTranspose backbone read Q/DQ; every other consumer
    (LayerNorm, Softmax, a MatMul kept out of int8, the skip input of a transformer residual)
    reads the float tensor again. A conv skip input without Q/DQ gets a new symmetric per-tensor
    pair, calibrated on `samples` with `prepared` (the fp32 graph). Returns the residual Adds.
    """
    graph = model.graph
    quantize_of = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    source_of: dict[str, str] = {}  # activation DQ output -> the float tensor its Q reads
    existing: dict[str, str] = {}  # float tensor -> a DQ output of it
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in quantize_of:
            tensor = quantize_of[node.input[0]].input[0]
            source_of[node.output[0]] = tensor
            existing.setdefault(tensor, node.output[0])
    found = residual_adds(graph, quantized)
    conv_skips = {(add.name, i) for add, i, op in found if op in ("Conv", "ConvTranspose")}
    missing = sorted({add.input[i] for add, i, _ in found if (add.name, i) in conv_skips
                      and add.input[i] not in source_of and add.input[i] not in existing})
    scales = _calibrate_absmax(prepared, missing, samples, batch_size, label) if missing else {}
    new_nodes: dict[str, list[onnx.NodeProto]] = {}
    shared: dict[str, bool] = {}
    unrouted = 0
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name in quantized:
            continue
        for i, name in enumerate(node.input):
            if (node.name, i) in conv_skips:
                tensor = source_of.get(name, name)
                shared[node.name] = tensor in existing
                if tensor not in existing:
                    existing[tensor] = _append_qdq(graph, tensor, scales[tensor], new_nodes)
                node.input[i] = existing[tensor]
            elif name in source_of:
                node.input[i] = source_of[name]
                unrouted += 1
    if new_nodes:
        insert_after_producers(graph, new_nodes)
    _drop_dangling_qdq(graph)
    done = [ResidualQuantization(add=add.name, tensor=source_of.get(add.input[i], add.input[i]),
                                 quantized=(add.name, i) in conv_skips,
                                 shared=shared.get(add.name, False)) for add, i, _ in found]
    log.debug("%s: %d consumers read float instead of Q/DQ; residual skip inputs %s", label,
              unrouted, [(r.add, r.tensor, r.quantized, r.shared) for r in done])
    return done


def _drop_dangling_qdq(graph: onnx.GraphProto) -> None:
    """Remove Q/DQ nodes (and their scale/zero-point initializers) that nothing reads anymore."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)


def _append_qdq(graph: onnx.GraphProto, tensor: str, scale: float,
                new_nodes: dict[str, list[onnx.NodeProto]]) -> str:
    """Create a symmetric int8 Q/DQ pair for `tensor`; returns the DQ output's name."""
    base = f"{tensor}_residual"
    scale_name, zp_name = f"{base}_scale", f"{base}_zero_point"
    graph.initializer.extend([
        numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name),
        numpy_helper.from_array(np.array(0, dtype=np.int8), zp_name),
    ])
    q = helper.make_node("QuantizeLinear", [tensor, scale_name, zp_name], [f"{base}_quantized"],
                         name=f"{base}_QuantizeLinear")
    dq = helper.make_node("DequantizeLinear", [f"{base}_quantized", scale_name, zp_name],
                          [f"{base}_dequantized"], name=f"{base}_DequantizeLinear")
    new_nodes[tensor] = [q, dq]
    return dq.output[0]


def _calibrate_absmax(
    prepared: Path, tensors: Sequence[str], samples: Mapping[str, np.ndarray], batch_size: int,
    label: str,
) -> dict[str, float]:
    """Symmetric MinMax scales (max |x| / 127 over every sample) of `tensors` in `prepared`."""
    model = load_model(prepared, label)
    outputs = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in outputs:
            model.graph.output.append(helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        absmax = dict.fromkeys(tensors, 0.0)
        ordered = {name: samples[name] for name in sorted(samples)}
        for batch in iter_batches(ordered, batch_size):
            for name, value in zip(tensors, session.run(list(tensors), dict(batch)), strict=True):
                absmax[name] = max(absmax[name], float(np.max(np.abs(value))) if value.size
                                   else 0.0)
    except Exception as e:  # ORT's pybind errors
        raise PrecisionError(f"{label}: calibrating the residual inputs {list(tensors)[:3]} "
                             f"failed: {type(e).__name__}: {e}") from e
    return {name: (value / INT8_QMAX if value > 0 else 1.0) for name, value in absmax.items()}


def _prepare_for_quantization(source: Path, prepared: Path, label: str) -> None:
    """ORT's recommended pre-processing: shape inference plus basic graph optimizations.

    The basic optimizations fold BatchNormalization into Conv weights before they are quantized
    per channel (quantizing first and scaling after would waste int8 range). Symbolic shape
    inference fails on some graphs; then only ONNX shape inference is used. When it fails it
    leaves scratch files (`sym_shape_infer_temp.onnx`, `<uuid>.data`) in the working directory,
    so it runs with the working directory set to the scratch directory of `prepared`.
    """
    source = source.resolve()
    with contextlib.chdir(prepared.parent):
        try:
            quant_pre_process(str(source), str(prepared))
        except Exception as e:  # sympy/ORT errors from symbolic shape inference
            log.warning("%s: symbolic shape inference failed (%s: %s); retrying without it",
                        label, type(e).__name__, e)
            try:
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            except Exception as e2:
                raise PrecisionError(f"{label}: int8 pre-processing (quant_pre_process) "
                                     f"failed: {type(e2).__name__}: {e2}") from e2
    if not prepared.is_file():
        raise PrecisionError(f"{label}: int8 pre-processing (quant_pre_process) wrote no model")
