"""TensorRT optimization profiles, derived from the spec and the ONNX model, never hand-written.

The batch axis of every profile comes from the spec's `max_batch_size` (the field that becomes
`max_batch_size` in config.pbtxt). Every other dynamic axis is named in the ONNX (`dim_param`)
and gets its range from `tensorrt.dynamic_axes.<name>` in the spec or, by default, from what the
pipeline feeds it: a Python step with a `max_length` parameter (a tokenizer) emits variable axes
of at most that length. Inputs that share a dim name share its range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tritonkit.build.onnx_inspect import OnnxModelInfo, OnnxTensor
from tritonkit.errors import EngineBuildError
from tritonkit.spec import AxisRange, BuildSpec, ModelSpec

# A Python step parameter that bounds every variable (-1) axis of the step's outputs.
MAX_LENGTH_PARAMETER = "max_length"


@dataclass(frozen=True, kw_only=True)
class ShapeRange:
    """min/opt/max of one input, full shapes including the batch axis."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def covers(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True))

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True, kw_only=True)
class ShapeProfile:
    """One TensorRT optimization profile: input name -> shape range, in ONNX input order."""

    shapes: Mapping[str, ShapeRange]

    def as_dict(self) -> dict[str, dict[str, list[int]]]:
        return {name: shape_range.as_dict() for name, shape_range in self.shapes.items()}


def fed_axis_bounds(spec: BuildSpec, model_name: str,
                    input_names: Iterable[str]) -> dict[str, int]:
    """Model input name -> the longest variable axis a pipeline's Python step feeds it.

    Only steps with a `max_length` parameter bound their outputs' variable axes; where several
    pipelines feed the same input, the longest bound wins.
    """
    input_names = tuple(input_names)
    bounds: dict[str, int] = {}
    for pipeline in spec.pipelines:
        produced: dict[str, int] = {}  # ensemble tensor -> bound
        for step in pipeline.steps:
            if step.model == model_name:
                for name in input_names:
                    tensor = step.inputs.get(name, name)
                    if tensor in produced:
                        bounds[name] = max(bounds.get(name, 0), produced[tensor])
            python_step = spec.python_step(step.model)
            if python_step is None:
                continue
            limit = python_step.serving.parameters.get(MAX_LENGTH_PARAMETER)
            if limit is None or not limit.isdigit() or int(limit) < 1:
                continue
            for output in python_step.outputs:
                if -1 in output.dims:
                    produced[step.outputs.get(output.name, output.name)] = int(limit)
    return bounds


def _fail(model: ModelSpec, info: OnnxModelInfo, message: str) -> EngineBuildError:
    return EngineBuildError(f"model {model.name!r} ({info.path.name}): {message}")


def _axis_ranges(model: ModelSpec, info: OnnxModelInfo, fed: Mapping[str, int],
                 batch_names: set[str]) -> dict[str, AxisRange]:
    """A range for every named dynamic non-batch axis; errors name the input and axis."""
    declared = model.tensorrt.dynamic_axes
    for name in declared:
        if name in batch_names:
            raise _fail(model, info, f"tensorrt.dynamic_axes.{name}: {name!r} is the batch "
                        "axis, whose range comes from max_batch_size (and "
                        "tensorrt.opt_batch_size); remove it from dynamic_axes")
    ranges: dict[str, AxisRange] = {}
    seen: set[str] = set()
    first = 1 if model.max_batch_size > 0 else 0
    for tensor in info.inputs:
        for axis, dim in enumerate(tensor.shape[first:], start=first):
            if isinstance(dim, int) and dim >= 1:
                continue
            if not isinstance(dim, str):
                raise _fail(model, info, f"input {tensor.name!r} axis {axis} is dynamic but "
                            "unnamed, so no profile range can be given for it; name it in the "
                            "export (a dim_param such as 'sequence') or fix its size")
            seen.add(dim)
            if dim in declared:
                ranges[dim] = declared[dim]
                continue
            bound = max((fed[t.name] for t in info.inputs
                         if t.name in fed and dim in t.shape[first:]), default=None)
            if bound is None:
                raise _fail(model, info, f"input {tensor.name!r} axis {axis} ({dim!r}) is dynamic "
                            "and no pipeline step bounds it; add tensorrt.dynamic_axes."
                            f"{dim}: {{min, opt, max}} to the model in the spec")
            ranges[dim] = AxisRange(min=1, opt=bound, max=bound)
    unused = sorted(set(declared) - seen)
    if unused:
        names = ", ".join(sorted(seen)) or "none"
        raise _fail(model, info, f"tensorrt.dynamic_axes names {', '.join(unused)}, which no "
                    f"input has as a dynamic axis (dynamic axes: {names})")
    return ranges


