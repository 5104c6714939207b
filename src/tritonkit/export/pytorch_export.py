"""Export a PyTorch model to ONNX with the spec's named dynamic axes, and prove every declared
axis symbolic in the exported graph.

The default exporter (`dynamo`) is two explicit steps: `torch.export.export` with one
`torch.export.Dim` per axis name, then `torch.onnx.export(exported_program, dynamo=True)`.
torch.export refuses an axis the model's code fixes ("Constraints violated"), which becomes an
ExportError naming the input and axis; a direct `torch.onnx.export(model, dynamo=True,
dynamic_shapes=...)` falls back silently and bakes such an axis as a constant instead.
`torchscript` is the fallback for models torch.export cannot trace; a baked axis shows there
only in the ONNX Runtime probes (`tritonkit.export.export_checks`).

torch is imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonkit.errors import ExportError
from tritonkit.export.example_data import example_arrays
from tritonkit.spec import ExporterKind, PyTorchSource

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

EXPORTER_REASONS = {
    ExporterKind.DYNAMO: (
        "torch.export.export with a torch.export.Dim per declared axis, then "
        "torch.onnx.export(exported_program, dynamo=True): torch.export refuses an axis the "
        "model's code specializes (Constraints violated), where a one-step "
        "torch.onnx.export(model, dynamo=True, dynamic_shapes=...) silently falls back and "
        "bakes it as a constant; output axes come out symbolic (e.g. 2*height); the "
        "TorchScript exporter is deprecated since torch 2.9"),
    ExporterKind.TORCHSCRIPT: (
        "torch.onnx.export(dynamo=False, dynamic_axes=...), chosen in the spec for a model "
        "torch.export cannot trace; deprecated since torch 2.9; it names axes without proving "
        "them, so a baked axis is caught only by the ONNX Runtime probes"),
}
# Loggers of the exporters, quieted while exporting (torchvision-not-installed warnings,
# registry and shape-guard chatter); restored afterwards.
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo",
                  "torch.fx.experimental.symbolic_shapes", "onnxscript", "onnx_ir")
_CONSTRAINTS = re.compile(r"Constraints violated \(([^)]*)\)")
_MORE_LOGGING = re.compile(r"\s*For more information, run with TORCH_LOGS=\S*")
_TORCH_TRAILERS = ("The error above occurred", "For more information", "For more details")


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Exporter warnings and log records below ERROR go to this module's debug log."""
    levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            log.debug("exporter warning: %s: %s", warning.category.__name__, warning.message)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def axes_named(source: PyTorchSource, name: str) -> list[tuple[str, int]]:
    """(input, axis) of every axis declared with `name`."""
    return [(t.name, axis) for t in source.inputs for axis, dim in t.dynamic_axes.items()
            if dim.name == name]


def describe_axes(source: PyTorchSource, name: str) -> str:
    return ", ".join(f"input {t!r} axis {axis} ({name})" for t, axis in axes_named(source, name))


def export_onnx(model: torch.nn.Module, source: PyTorchSource, path: Path, *,
                model_name: str, max_batch_size: int) -> None:
    """Export `model` (eval mode) to `path` from the example inputs, with the declared axes
    dynamic; raises ExportError naming the input and axis when one is not."""
    import torch  # noqa: PLC0415

    where = f"model {model_name!r} (pytorch:{source.factory})"
    example = example_arrays(source.inputs)
    args = tuple(torch.from_numpy(example[t.name]) for t in source.inputs)
    with quiet_exporter(), torch.no_grad():
        if source.exporter is ExporterKind.DYNAMO:
            _export_dynamo(model, args, source, path, where)
        else:
            _export_torchscript(model, args, source, path, where,
                                max_batch_size=max_batch_size)
    check_dynamic_dims(path, source, where)
    log.debug("%s: exported %s (%s exporter, opset %d)", where, path.name,
              source.exporter.value, source.opset)


def _dynamic_shapes(source: PyTorchSource) -> tuple[dict[int, Any] | None, ...]:
    """One dict per input (axis -> Dim); axes sharing a name share one Dim object."""
    from torch.export import Dim  # noqa: PLC0415

    dims: dict[str, Any] = {}
    return tuple({axis: dims.setdefault(d.name, Dim(d.name))
                  for axis, d in t.dynamic_axes.items()} or None for t in source.inputs)


