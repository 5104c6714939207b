"""Outlier smoothing of int8 MatMul/Gemm inputs, chosen per input on calibration data.

Per-tensor int8 of an activation with a few outlier channels (transformers' LayerNorm and GELU
outputs) spends the int8 range on them. SmoothQuant's exact rewrite x @ W == (x / s) @ (s W)
moves the outliers into the per-channel weight scales; `tune_inputs` picks the strength per
input by the output error of its MatMul/Gemm nodes, and reports inputs that int8 cannot serve.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from tritonkit.errors import PrecisionError
from tritonkit.precision.onnx_edit import insert_after_producers, load_model, save_model
from tritonkit.precision.samples import iter_batches, sample_count

log = logging.getLogger(__name__)

# Symmetric int8 as ONNX Runtime's quantizer computes it (qmin = -127, qmax = 127).
INT8_QMAX = 127

# SmoothQuant migration strengths searched per MatMul/Gemm input (None: no smoothing).
SMOOTH_ALPHAS: tuple[float | None, ...] = (None, 0.5, 0.75)
# Channels whose SmoothQuant factor exceeds this percentile (nearest rank below) of all channels'
# factors are outliers; only they are scaled down (see outlier_smoothing).
OUTLIER_PERCENTILE = 99.0
# An input whose best int8 output SQNR (signal to quantization noise of its MatMul/Gemm outputs
# on calibration rows) stays below this keeps its MatMul/Gemm nodes out of int8.
MIN_INT8_SQNR_DB = 30.0


def max_int8_error() -> float:
    """MIN_INT8_SQNR_DB as the largest relative squared output error allowed."""
    return float(10.0 ** (-MIN_INT8_SQNR_DB / 10.0))
_SEARCH_ROWS = 4096  # activation rows (tokens, images) the search evaluates per input


@dataclass(frozen=True, kw_only=True)
class InputTuning:
    """What tune_inputs chose for one activation and how much it helped.

    `error` and `baseline` are relative output errors (||Y_q - Y||^2 / ||Y||^2 summed over the
    consumers, on calibration rows) with the choice and without smoothing.
    """

    tensor: str
    consumers: tuple[str, ...]
    alpha: float | None
    outlier_channels: int
    error: float
    baseline: float


@dataclass
class _Group:
    tensor: str
    nodes: list[onnx.NodeProto]
    weights: list[np.ndarray]  # [in, out], as x @ W
    absmax: np.ndarray | None = None  # per input channel, over every calibration row
    rows: list[np.ndarray] | None = None


def _effective_weight(node: onnx.NodeProto, weight: np.ndarray) -> np.ndarray | None:
    """The weight as [in, out] for x @ W, or None when the node is not a plain x @ W."""
    if weight.ndim != 2:
        return None
    if node.op_type == "MatMul":
        return weight
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0) != 0:
        return None
    return weight.T if attrs.get("transB", 0) else weight


def _tunable_groups(graph: onnx.GraphProto, op_types: Sequence[str],
                    excluded: Sequence[str]) -> list[_Group]:
    """MatMul/Gemm nodes with a constant 2-D weight of their own, grouped by activation input."""
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    groups: dict[str, _Group] = {}
    skip = set(excluded)
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm") or node.op_type not in op_types \
                or node.name in skip or len(node.input) < 2:
            continue
        x, w = node.input[0], node.input[1]
        if w not in inits or x in inits or uses.get(w, 0) != 1:
            continue
        weight = _effective_weight(node, numpy_helper.to_array(inits[w]))
        if weight is None or weight.dtype != np.float32:
            continue
        group = groups.setdefault(x, _Group(tensor=x, nodes=[], weights=[]))
        group.nodes.append(node)
        group.weights.append(weight)
    return [groups[k] for k in sorted(groups)
            if len({w.shape[0] for w in groups[k].weights}) == 1]


def _fake_quant(x: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """Symmetric int8 fake-quantization, as QuantizeLinear + DequantizeLinear compute it."""
    scale = np.asarray(scale, dtype=np.float32)
    return (np.clip(np.round(x / scale), -INT8_QMAX, INT8_QMAX) * scale).astype(np.float32)


def _weight_scales(weight: np.ndarray) -> np.ndarray:
    """Per-output-channel symmetric int8 scales of an [in, out] weight."""
    absmax = np.abs(weight).max(axis=0)
    return np.where(absmax > 0, absmax / INT8_QMAX, 1.0).astype(np.float32)


def outlier_smoothing(absmax: np.ndarray, weights: Sequence[np.ndarray],
                      alpha: float) -> np.ndarray:
    """Per-input-channel divisors s >= 1 that shrink only the outlier channels.

    SmoothQuant's s = max|x|^alpha / max|W|^(1 - alpha), normalized by its value at the
    OUTLIER_PERCENTILE channel and floored at 1: channels below that are left alone (amplifying
    channels that were quiet on a small calibration set saturates them on unseen data), outlier
    channels are divided by s (and their weight rows multiplied by it). s is rounded so that 1/s
    is exact in fp16, the Mul's constant, whatever precision runs it.
    """
    wmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0).astype(np.float64)
    amax = absmax.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where((amax > 0) & (wmax > 0), amax ** alpha / wmax ** (1.0 - alpha), 0.0)
    reference = float(np.percentile(raw, OUTLIER_PERCENTILE, method="lower"))
    scale = np.maximum(1.0, raw / reference) if reference > 0 else np.ones_like(raw)
    inverse = (1.0 / scale).astype(np.float16).astype(np.float32)
    return (np.float32(1.0) / inverse).astype(np.float32)


def _output_error(x: np.ndarray, group: _Group, reference: list[np.ndarray],
                  alpha: float | None) -> float:
    """Relative error of the group's outputs with int8 inputs/weights (smoothed by alpha)."""
    assert group.absmax is not None
    if alpha is None:
        smooth = np.ones_like(group.absmax)
    else:
        smooth = outlier_smoothing(group.absmax, group.weights, alpha)
    inverse = (np.float32(1.0) / smooth).astype(np.float32)
    amax = float(np.max(group.absmax * inverse))
    xq = _fake_quant(x * inverse, max(amax, 1e-12) / INT8_QMAX)
    err = total = 0.0
    for weight, y in zip(group.weights, reference, strict=True):
        scaled = weight * smooth[:, None]
        yq = xq @ _fake_quant(scaled, _weight_scales(scaled)[None, :])
        err += float(np.sum((yq - y) ** 2))
        total += float(np.sum(y * y))
    return err / total if total > 0 else 0.0


