"""The accuracy gate: a transformed model must stay within its budget against the fp32 source.

Both models run in ONNX Runtime (CPUExecutionProvider) on the same held-out samples, in batches
of 64 (or the model's fixed leading dim). One output is compared: `output_name`, by default the
reference model's FIRST graph output. Metrics (spec.AccuracyMetric):

- top1_agreement: fraction of rows whose argmax over the last axis agrees. An output with more
  than two axes ([batch, tokens, classes]) counts every leading position as a row.
- cosine: the SMALLEST cosine similarity over rows (each batch row flattened); one bad row is
  enough to fail. Two all-zero rows count as identical (1.0), one all-zero row as 0.0.
- max_abs_diff: the largest absolute difference over all elements.
- mean_pooled_cosine: for encoders ([batch, tokens, dim] hidden states): each row is pooled
  over the tokens its `attention_mask` input marks (as the embedding pipeline does), then the
  SMALLEST cosine over rows, as for cosine.
- map50_delta: for YOLO-format detectors ([batch, 4 + C, anchors]): both outputs are decoded
  with the serving decode + NMS (tritonkit.processing.detection, default thresholds) and scored with
  mAP@0.5 against the ground truth the holdout .npz carries (`gt_boxes` [N, M, 4] xyxy in
  model-input pixels, `gt_classes` [N, M], -1 padding); measured = reference mAP - candidate
  mAP, a maximum.
- psnr_delta: for image-to-image models ([batch, 1, H, W] luma in [0, 1], e.g. super-resolution):
  each output row is clipped to [0, 1] and scored by PSNR (dB, 2 px border crop, capped at
  100 dB; tritonkit.processing.super_resolution.psnr_rows) against the ground truth the holdout
  .npz carries (`target`, the same shape as the output); measured = mean reference PSNR - mean
  candidate PSNR, a maximum. A candidate row with inf/NaN scores -inf dB (the delta is inf).

Rows where the candidate is non-finite (inf/NaN: fp16 overflow) but the reference is finite
count as the worst case: disagreement, cosine -1, difference inf. Higher-is-better metrics pass
when measured >= threshold; max_abs_diff passes when measured <= threshold.

How the models are evaluated (the figure must not depend on the build host's CPU):

- Both models run with graph optimizations off and ONNX Runtime's QDQ transformers disabled
  (gate_session_options). With its default (`all`/`extended`) optimizations ONNX Runtime fuses
  DequantizeLinear -> MatMul/Conv -> QuantizeLinear into its own u8s8 int8 kernels, whose
  results depend on the instruction set: without AVX-512 VNNI / AVX-VNNI (AVX2, AVX-512BW) the
  u8 x s8 pair sums saturate at int16 (measured: min cosine 0.9457 instead of 0.9983 on a small
  classifier). TensorRT never computes that way. Unfused, every Q/DQ pair is exact
  fake-quantization in fp32 (QuantizeLinear rounds x / scale half-to-even and saturates,
  DequantizeLinear multiplies back), which is the arithmetic the int8 plan approximates.
- fp16 tensors are evaluated as "fp16 storage, fp32 compute" (emulate_fp16): the model is
  rewritten to fp32 with every fp16 tensor rounded to fp16 (a Cast pair) where it is produced.
  ONNX Runtime's own fp16 path depends on the host: its native fp16 kernels are registered
  only where MLAS reports fp16 vector arithmetic (ARM64 with FP16, e.g. Grace), and on x86 it
  runs fp16 nodes through inserted fp32 Casts and then drops the fp16 rounding between them, so
  the activations never see fp16 at all. The rewrite makes the figure identical on every host
  and closer to TensorRT, which stores fp16 activations between layers.
- Every report records the evaluation mode and the host's instruction set (host_isa).
"""

from __future__ import annotations

import logging
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