def _export_dynamo(model: torch.nn.Module, args: tuple[torch.Tensor, ...],
                   source: PyTorchSource, path: Path, where: str) -> None:
    import torch  # noqa: PLC0415

    shapes = _dynamic_shapes(source)
    try:
        program = torch.export.export(model, args, dynamic_shapes=shapes)
    except Exception as e:  # torch.export raises UserError and many tracing errors
        raise _trace_error(e, source, where) from e
    try:
        onnx_program = torch.onnx.export(
            program, args, dynamo=True, dynamic_shapes=shapes, verbose=False,
            input_names=[t.name for t in source.inputs], output_names=list(source.outputs),
            opset_version=source.opset)
        if onnx_program is None:
            raise ExportError(f"{where}: torch.onnx.export returned no ONNX program")
        onnx_program.save(path)
    except ExportError:
        raise
    except Exception as e:  # the ONNX exporter: an op without an ONNX translation, say
        raise ExportError(f"{where}: the ONNX exporter failed after torch.export succeeded: "
                          f"{type(e).__name__}: {_torch_text(e)}") from e


def _export_torchscript(model: torch.nn.Module, args: tuple[torch.Tensor, ...],
                        source: PyTorchSource, path: Path, where: str, *,
                        max_batch_size: int) -> None:
    import torch  # noqa: PLC0415

    axes: dict[str, dict[int, str]] = {
        t.name: {axis: d.name for axis, d in t.dynamic_axes.items()}
        for t in source.inputs if t.dynamic_axes}
    batch = source.inputs[0].dynamic_axes.get(0)
    if max_batch_size > 0 and batch is not None:
        axes.update({output: {0: batch.name} for output in source.outputs})
    try:
        torch.onnx.export(
            model, args, str(path), dynamo=False, verbose=False,
            input_names=[t.name for t in source.inputs], output_names=list(source.outputs),
            dynamic_axes=axes, opset_version=source.opset, do_constant_folding=True)
    except Exception as e:  # the TorchScript tracer and exporter raise many types
        raise ExportError(f"{where}: the TorchScript exporter failed: {type(e).__name__}: "
                          f"{_torch_text(e)}") from e


def _trace_error(error: Exception, source: PyTorchSource, where: str) -> ExportError:
    """torch.export's refusal, named by input and axis where it is a fixed dynamic axis."""
    text = _torch_text(error)
    declared = list(dict.fromkeys(d.name for t in source.inputs
                                  for d in t.dynamic_axes.values()))
    match = _CONSTRAINTS.search(text)
    named = ([n.strip() for n in match.group(1).split(",") if n.strip() in declared] if match
             else [n for n in declared if re.search(rf"\b{re.escape(n)}\b", text)])
    if match and named:
        axes = "; ".join(describe_axes(source, n) for n in named)
        return ExportError(
            f"{where}: declared dynamic, but the model's code fixes it to the example size: "
            f"{axes}. Make the code follow the input's size (e.g. x.reshape(x.shape[0], -1), "
            f"not a fixed shape), or drop the axis from dynamic_axes. torch.export: {text}")
    return ExportError(
        f"{where}: torch.export cannot trace the model ({type(error).__name__}): {text}. "
        "If the model cannot be made traceable, set exporter: torchscript")


def _torch_text(error: Exception) -> str:
    """torch's message without its pointers to more logging."""
    lines = []
    for line in str(error).strip().splitlines():
        if line.startswith(_TORCH_TRAILERS):
            break
        lines.append(_MORE_LOGGING.sub("", line).rstrip())
    return "\n".join(lines).strip()


def check_dynamic_dims(path: Path, source: PyTorchSource, where: str) -> None:
    """Every declared axis is the named symbolic dim (dim_param) of its ONNX graph input, and
    the graph's outputs are the declared ones."""
    import onnx  # noqa: PLC0415

    graph = onnx.load(str(path), load_external_data=False).graph
    graph_inputs = {i.name: i for i in graph.input}
    for tensor in source.inputs:
        value = graph_inputs.get(tensor.name)
        if value is None:
            raise ExportError(f"{where}: input {tensor.name!r} is not an input of the exported "
                              "graph (the model does not use it?)")
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(tensor.shape):
            raise ExportError(f"{where}: input {tensor.name!r} has rank {len(dims)} in the "
                              f"exported graph, not {len(tensor.shape)}")
        for axis, declared in tensor.dynamic_axes.items():
            dim = dims[axis]
            if dim.dim_param != declared.name:
                found = (f"the fixed size {dim.dim_value}" if dim.HasField("dim_value")
                         else f"the dim {dim.dim_param!r}")
                raise ExportError(f"{where}: input {tensor.name!r} axis {axis} "
                                  f"({declared.name}) is declared dynamic, but the exported "
                                  f"graph has {found} there")
    outputs = [o.name for o in graph.output]
    if outputs != list(source.outputs):
        raise ExportError(f"{where}: the exported graph's outputs are {outputs}, the spec "
                          f"lists {list(source.outputs)}: list one name per output the "
                          "model returns, in order")
