"""Check an exported ONNX model against its PyTorch model with ONNX Runtime (CPU).

On the example inputs, then at each dimension name's probe size (one name at a time, every
axis sharing it resized together): outputs of equal shapes, within the spec's tolerance. For
the batch axis also that rows are independent: at the probe batch (the example rows repeated),
row i equals row i % example batch of the example's outputs. Any failure is an ExportError
naming the input, axis index, axis name and probe size, and what differed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonkit.errors import ExportError
from tritonkit.export.example_data import example_arrays, tiled_rows
from tritonkit.export.pytorch_export import describe_axes
from tritonkit.spec import PyTorchSource

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ExportChecks:
    checks: tuple[str, ...]  # one line per comparison
    max_abs_diff: float


def dimension_probes(source: PyTorchSource) -> dict[str, tuple[int, int]]:
    """Dimension name -> (example size, probe size), in order of declaration."""
    probes: dict[str, tuple[int, int]] = {}
    for tensor in source.inputs:
        for axis, dim in tensor.dynamic_axes.items():
            probes.setdefault(dim.name, (tensor.shape[axis], dim.probe))
    return probes


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| (NaN where both are NaN counts as equal); 0.0 for empty arrays."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(x) & np.isnan(y)
    diff = np.where(both_nan, 0.0, np.abs(x - y))
    if diff.size == 0:
        return 0.0
    return float("inf") if np.isnan(diff).any() else float(diff.max())


class _Checker:
    """Runs PyTorch and ONNX Runtime on the same feeds and records each comparison."""

    def __init__(self, model: torch.nn.Module, onnx_path: Path, source: PyTorchSource,
                 where: str) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options,
                                            providers=["CPUExecutionProvider"])
        self.model = model
        self.source = source
        self.where = where
        self.checks: list[str] = []
        self.worst = 0.0

    def run(self, feeds: Mapping[str, np.ndarray],
            what: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(PyTorch's outputs, ONNX Runtime's outputs) for `feeds`."""
        try:
            expected = self._torch(feeds)
        except ExportError:
            raise
        except Exception as e:  # the user's model
            raise ExportError(f"{self.where}: PyTorch itself fails {what}: "
                              f"{type(e).__name__}: {e}; the model does not take that size, so "
                              "the axis is not dynamic (or give a probe it takes)") from e
        try:
            got = [np.asarray(o) for o in self.session.run(list(self.source.outputs),
                                                           dict(feeds))]
        except Exception as e:  # ONNX Runtime raises its own pybind exception types
            raise ExportError(f"{self.where}: the exported ONNX fails in ONNX Runtime {what}, "
                              f"where PyTorch runs: {e}. The export fixed a size there (a "
                              "Reshape or view with a constant shape, say)") from e
        return expected, got

    def _torch(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import torch  # noqa: PLC0415

        with torch.no_grad():
            result = self.model(*[torch.from_numpy(feeds[t.name]) for t in self.source.inputs])
        outputs = [t.detach().cpu().numpy() for t in _flatten(result)]
        if len(outputs) != len(self.source.outputs):
            raise ExportError(f"{self.where}: the model returns {len(outputs)} tensor(s), the "
                              f"spec lists {len(self.source.outputs)} output(s)")
        return outputs

    def same(self, expected: Sequence[np.ndarray], got: Sequence[np.ndarray], what: str,
             label: str) -> None:
        """ONNX Runtime's outputs have PyTorch's shapes and values, within the tolerance."""
        worst = 0.0
        for name, e, g in zip(self.source.outputs, expected, got, strict=True):
            if e.shape != g.shape:
                raise ExportError(f"{self.where}: output {name!r} has shape {list(g.shape)} in "
                                  f"ONNX Runtime but {list(e.shape)} in PyTorch {what}")
            diff = max_abs_diff(e, g)
            if not diff <= self.source.tolerance:
                raise ExportError(f"{self.where}: output {name!r} differs from PyTorch by "
                                  f"{diff:.3g} (tolerance {self.source.tolerance:g}) {what}")
            worst = max(worst, diff)
        self._record(f"{label}: outputs match PyTorch (max abs diff {worst:.3g})", worst)

    def rows_independent(self, example_out: Sequence[np.ndarray],
                         probe_out: Sequence[np.ndarray], size: int, probe: int,
                         what: str) -> None:
        """Row i at the probe batch equals row i % size of the example batch."""
        worst = 0.0
        for name, base, out in zip(self.source.outputs, example_out, probe_out, strict=True):
            if out.ndim == 0 or out.shape[0] != probe:
                raise ExportError(f"{self.where}: output {name!r} has shape {list(out.shape)} "
                                  f"{what}: its axis 0 must be the batch ({probe} rows)")
            diff = max_abs_diff(np.take(base, np.arange(probe) % size, axis=0), out)
            if not diff <= self.source.tolerance:
                raise ExportError(
                    f"{self.where}: output {name!r} rows depend on the batch {what}: the same "
                    f"input rows give outputs {diff:.3g} apart (tolerance "
                    f"{self.source.tolerance:g}); rows must be computed independently")
            worst = max(worst, diff)
        self._record(f"batch {probe}: rows independent of the batch (max abs diff "
                     f"{worst:.3g})", worst)

    def _record(self, line: str, diff: float) -> None:
        self.checks.append(line)
        self.worst = max(self.worst, diff)


def _flatten(result: Any) -> list[torch.Tensor]:
    import torch  # noqa: PLC0415

    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, Mapping):
        return [t for v in result.values() for t in _flatten(v)]
    if isinstance(result, (list, tuple)):
        return [t for v in result for t in _flatten(v)]
    raise ExportError(f"the model returns a {type(result).__name__}, not tensors")


def check_export(model: torch.nn.Module, onnx_path: Path, source: PyTorchSource, *,
                 model_name: str, max_batch_size: int) -> ExportChecks:
    """Compare ONNX Runtime with PyTorch on the example and every probe; see the module."""
    checker = _Checker(model, onnx_path, source, f"model {model_name!r} (pytorch:"
                       f"{source.factory})")
    example = example_arrays(source.inputs)
    expected, got = checker.run(example, "on the example inputs")
    checker.same(expected, got, "on the example inputs", "example")
    batch_axis = source.inputs[0].dynamic_axes.get(0)
    batch = batch_axis.name if batch_axis is not None and max_batch_size > 0 else None
    for index, (name, (size, probe)) in enumerate(dimension_probes(source).items(), start=1):
        what = f"at {describe_axes(source, name)} = {probe} (example {size})"
        feeds = (tiled_rows(example, probe) if name == batch
                 else example_arrays(source.inputs, {name: probe}, seed=index))
        torch_out, onnx_out = checker.run(feeds, what)
        checker.same(torch_out, onnx_out, what, f"{name}={probe}")
        if name == batch:
            checker.rows_independent(got, onnx_out, size, probe, what)
    log.debug("%s: export checks passed: %s", checker.where, "; ".join(checker.checks))
    return ExportChecks(checks=tuple(checker.checks), max_abs_diff=checker.worst)