def _batch_ranges(model: ModelSpec) -> list[tuple[int, int, int]]:
    trt_options = model.tensorrt
    opt = trt_options.opt_batch_size or model.max_batch_size
    return [(1, opt, model.max_batch_size), *trt_options.extra_profile_batch_sizes]


def _check_batched(model: ModelSpec, info: OnnxModelInfo, tensor: OnnxTensor) -> None:
    if not tensor.leading_axis_dynamic:
        leading = tensor.shape[0] if tensor.shape else "none (scalar)"
        raise _fail(model, info, f"max_batch_size is {model.max_batch_size} but input "
                    f"{tensor.name!r} has no dynamic leading (batch) axis (it is {leading}). "
                    "Re-export with a dynamic batch axis, or set max_batch_size: 0")


def derive_profiles(model: ModelSpec, info: OnnxModelInfo, *,
                    fed: Mapping[str, int] | None = None) -> tuple[ShapeProfile, ...]:
    """The profiles of a plan: one per batch range (main first), every dynamic axis covered.

    The main profile is batch min 1, opt `tensorrt.opt_batch_size` (default max_batch_size),
    max `max_batch_size`; `tensorrt.extra_profiles` add one each. An unbatched model
    (max_batch_size 0) has one profile. `fed` is `fed_axis_bounds` for this model.
    """
    batched = model.max_batch_size > 0
    if not batched and model.tensorrt.extra_profile_batch_sizes:
        raise _fail(model, info, "tensorrt.extra_profiles need a batch axis, but "
                    "max_batch_size is 0; remove extra_profiles or set max_batch_size")
    batch_names: set[str] = set()
    if batched:
        for tensor in info.inputs:
            _check_batched(model, info, tensor)
            if isinstance(tensor.shape[0], str):
                batch_names.add(tensor.shape[0])
    ranges = _axis_ranges(model, info, fed or {}, batch_names)

    def shapes(batch: tuple[int, int, int] | None) -> dict[str, ShapeRange]:
        out: dict[str, ShapeRange] = {}
        for tensor in info.inputs:
            dims = tensor.shape[1:] if batch is not None else tensor.shape
            picked = [[d, d, d] if isinstance(d, int) else
                      [ranges[d].min, ranges[d].opt, ranges[d].max] for d in dims]
            lo, mid, hi = ([p[i] for p in picked] for i in range(3))
            if batch is not None:
                lo, mid, hi = [batch[0], *lo], [batch[1], *mid], [batch[2], *hi]
            out[tensor.name] = ShapeRange(min=tuple(lo), opt=tuple(mid), max=tuple(hi))
        return out

    if not batched:
        return (ShapeProfile(shapes=shapes(None)),)
    return tuple(ShapeProfile(shapes=shapes(b)) for b in _batch_ranges(model))


def check_within(profile: ShapeProfile, name: str, shape: tuple[int, ...], *,
                 model: str, what: str) -> None:
    """Raise EngineBuildError unless `shape` of input `name` lies inside the profile."""
    shape_range = profile.shapes.get(name)
    if shape_range is None or not shape_range.covers(shape):
        bounds = (f"min {list(shape_range.min)}, max {list(shape_range.max)}"
                  if shape_range is not None else "no range")
        raise EngineBuildError(
            f"model {model!r}: {what} shape {list(shape)} of input {name!r} lies outside the "
            f"TensorRT profile ({bounds}); TensorRT would reject it at run time. Adjust the "
            "samples or the spec's max_batch_size / tensorrt.dynamic_axes")