from tritonkit.errors import AccuracyGateError, PrecisionError
from tritonkit.precision.samples import (
    ModelInput,
    SamplePurpose,
    batch_size_for,
    conform_samples,
    iter_batches,
    load_samples,
    read_model_inputs,
    sample_count,
)
from tritonkit.processing import detection
from tritonkit.processing import super_resolution as sr
from tritonkit.processing.text import mean_pool
from tritonkit.spec import AccuracyBudget, AccuracyMetric, Precision

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The result of comparing one output of two models over a sample set."""

    metric: AccuracyMetric
    measured: float
    samples: int  # batch rows fed to both models
    output_name: str
    nonfinite_rows: int = 0  # rows where the candidate is inf/NaN and the reference is not
    evaluation: str = ""  # how the candidate was run (evaluation_mode)


@dataclass(frozen=True, kw_only=True)
class AccuracyReport:
    """One accuracy-gate verdict, ready for logs and the provenance manifest."""

    model_name: str
    precision: Precision
    metric: AccuracyMetric
    threshold: float
    measured: float
    samples: int
    passed: bool
    output_name: str = ""
    nonfinite_rows: int = 0
    evaluation: str = ""  # e.g. "ONNX Runtime CPU, Q/DQ as fp32 fake-quantization (...)"
    host_isa: str = ""  # the build host's instruction set (host_isa), for the record

    @property
    def margin(self) -> float:
        """How far inside the budget the measurement is: positive passes, negative fails."""
        if self.metric.higher_is_better:
            return self.measured - self.threshold
        return self.threshold - self.measured

    def describe(self) -> str:
        """E.g. 'm_int8 (int8): top1_agreement 0.9950 over 400 samples, budget >= 0.9800
        (margin +0.0150) PASS'."""
        fmt = _FORMATS[self.metric]
        relation = ">=" if self.metric.higher_is_better else "<="
        output = f" [output {self.output_name}]" if self.output_name else ""
        nonfinite = (f", {self.nonfinite_rows} rows non-finite in the candidate"
                     if self.nonfinite_rows else "")
        context = "; ".join(part for part in (
            self.evaluation, f"host {self.host_isa}" if self.host_isa else "") if part)
        return (f"{self.model_name} ({self.precision.value}){output}: {self.metric.value} "
                f"{self.measured:{fmt}} over {self.samples} samples{nonfinite}, budget "
                f"{relation} {self.threshold:{fmt}} (margin {self.margin:+{fmt}}) "
                f"{'PASS' if self.passed else 'FAIL'}{f' [{context}]' if context else ''}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the manifest's `accuracy` field."""
        return {
            "metric": self.metric.value,
            "threshold": self.threshold,
            "measured": self.measured if math.isfinite(self.measured) else str(self.measured),
            "margin": self.margin if math.isfinite(self.margin) else str(self.margin),
            "samples": self.samples,
            "output": self.output_name,
            "nonfinite_rows": self.nonfinite_rows,
            "passed": self.passed,
            "evaluation": self.evaluation,
            "host_isa": self.host_isa,
        }


_FORMATS = {
    AccuracyMetric.TOP1_AGREEMENT: ".4f",
    AccuracyMetric.COSINE: ".6f",
    AccuracyMetric.MAX_ABS_DIFF: ".4g",
    AccuracyMetric.MEAN_POOLED_COSINE: ".6f",
    AccuracyMetric.MAP50_DELTA: ".4f",
    AccuracyMetric.PSNR_DELTA: ".4f",
}
MASK_INPUT = "attention_mask"  # the encoder input mean_pooled_cosine pools over
GT_BOXES_KEY = "gt_boxes"
GT_CLASSES_KEY = "gt_classes"
TARGET_KEY = "target"  # psnr_delta: ground-truth images, the output's shape, values in [0, 1]


def budget_met(metric: AccuracyMetric, measured: float, threshold: float) -> bool:
    """measured >= threshold (top1, cosine) or <= threshold (max_abs_diff); NaN never passes."""
    if math.isnan(measured):
        return False
    return measured >= threshold if metric.higher_is_better else measured <= threshold


class _Accumulator:
    """Folds per-batch comparisons into one metric value over the whole sample set."""

    def __init__(self, metric: AccuracyMetric, *, truth_source: str = "the ground truth") -> None:
        self.metric = metric
        self.truth_source = truth_source
        self.rows = 0
        self.agree = 0
        self.worst_cosine = math.inf
        self.max_diff = 0.0
        self.nonfinite_rows = 0
        self.ref_detections: list[detection.ImageDetections] = []
        self.cand_detections: list[detection.ImageDetections] = []
        self.truth: list[detection.ImageDetections] = []
        self.reference_map = math.nan
        self.candidate_map = math.nan
        self.ref_psnr: list[np.ndarray] = []
        self.cand_psnr: list[np.ndarray] = []
        self.reference_psnr = math.nan
        self.candidate_psnr = math.nan

    def add(self, ref: np.ndarray, cand: np.ndarray, *, batch: Mapping[str, np.ndarray],
            truth: Mapping[str, np.ndarray] | None = None) -> None:
        if self.metric is AccuracyMetric.MEAN_POOLED_COSINE:
            ref, cand = _pooled(ref, batch), _pooled(cand, batch)
        elif self.metric is AccuracyMetric.MAP50_DELTA:
            self._add_detections(ref, cand, batch, truth)
            return
        elif self.metric is AccuracyMetric.PSNR_DELTA:
            self._add_psnr(ref, cand, truth)
            return
        ref = np.asarray(ref, dtype=np.float64)
        cand = np.asarray(cand, dtype=np.float64)
        if self.metric is AccuracyMetric.TOP1_AGREEMENT:
            if ref.ndim < 2:
                raise PrecisionError(f"top1_agreement needs a class axis, but the output has "
                                     f"shape {ref.shape}; use cosine or max_abs_diff")
            ref = ref.reshape(-1, ref.shape[-1])
            cand = cand.reshape(ref.shape)
        else:
            ref = ref.reshape(ref.shape[0], -1)
            cand = cand.reshape(ref.shape)
        bad = np.any(~np.isfinite(cand), axis=1) & np.all(np.isfinite(ref), axis=1)
        self.nonfinite_rows += int(bad.sum())
        self.rows += ref.shape[0]
        if self.metric is AccuracyMetric.TOP1_AGREEMENT:
            same = np.argmax(ref, axis=1) == np.argmax(cand, axis=1)
            self.agree += int(np.sum(same & ~bad))
        elif self.metric in (AccuracyMetric.COSINE, AccuracyMetric.MEAN_POOLED_COSINE):
            self.worst_cosine = min(self.worst_cosine, float(np.min(_row_cosine(ref, cand, bad))))
        else:
            diff = np.where(bad[:, None], np.inf, np.abs(ref - cand))
            self.max_diff = max(self.max_diff, float(np.max(diff)) if diff.size else 0.0)

    def _add_detections(self, ref: np.ndarray, cand: np.ndarray, batch: Mapping[str, np.ndarray],
                        truth: Mapping[str, np.ndarray] | None) -> None:
        if truth is None:
            raise PrecisionError(f"map50_delta needs ground truth: the holdout .npz must hold "
                                 f"{GT_BOXES_KEY!r} and {GT_CLASSES_KEY!r}")
        ref = np.asarray(ref, dtype=np.float32)
        cand = np.asarray(cand, dtype=np.float32)
        if ref.ndim != 3 or ref.shape[1] < 5:
            raise PrecisionError(f"map50_delta needs a YOLO-format output [batch, 4 + classes, "
                                 f"anchors], got shape {ref.shape}")
        bad = ~np.isfinite(cand).reshape(cand.shape[0], -1).all(axis=1) & \
            np.isfinite(ref).reshape(ref.shape[0], -1).all(axis=1)
        self.nonfinite_rows += int(bad.sum())
        self.rows += ref.shape[0]
        pixels = next(iter(batch.values()))
        # boxes are clipped to the model input (NCHW); any other input: no clipping
        height, width = (float(pixels.shape[-2]), float(pixels.shape[-1])) \
            if pixels.ndim == 4 else (math.inf, math.inf)
        identity = np.tile(np.array([1.0, 0.0, 0.0, width, height], dtype=np.float32),
                           (ref.shape[0], 1))
        for output, sink in ((ref, self.ref_detections), (cand, self.cand_detections)):
            decoded = detection.decode_detections(np.nan_to_num(output, nan=0.0), identity)
            sink.extend(detection.detections_from_batch(decoded))
        boxes, classes = truth[GT_BOXES_KEY], truth[GT_CLASSES_KEY]
        for row in range(ref.shape[0]):
            keep = classes[row] >= 0
            self.truth.append(detection.ImageDetections(
                boxes=boxes[row][keep], classes=classes[row][keep],
                scores=np.ones(int(keep.sum()), dtype=np.float32)))

    def _add_psnr(self, ref: np.ndarray, cand: np.ndarray,
                  truth: Mapping[str, np.ndarray] | None) -> None:
        if truth is None or TARGET_KEY not in truth:
            raise PrecisionError(f"psnr_delta needs ground truth: {self.truth_source} must hold "
                                 f"{TARGET_KEY!r}, the target images shaped like the output")
        target = np.asarray(truth[TARGET_KEY])
        if target.shape != ref.shape:
            raise PrecisionError(
                f"psnr_delta: {self.truth_source}: key {TARGET_KEY!r} has shape "
                f"{list(target.shape)} for these rows, but the model output has shape "
                f"{list(ref.shape)}; they must match ([batch, 1, H, W] luma in [0, 1])")
        if ref.ndim < 3 or min(ref.shape[-2:]) <= 2 * sr.BORDER:
            raise PrecisionError(f"psnr_delta needs image outputs [batch, ..., H, W] larger than "
                                 f"{2 * sr.BORDER}x{2 * sr.BORDER}, got shape {list(ref.shape)}")
        rows = ref.shape[0]
        ref_ok = np.isfinite(ref).reshape(rows, -1).all(axis=1)
        cand_ok = np.isfinite(cand).reshape(rows, -1).all(axis=1)
        self.nonfinite_rows += int(np.sum(~cand_ok & ref_ok))
        self.rows += rows
        truth_01 = np.clip(target.astype(np.float64), 0.0, 1.0)
        for output, sink in ((ref, self.ref_psnr), (cand, self.cand_psnr)):
            clipped = np.clip(np.nan_to_num(np.asarray(output, dtype=np.float64), nan=0.0),
                              0.0, 1.0)
            sink.append(sr.psnr_rows(clipped, truth_01, peak=1.0, crop=sr.BORDER))
        self.cand_psnr[-1] = np.where(cand_ok | ~ref_ok, self.cand_psnr[-1], -np.inf)

    def value(self) -> float:
        if self.metric is AccuracyMetric.TOP1_AGREEMENT:
            return self.agree / self.rows if self.rows else math.nan
        if self.metric in (AccuracyMetric.COSINE, AccuracyMetric.MEAN_POOLED_COSINE):
            return self.worst_cosine if self.rows else math.nan
        if self.metric is AccuracyMetric.MAP50_DELTA:
            if not self.rows:
                return math.nan
            reference = detection.mean_average_precision(self.ref_detections, self.truth)
            candidate = detection.mean_average_precision(self.cand_detections, self.truth)
            self.reference_map = reference
            self.candidate_map = candidate
            return reference - candidate
        if self.metric is AccuracyMetric.PSNR_DELTA:
            if not self.rows:
                return math.nan
            self.reference_psnr = float(np.mean(np.concatenate(self.ref_psnr)))
            self.candidate_psnr = float(np.mean(np.concatenate(self.cand_psnr)))
            return self.reference_psnr - self.candidate_psnr
        return self.max_diff


def _pooled(output: np.ndarray, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    if MASK_INPUT not in batch:
        raise PrecisionError(f"mean_pooled_cosine needs the model input {MASK_INPUT!r} "
                             f"(inputs: {sorted(batch)})")
    output = np.asarray(output)
    if output.ndim != 3:
        raise PrecisionError(f"mean_pooled_cosine needs hidden states [batch, tokens, dim], "
                             f"got shape {output.shape}")
    finite = np.where(np.isfinite(output), output, np.nan)
    pooled = mean_pool(np.nan_to_num(finite, nan=0.0), batch[MASK_INPUT], normalize=False)
    # keep inf/NaN visible to the non-finite row accounting
    broken = ~np.isfinite(output).reshape(output.shape[0], -1).all(axis=1)
    return np.where(broken[:, None], np.nan, pooled.astype(np.float64))


def _row_cosine(ref: np.ndarray, cand: np.ndarray, bad: np.ndarray) -> np.ndarray:
    norm_r = np.linalg.norm(ref, axis=1)
    norm_c = np.linalg.norm(np.where(np.isfinite(cand), cand, 0.0), axis=1)
    both_zero = (norm_r == 0) & (norm_c == 0)
    denom = np.where(norm_r * norm_c > 0, norm_r * norm_c, 1.0)
    cos = np.where(norm_r * norm_c > 0,
                   np.sum(ref * np.where(np.isfinite(cand), cand, 0.0), axis=1) / denom, 0.0)
    cos = np.where(both_zero, 1.0, cos)
    cos = np.where(bad, -1.0, cos)
    return np.clip(cos, -1.0, 1.0)


# ------------------------------------------------------------------------------- evaluation

# ONNX Runtime settings of every gate session (see the module doc): no graph optimizations, and
# the QDQ transformers off as well (`session.disable_quant_qdq`), so no level ever fuses Q/DQ
# into host-dependent int8 kernels or quantizes a bias.
GATE_OPTIMIZATION_LEVEL = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
GATE_SESSION_CONFIG: dict[str, str] = {"session.disable_quant_qdq": "1"}

QDQ_EVALUATION = "Q/DQ as fp32 fake-quantization"
FP16_EVALUATION = "fp16 tensors rounded to fp16, computed in fp32"
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")

# /proc/cpuinfo flags that decide how ONNX Runtime's (and other) int8/fp16 CPU kernels compute.
_ISA_FLAGS = {"x86": ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
                      "avx512_fp16"),
              "arm": ("asimd", "asimdhp", "asimddp", "i8mm", "sve", "bf16")}


def gate_session_options() -> ort.SessionOptions:
    """The SessionOptions every accuracy-gate session uses (host-independent arithmetic)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = GATE_OPTIMIZATION_LEVEL
    for key, value in GATE_SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    return options


@cache
def host_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The host's CPU and the instruction-set extensions that matter for int8/fp16 kernels.

    E.g. 'x86_64 avx2 avx512f avx512bw avx512_vnni (no avx_vnni, amx_int8, avx512_fp16)'.
    Read from /proc/cpuinfo (the first CPU's flags/Features line); 'unknown' where absent.
    """
    machine = platform.machine() or "unknown"
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return f"{machine} (flags unknown)"
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags = set(value.split())
            break
    wanted = _ISA_FLAGS["arm" if machine.lower() in ("aarch64", "arm64") else "x86"]
    present = [f for f in wanted if f in flags]
    absent = [f for f in wanted if f not in flags]
    return f"{machine} {' '.join(present) or '(none)'}" + \
        (f" (no {', '.join(absent)})" if absent else "")


def evaluation_mode(model: onnx.ModelProto) -> str:
    """How the gate runs `model`, e.g. 'ONNX Runtime CPU, Q/DQ as fp32 fake-quantization
    (host-independent)'."""
    parts = []
    if any(n.op_type in _QDQ_OPS for n in model.graph.node):
        parts.append(QDQ_EVALUATION)
    if _has_fp16(model):
        parts.append(FP16_EVALUATION)
    return f"ONNX Runtime CPU, {', '.join(parts) or 'fp32'} (host-independent)"


def _has_fp16(model: onnx.ModelProto) -> bool:
    graph = model.graph
    if any(t.data_type == TensorProto.FLOAT16 for t in graph.initializer):
        return True
    for vi in (*graph.input, *graph.value_info, *graph.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT16:
            return True
    return any(_casts_to_fp16(n) for n in graph.node)


def _casts_to_fp16(node: onnx.NodeProto) -> bool:
    return any(a.name in ("to", "dtype") and a.type == onnx.AttributeProto.INT
               and a.i == TensorProto.FLOAT16 for a in node.attribute)


def emulate_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` rewritten to fp32 with every fp16 tensor rounded to fp16 where it is produced.

    fp16 initializers and constants become fp32 (exactly); `to`/`dtype` attributes naming fp16
    name fp32; each node output (and graph input) that was fp16 is followed by
    Cast(to=fp16) -> Cast(to=fp32) under its original name, so every consumer reads the value
    rounded (and overflowed to inf) exactly as fp16 storage would hold it, while the ops compute
    in fp32 ("fp16 storage, fp32 compute"). A model without fp16 is returned unchanged.
    Raises PrecisionError for fp16 inside subgraphs (If/Loop/Scan bodies), not supported here.
    """
    if not _has_fp16(model):
        return model
    for node in model.graph.node:
        for attr in node.attribute:
            graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            if any(_has_fp16(helper.make_model(g)) for g in graphs):
                raise PrecisionError(f"node {node.name or node.op_type}: fp16 inside a subgraph "
                                     "cannot be evaluated host-independently")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError) as e:
        raise PrecisionError(f"fp16 evaluation: shape inference failed: {e}") from e
    graph = inferred.graph
    fp16 = {vi.name for vi in (*graph.input, *graph.value_info, *graph.output)
            if vi.type.tensor_type.elem_type == TensorProto.FLOAT16}
    fp16 |= {t.name for t in graph.initializer if t.data_type == TensorProto.FLOAT16}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    for i, tensor in enumerate(g.initializer):
        if tensor.data_type == TensorProto.FLOAT16:
            g.initializer[i].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(tensor).astype(np.float32), tensor.name))
    nodes: list[onnx.NodeProto] = []
    for vi in g.input:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT16:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
            _round_to_fp16(g, vi.name, nodes, rename_producer=None)
    for node in g.node:
        for attr in node.attribute:
            if attr.name in ("to", "dtype") and attr.type == onnx.AttributeProto.INT \
                    and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
            elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == \
                    TensorProto.FLOAT16:
                attr.t.CopyFrom(numpy_helper.from_array(
                    numpy_helper.to_array(attr.t).astype(np.float32), attr.t.name))
        nodes.append(node)
        if node.op_type in ("Constant", "ConstantOfShape"):
            continue  # its fp16 value is exact in fp32 already
        for out_name in node.output:
            if out_name in fp16:
                _round_to_fp16(g, out_name, nodes, rename_producer=node)
    for vi in g.output:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT16:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    del g.value_info[:]
    del g.node[:]
    g.node.extend(nodes)
    return out


def _round_to_fp16(graph: onnx.GraphProto, name: str, nodes: list[onnx.NodeProto], *,
                   rename_producer: onnx.NodeProto | None) -> None:
    """Make `name` hold its value rounded to fp16: the producer writes `name`__fp32 instead."""
    raw, half = f"{name}__fp32", f"{name}__fp16"
    if rename_producer is not None:
        for i, out in enumerate(rename_producer.output):
            if out == name:
                rename_producer.output[i] = raw
    else:  # a graph input: its consumers read the rounded copy
        for node in graph.node:
            for i, inp in enumerate(node.input):
                if inp == name:
                    node.input[i] = raw
        raw, name = name, raw
    nodes.append(helper.make_node("Cast", [raw], [half], to=TensorProto.FLOAT16,
                                  name=f"{half}_round"))
    nodes.append(helper.make_node("Cast", [half], [name], to=TensorProto.FLOAT,
                                  name=f"{half}_widen"))


def _session(path: Path, role: str) -> tuple[ort.InferenceSession, str]:
    """A gate session for `path` and its evaluation mode (see the module doc)."""
    try:
        model = onnx.load(str(path))
    except (OSError, ValueError, DecodeError) as e:
        raise PrecisionError(f"{role} model {path}: cannot read it: {e}") from e
    mode = evaluation_mode(model)
    try:
        data = emulate_fp16(model).SerializeToString() if _has_fp16(model) else str(path)
        return ort.InferenceSession(data, gate_session_options(),
                                    providers=["CPUExecutionProvider"]), mode
    except PrecisionError as e:
        raise PrecisionError(f"{role} model {path}: {e}") from e
    except Exception as e:  # ORT's pybind errors (Fail, InvalidGraph, NoSuchFile, ...)
        raise PrecisionError(f"{role} model {path}: ONNX Runtime cannot load it: "
                             f"{type(e).__name__}: {e}") from e


def compare(
    reference: Path,
    candidate: Path,
    samples: Mapping[str, np.ndarray],
    metric: AccuracyMetric,
    *,
    output_name: str | None = None,
    truth: Mapping[str, np.ndarray] | None = None,
    truth_source: str = "the ground truth",
) -> Comparison:
    """Run both models on `samples` and compare one output (default: the reference's first).

    `truth` holds the ground-truth arrays map50_delta and psnr_delta need (rows aligned with
    `samples`); `truth_source` names where they came from in error messages.
    """
    reference, candidate = Path(reference), Path(candidate)
    (ref_sess, _), (cand_sess, mode) = (_session(reference, "reference"),
                                        _session(candidate, "candidate"))
    name = output_name or ref_sess.get_outputs()[0].name
    for path, sess in ((reference, ref_sess), (candidate, cand_sess)):
        names = [o.name for o in sess.get_outputs()]
        if name not in names:
            raise PrecisionError(f"{path}: has no output {name!r} (outputs: {names})")
    inputs: tuple[ModelInput, ...] = read_model_inputs(reference)
    feed = conform_samples(samples, inputs, model=str(reference), purpose=SamplePurpose.HOLDOUT)
    total = sample_count(feed)
    batch_size = batch_size_for(inputs, total, model=str(reference))
    acc = _Accumulator(metric, truth_source=truth_source)
    start = 0
    for batch in iter_batches(feed, batch_size):
        ref_out = _run(ref_sess, reference, name, batch)
        cand_out = _run(cand_sess, candidate, name, batch)
        if ref_out.shape != cand_out.shape:
            raise PrecisionError(f"{candidate}: output {name!r} has shape {cand_out.shape}, the "
                                 f"reference {reference} gives {ref_out.shape}")
        rows = sample_count(batch)
        part = None if truth is None else {k: np.asarray(v)[start:start + rows]
                                           for k, v in truth.items()}
        acc.add(ref_out, cand_out, batch=batch, truth=part)
        start += rows
    measured = acc.value()
    if metric is AccuracyMetric.MAP50_DELTA and acc.rows:
        log.info("%s: mAP@0.5 reference %.4f, candidate %.4f (delta %.4f)", candidate,
                 acc.reference_map, acc.candidate_map, measured)
    if metric is AccuracyMetric.PSNR_DELTA and acc.rows:
        log.info("%s: PSNR reference %.4f dB, candidate %.4f dB (delta %.4f dB)", candidate,
                 acc.reference_psnr, acc.candidate_psnr, measured)
    if acc.nonfinite_rows:
        log.warning("%s: %d of %d rows of output %r are inf/NaN where the reference is finite",
                    candidate, acc.nonfinite_rows, acc.rows, name)
    return Comparison(metric=metric, measured=measured, samples=total, output_name=name,
                      nonfinite_rows=acc.nonfinite_rows, evaluation=mode)


def _run(sess: ort.InferenceSession, path: Path, output: str,
         batch: Mapping[str, np.ndarray]) -> np.ndarray:
    try:
        return np.asarray(sess.run([output], dict(batch))[0])
    except Exception as e:  # ORT's pybind errors (InvalidArgument, Fail, ...)
        raise PrecisionError(f"{path}: inference failed on the samples: "
                             f"{type(e).__name__}: {e}") from e


def measure(
    reference: Path,
    candidate: Path,
    samples: Mapping[str, np.ndarray],
    metric: AccuracyMetric,
    *,
    output_name: str | None = None,
) -> float:
    """The metric value of `candidate` against `reference` on `samples` (see module doc)."""
    return compare(reference, candidate, samples, metric, output_name=output_name).measured


def evaluate_accuracy(
    reference: Path,
    candidate: Path,
    *,
    model_name: str,
    precision: Precision,
    budget: AccuracyBudget,
    output_name: str | None = None,
) -> AccuracyReport:
    """Measure `candidate` against `budget` over the holdout samples; never raises on a FAIL.

    The holdout .npz is read with the reference model's input names. Use check_accuracy to
    enforce the verdict; this function is for recording a failing report as well.
    """
    inputs = read_model_inputs(Path(reference))
    samples = load_samples(Path(budget.holdout), [i.name for i in inputs],
                           purpose=SamplePurpose.HOLDOUT)
    truth = None
    if budget.metric is AccuracyMetric.MAP50_DELTA:
        truth = load_samples(Path(budget.holdout), [GT_BOXES_KEY, GT_CLASSES_KEY],
                             purpose=SamplePurpose.HOLDOUT)
    elif budget.metric is AccuracyMetric.PSNR_DELTA:
        try:
            truth = load_samples(Path(budget.holdout), [TARGET_KEY],
                                 purpose=SamplePurpose.HOLDOUT)
        except PrecisionError as e:
            raise PrecisionError(f"psnr_delta needs the ground-truth images under key "
                                 f"{TARGET_KEY!r} of the holdout {budget.holdout}: {e}") from e
    result = compare(reference, candidate, samples, budget.metric, output_name=output_name,
                     truth=truth, truth_source=f"holdout {budget.holdout}")
    threshold = float(budget.threshold)
    return AccuracyReport(
        model_name=model_name,
        precision=precision,
        metric=budget.metric,
        threshold=threshold,
        measured=result.measured,
        samples=result.samples,
        passed=budget_met(budget.metric, result.measured, threshold),
        output_name=result.output_name,
        nonfinite_rows=result.nonfinite_rows,
        evaluation=result.evaluation,
        host_isa=host_isa(),
    )


def check_accuracy(
    reference: Path,
    candidate: Path,
    *,
    model_name: str,
    precision: Precision,
    budget: AccuracyBudget,
    output_name: str | None = None,
) -> AccuracyReport:
    """Gate `candidate` on `budget`: return the report, or raise AccuracyGateError if it fails.

    The error message is the report's describe(): measured value, budget and margin.
    """
    report = evaluate_accuracy(reference, candidate, model_name=model_name, precision=precision,
                               budget=budget, output_name=output_name)
    if not report.passed:
        log.error("%s", report.describe())
        raise AccuracyGateError(f"accuracy budget exceeded: {report.describe()}")
    log.info("%s", report.describe())
    return report