def _collect(prepared: onnx.ModelProto, groups: Sequence[_Group],
             samples: Mapping[str, np.ndarray], batch_size: int, label: str) -> None:
    """Per-channel max |x| over every calibration row, and up to _SEARCH_ROWS rows per input."""
    probe = onnx.ModelProto()
    probe.CopyFrom(prepared)
    outputs = {o.name for o in probe.graph.output}
    names = [g.tensor for g in groups]
    for name in names:
        if name not in outputs:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ordered = {name: samples[name] for name in sorted(samples)}
    batches = -(-sample_count(ordered) // batch_size)
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        for batch in iter_batches(ordered, batch_size):
            for group, value in zip(groups, session.run(names, dict(batch)), strict=True):
                rows = np.asarray(value, dtype=np.float32).reshape(-1, value.shape[-1])
                absmax = np.abs(rows).max(axis=0)
                group.absmax = absmax if group.absmax is None else np.maximum(group.absmax,
                                                                              absmax)
                step = max(1, -(-rows.shape[0] * batches // _SEARCH_ROWS))
                group.rows = [*(group.rows or []), rows[::step]]
    except Exception as e:  # ORT's pybind errors
        raise PrecisionError(f"{label}: collecting activations for int8 tuning failed: "
                             f"{type(e).__name__}: {e}") from e


def tune_inputs(
    prepared: Path, samples: Mapping[str, np.ndarray], batch_size: int, label: str, *,
    op_types: Sequence[str], excluded: Sequence[str],
) -> list[InputTuning]:
    """Smooth the outlier channels of MatMul/Gemm inputs where it helps; rewrites `prepared`.

    Per-tensor int8 of an activation with a few outlier channels (the LayerNorm and GELU
    outputs of transformers) spends the int8 range on them. For each activation feeding
    MatMul/Gemm nodes with constant weights, SMOOTH_ALPHAS is searched on calibration rows for
    the smallest output error of those nodes, with the weights quantized per output channel as
    the quantizer will. A chosen alpha becomes SmoothQuant's exact rewrite
    x @ W == (x * (1/s)) @ (s W) (outlier_smoothing): a Mul node on the MatMul branch only (the
    skip connection keeps x), which TensorRT fuses into the QuantizeLinear, and s folded into
    the weights. ORT's calibrator then calibrates the smoothed tensor.
    """
    model = load_model(prepared, label)
    groups = _tunable_groups(model.graph, op_types, excluded)
    if not groups:
        return []
    _collect(model, groups, samples, batch_size, label)
    inits = {t.name: t for t in model.graph.initializer}
    choices: list[InputTuning] = []
    new_nodes: dict[str, list[onnx.NodeProto]] = {}
    for group in groups:
        assert group.absmax is not None and group.rows is not None
        x = np.concatenate(group.rows)
        reference = [x @ w for w in group.weights]
        scores = [(_output_error(x, group, reference, alpha), i, alpha)
                  for i, alpha in enumerate(SMOOTH_ALPHAS)]
        error, _, alpha = min(scores)  # ties go to the earlier (milder) choice
        smooth = (np.ones_like(group.absmax) if alpha is None
                  else outlier_smoothing(group.absmax, group.weights, alpha))
        choices.append(InputTuning(
            tensor=group.tensor, consumers=tuple(n.name for n in group.nodes), alpha=alpha,
            outlier_channels=int(np.sum(smooth > 1.0)), error=error,
            baseline=_output_error(x, group, reference, None)))
        if error > max_int8_error():
            continue
        if alpha is None or not np.any(smooth > 1.0):
            continue
        inverse = (np.float32(1.0) / smooth).astype(np.float32)
        smoothed, scale_name = f"{group.tensor}_smoothed", f"{group.tensor}_smooth_inverse"
        model.graph.initializer.append(numpy_helper.from_array(inverse, scale_name))
        new_nodes[group.tensor] = [helper.make_node(
            "Mul", [group.tensor, scale_name], [smoothed], name=f"{group.tensor}_Smooth")]
        for node in group.nodes:
            node.input[0] = smoothed
            stored = numpy_helper.to_array(inits[node.input[1]])
            transposed = node.op_type == "Gemm" and any(
                a.name == "transB" and a.i for a in node.attribute)
            factor = smooth[None, :] if transposed else smooth[:, None]
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(
                (stored * factor).astype(np.float32), node.input[1]))
    if new_nodes:
        insert_after_producers(model.graph, new_nodes)
        save_model(model, prepared, label)
    for c in choices:
        log.debug("%s: int8 input %s -> %s: alpha %s (%d outlier channels), output error %.3g "
                  "(unsmoothed %.3g)", label, c.tensor, list(c.consumers), c.alpha,
                  c.outlier_channels, c.error, c.baseline)
    return choices
