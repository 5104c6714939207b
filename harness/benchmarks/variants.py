"""Triton configurations compared by the benchmarks, derived from the one spec.

`DEFAULT` is the spec exactly as the builder ships it. The other variants change only serving
options of a pipeline's models (dynamic batching off; one instance of the core model), so every
other byte of the repository is what the builder ships. Where a variant sets the instance count
of the core model it also sets ONNX Runtime's intra-op threads so that instances x threads =
cores: one instance uses the whole machine, as two instances do together. Variants are built
with the normal builder into their own directories.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from tritonkit.build import build_repository
from tritonkit.spec import BuildSpec, ModelSpec, PythonStepSpec, Target


@dataclass(frozen=True, kw_only=True)
class TritonVariant:
    name: str  # e.g. "triton-1x"
    dynamic_batching: bool
    core_instances: int | None  # None: the spec's instance count

    @property
    def label(self) -> str:
        batching = "dynamic batching" if self.dynamic_batching else "no batching"
        if self.core_instances is None:
            return f"Triton ({batching}, instances as in the spec)"
        plural = "s" if self.core_instances > 1 else ""
        return f"Triton ({batching}, {self.core_instances} instance{plural} of the model)"


DEFAULT = TritonVariant(name="triton", dynamic_batching=True, core_instances=None)
NO_BATCHING = TritonVariant(name="triton-nobatch", dynamic_batching=False, core_instances=None)
ONE_INSTANCE = TritonVariant(name="triton-1x", dynamic_batching=True, core_instances=1)


def _serve_only(spec: BuildSpec, pipelines: tuple[str, ...]) -> BuildSpec:
    """The spec reduced to `pipelines` and the models they use (faster server start)."""
    kept = tuple(p for p in spec.pipelines if p.name in pipelines)
    used = {step.model for p in kept for step in p.steps}
    return dataclasses.replace(
        spec, pipelines=kept,
        models=tuple(m for m in spec.models if m.name in used),
        python_steps=tuple(s for s in spec.python_steps if s.name in used))


def _adjust(item: ModelSpec | PythonStepSpec, variant: TritonVariant, core_models: set[str],
            cores: int) -> ModelSpec | PythonStepSpec:
    serving = item.serving
    if not variant.dynamic_batching:
        serving = dataclasses.replace(serving, dynamic_batching=None)
    if variant.core_instances is None or item.name not in core_models:
        return dataclasses.replace(item, serving=serving)
    serving = dataclasses.replace(serving, instance_group=dataclasses.replace(
        serving.instance_group, count=variant.core_instances))
    assert isinstance(item, ModelSpec)  # core models are ONNX models
    threads = max(1, cores // variant.core_instances)
    return dataclasses.replace(item, serving=serving, onnxruntime=dataclasses.replace(
        item.onnxruntime, intra_op_threads=threads))


def variant_spec(spec: BuildSpec, variant: TritonVariant, pipelines: tuple[str, ...], *,
                 cores: int | None = None) -> BuildSpec:
    """`spec` restricted to `pipelines`, with the variant's serving options applied.

    `cores` (default: the CPUs this process may use) sizes the intra-op threads of a variant
    that sets the core model's instance count."""
    reduced = _serve_only(spec, pipelines)
    core = {m.name for m in reduced.models}
    n = cores if cores is not None else len(os.sched_getaffinity(0))
    digest = hashlib.sha256(f"{spec.sha256}:{variant}:{pipelines}:{n}".encode()).hexdigest()
    return dataclasses.replace(
        reduced, sha256=digest,
        models=tuple(_adjust(m, variant, core, n) for m in reduced.models),  # type: ignore[misc]
        python_steps=tuple(_adjust(s, variant, core, n)  # type: ignore[misc]
                           for s in reduced.python_steps))


def build_variant(spec: BuildSpec, variant: TritonVariant, pipelines: tuple[str, ...],
                  out: Path, *, extra_steps: tuple[PythonStepSpec, ...] = ()) -> Path:
    """Build the variant into `out`; `extra_steps` are served beside the pipelines as they are."""
    built = variant_spec(spec, variant, pipelines)
    built = dataclasses.replace(built, python_steps=built.python_steps + extra_steps)
    build_repository(built, target=Target.LOCAL, out=out, remember=False)
    return out
