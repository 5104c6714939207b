"""Triton configurations compared by the benchmarks, derived from the one spec.

Each variant changes only serving options of a pipeline's models (dynamic batching on or off,
instance count of the core model), so every other byte of the repository is what the builder
ships. Variants are built with the normal builder into their own directories.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from build_scripts.builder import build_repository
from build_scripts.spec import BuildSpec, ModelSpec, PythonStepSpec, Target


@dataclass(frozen=True, kw_only=True)
class TritonVariant:
    name: str  # e.g. "triton-db-1x"
    dynamic_batching: bool
    core_instances: int

    @property
    def label(self) -> str:
        batching = "dynamic batching" if self.dynamic_batching else "no batching"
        plural = "s" if self.core_instances > 1 else ""
        return f"Triton ({batching}, {self.core_instances} instance{plural})"


DEFAULT = TritonVariant(name="triton", dynamic_batching=True, core_instances=1)
NO_BATCHING = TritonVariant(name="triton-nobatch", dynamic_batching=False, core_instances=1)
TWO_INSTANCES = TritonVariant(name="triton-2x", dynamic_batching=True, core_instances=2)


def _serve_only(spec: BuildSpec, pipelines: tuple[str, ...]) -> BuildSpec:
    """The spec reduced to `pipelines` and the models they use (faster server start)."""
    kept = tuple(p for p in spec.pipelines if p.name in pipelines)
    used = {step.model for p in kept for step in p.steps}
    return dataclasses.replace(
        spec, pipelines=kept,
        models=tuple(m for m in spec.models if m.name in used),
        python_steps=tuple(s for s in spec.python_steps if s.name in used))


def _adjust(item: ModelSpec | PythonStepSpec, variant: TritonVariant,
            core_models: set[str]) -> ModelSpec | PythonStepSpec:
    serving = item.serving
    if not variant.dynamic_batching:
        serving = dataclasses.replace(serving, dynamic_batching=None)
    if item.name in core_models:
        serving = dataclasses.replace(serving, instance_group=dataclasses.replace(
            serving.instance_group, count=variant.core_instances))
    return dataclasses.replace(item, serving=serving)


def variant_spec(spec: BuildSpec, variant: TritonVariant,
                 pipelines: tuple[str, ...]) -> BuildSpec:
    """`spec` restricted to `pipelines`, with the variant's serving options applied."""
    reduced = _serve_only(spec, pipelines)
    core = {m.name for m in reduced.models}
    digest = hashlib.sha256(f"{spec.sha256}:{variant}:{pipelines}".encode()).hexdigest()
    return dataclasses.replace(
        reduced, sha256=digest,
        models=tuple(_adjust(m, variant, core) for m in reduced.models),  # type: ignore[misc]
        python_steps=tuple(_adjust(s, variant, core)  # type: ignore[misc]
                           for s in reduced.python_steps))


def build_variant(spec: BuildSpec, variant: TritonVariant, pipelines: tuple[str, ...],
                  out: Path) -> Path:
    build_repository(variant_spec(spec, variant, pipelines), target=Target.LOCAL, out=out,
                     remember=False)
    return out
