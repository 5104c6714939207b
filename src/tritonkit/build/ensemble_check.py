"""Static validation of an ensemble's wiring against the configs of its step models.

Triton checks an ensemble only when it loads it, and then stops at the first mistake. This
module finds all of them beforehand and names the ensemble and the failing step (numbered from
1, as listed in `ensemble_scheduling`) in every problem.

The rules follow Triton's own loader (core `ensemble_utils.cc`) and the ensemble docs:
- every input of a step model is mapped (unless `optional`) and every `input_map` key is one of
  its inputs; every `output_map` key is one of its outputs;
- every ensemble tensor (ensemble inputs, `output_map` values) is produced exactly once, and is
  consumed by a step or returned as an ensemble output; every ensemble output is produced;
- the steps can be ordered by data flow (no cycles);
- dtypes and shapes agree on every edge. Shapes exclude the batch axis (`max_batch_size > 0`);
  -1 matches anything; the ensemble's own inputs and outputs use `reshape` when they have one,
  while step tensors use `dims` (what Triton routes between steps). When one side batches and
  the other does not, the full shapes (batch axis as -1 in front) are compared;
- the ensemble's `max_batch_size` does not exceed any step's; a step with `max_batch_size` 0
  in a batching ensemble receives the whole batch as its first axis, so its tensors must start
  with -1.
Model versions (`model_version`) are not checked here: that needs the repository.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from tritonclient.grpc import model_config_pb2

from tritonkit.errors import EnsembleError

log = logging.getLogger(__name__)

ENSEMBLE_PLATFORM = "ensemble"

Shape = tuple[int, ...]
_Tensor: TypeAlias = "model_config_pb2.ModelInput | model_config_pb2.ModelOutput"


@dataclass(frozen=True, kw_only=True)
class EnsembleProblem:
    """One wiring mistake. `step` is the step's model name, `step_number` its 1-based position."""

    ensemble: str
    step: str | None
    message: str
    step_number: int | None = None

    def __str__(self) -> str:
        where = f"ensemble '{self.ensemble}'"
        if self.step is not None:
            number = f" {self.step_number}" if self.step_number is not None else ""
            where += f", step{number} '{self.step}'"
        return f"{where}: {self.message}"


class _Role(Enum):
    ENSEMBLE_INPUT = "ensemble input"
    ENSEMBLE_OUTPUT = "ensemble output"
    STEP_INPUT = "input"
    STEP_OUTPUT = "output"


@dataclass(frozen=True, kw_only=True)
class _End:
    """Where an ensemble tensor comes from (producer) or goes to (consumer)."""

    role: _Role
    tensor: str  # the ensemble tensor name
    name: str  # the tensor's name on the model side (map key, or the ensemble's own I/O name)
    model: str
    step_number: int | None  # None for the ensemble's own inputs and outputs
    dtype: int | None  # None when unknown (the step model is missing)
    dims: Shape | None
    batching: bool

    def describe(self) -> str:
        if self.step_number is None:
            return f"{self.role.value} '{self.name}'"
        return f"step {self.step_number} '{self.model}' {self.role.value} '{self.name}'"

    def full_dims(self) -> Shape | None:
        if self.dims is None:
            return None
        return (-1, *self.dims) if self.batching else self.dims


def _dtype_name(dtype: int) -> str:
    return model_config_pb2.DataType.Name(dtype)


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _io_dims(tensor: model_config_pb2.ModelInput | model_config_pb2.ModelOutput) -> Shape:
    """The shape Triton uses for an ensemble's own input/output: `reshape` when present."""
    if tensor.HasField("reshape"):
        return tuple(tensor.reshape.shape)
    return tuple(tensor.dims)


def _dims_agree(a: Shape, b: Shape) -> bool:
    if len(a) != len(b):
        return False
    return all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def _step_label(number: int, model: str) -> str:
    return f"step {number} '{model}'"


def _data_flow(ensemble: model_config_pb2.ModelConfig) -> tuple[list[int], list[int]]:
    """(ordered, stuck): step indices in data-flow order, and those a cycle keeps from running."""
    steps = ensemble.ensemble_scheduling.step
    producers: dict[str, set[int]] = {}
    for i, step in enumerate(steps):
        for tensor in step.output_map.values():
            producers.setdefault(tensor, set()).add(i)
    waits_on: list[set[int]] = [
        {p for tensor in step.input_map.values() for p in producers.get(tensor, ())}
        for step in steps
    ]
    dependents: list[set[int]] = [set() for _ in steps]
    for j, deps in enumerate(waits_on):
        for i in deps:
            dependents[i].add(j)
    remaining = [len(deps) for deps in waits_on]
    ready = [j for j, count in enumerate(remaining) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in sorted(dependents[i]):
            remaining[j] -= 1
            if remaining[j] == 0:
                heapq.heappush(ready, j)
    done = set(order)
    return order, [j for j in range(len(steps)) if j not in done]


def _cycle_message(ensemble: model_config_pb2.ModelConfig, stuck: Sequence[int]) -> str:
    steps = ensemble.ensemble_scheduling.step
    names = ", ".join(_step_label(j + 1, steps[j].model_name) for j in stuck)
    return (
        f"steps cannot be ordered by data flow: {names} wait on each other's outputs in a "
        "cycle (or on steps in one)"
    )


def ensemble_order(ensemble: model_config_pb2.ModelConfig) -> list[int]:
    """Step indices (0-based) in data-flow order; among ready steps, the listed order wins.

    A step depends on every step whose `output_map` produces a tensor in its `input_map`.
    Raises `EnsembleError` when steps depend on each other in a cycle.
    """
    order, stuck = _data_flow(ensemble)
    if stuck:
        raise EnsembleError(f"ensemble '{ensemble.name}': {_cycle_message(ensemble, stuck)}")
    return order


class _Checker:
    """Collects the problems of one ensemble; `run()` returns them."""

    def __init__(
        self,
        ensemble: model_config_pb2.ModelConfig,
        models: Mapping[str, model_config_pb2.ModelConfig],
    ) -> None:
        self.ensemble = ensemble
        self.models = models
        self.name = ensemble.name or "<unnamed>"
        self.batching = ensemble.max_batch_size > 0
        self.problems: list[EnsembleProblem] = []
        self.producers: dict[str, list[_End]] = {}
        self.consumers: dict[str, list[_End]] = {}
        # Unbatched steps in a batching ensemble whose tensors lack the leading -1 (reported
        # once per step; their edges are not reported again as shape mismatches).
        self.unbatched_steps: set[int] = set()

    def add(self, message: str, *, step: str | None = None, number: int | None = None) -> None:
        self.problems.append(
            EnsembleProblem(ensemble=self.name, step=step, message=message, step_number=number)
        )

    def run(self) -> list[EnsembleProblem]:
        ens = self.ensemble
        if ens.platform != ENSEMBLE_PLATFORM:
            self.add(f"platform is '{ens.platform}', not '{ENSEMBLE_PLATFORM}'")
        if not ens.HasField("ensemble_scheduling"):
            self.add("has no ensemble_scheduling, so it has no steps")
            return self.problems
        steps = ens.ensemble_scheduling.step
        if not steps:
            self.add("ensemble_scheduling lists no steps")
            return self.problems
        self._ensemble_io()
        for i, step in enumerate(steps):
            self._step(i + 1, step)
        self._tensors()
        _, stuck = _data_flow(ens)
        if stuck:
            self.add(_cycle_message(ens, stuck))
        return self.problems

    def _ensemble_io(self) -> None:
        ens = self.ensemble
        for role, tensors, table in (
            (_Role.ENSEMBLE_INPUT, ens.input, self.producers),
            (_Role.ENSEMBLE_OUTPUT, ens.output, self.consumers),
        ):
            seen: set[str] = set()
            for t in tensors:
                if t.name in seen:
                    self.add(f"{role.value} '{t.name}' is declared more than once")
                    continue
                seen.add(t.name)
                end = _End(
                    role=role,
                    tensor=t.name,
                    name=t.name,
                    model=self.name,
                    step_number=None,
                    dtype=t.data_type,
                    dims=_io_dims(t),
                    batching=self.batching,
                )
                table.setdefault(t.name, []).append(end)

    def _step(self, number: int, step: model_config_pb2.ModelEnsembling.Step) -> None:
        model_name = step.model_name
        if not model_name:
            self.add(f"step {number} has no model_name")
            return
        config = self.models.get(model_name)
        if config is None:
            self.add(
                f"model '{model_name}' is not in the repository", step=model_name, number=number
            )
        batching = config is not None and config.max_batch_size > 0
        inputs: dict[str, model_config_pb2.ModelInput] = {}
        outputs: dict[str, model_config_pb2.ModelOutput] = {}
        if config is not None:
            inputs.update((t.name, t) for t in config.input)
            outputs.update((t.name, t) for t in config.output)

        def end(role: _Role, key: str, tensor: str, spec: _Tensor | None) -> _End:
            return _End(
                role=role,
                tensor=tensor,
                name=key,
                model=model_name,
                step_number=number,
                dtype=spec.data_type if spec is not None else None,
                dims=tuple(spec.dims) if spec is not None else None,
                batching=batching,
            )

        for key, tensor in sorted(step.input_map.items()):
            spec = inputs.get(key)
            if config is not None and spec is None:
                self.add(
                    f"input_map key '{key}' (ensemble tensor '{tensor}') is not an input of "
                    f"model '{model_name}'; its inputs: {_names(inputs)}",
                    step=model_name,
                    number=number,
                )
            self.consumers.setdefault(tensor, []).append(end(_Role.STEP_INPUT, key, tensor, spec))
        for name, spec in inputs.items():
            if name not in step.input_map and not spec.optional:
                self.add(
                    f"input '{name}' of model '{model_name}' is not mapped to any ensemble "
                    "tensor (add it to input_map)",
                    step=model_name,
                    number=number,
                )
        for key, tensor in sorted(step.output_map.items()):
            spec = outputs.get(key)
            if config is not None and spec is None:
                self.add(
                    f"output_map key '{key}' (ensemble tensor '{tensor}') is not an output of "
                    f"model '{model_name}'; its outputs: {_names(outputs)}",
                    step=model_name,
                    number=number,
                )
            self.producers.setdefault(tensor, []).append(end(_Role.STEP_OUTPUT, key, tensor, spec))

        if config is not None:
            self._batch_sizes(number, model_name, config, step)

    def _batch_sizes(
        self,
        number: int,
        model_name: str,
        config: model_config_pb2.ModelConfig,
        step: model_config_pb2.ModelEnsembling.Step,
    ) -> None:
        ens_max = self.ensemble.max_batch_size
        step_max = config.max_batch_size
        if step_max > 0 and ens_max > step_max:
            self.add(
                f"the ensemble's max_batch_size {ens_max} exceeds this model's max_batch_size "
                f"{step_max}; Triton refuses to load the ensemble (lower the ensemble's "
                "max_batch_size or raise the model's)",
                step=model_name,
                number=number,
            )
        elif step_max == 0 and ens_max > 0:
            mapped = [t for t in config.input if t.name in step.input_map] + [
                t for t in config.output if t.name in step.output_map
            ]
            lacking = [t.name for t in mapped if not t.dims or t.dims[0] != -1]
            if lacking:
                self.unbatched_steps.add(number)
                self.add(
                    f"model '{model_name}' has max_batch_size 0 but the ensemble batches "
                    f"(max_batch_size {ens_max}): the step receives the batch as its first axis, "
                    f"so the dims of {_quoted(lacking)} must start with -1 (or give the model "
                    f"max_batch_size >= {ens_max})",
                    step=model_name,
                    number=number,
                )

    def _tensors(self) -> None:
        for tensor in sorted(set(self.producers) | set(self.consumers)):
            made = self.producers.get(tensor, [])
            used = self.consumers.get(tensor, [])
            for extra in made[1:]:
                self._at(
                    extra,
                    f"{extra.role.value} '{extra.name}' produces ensemble tensor '{tensor}', "
                    f"which {made[0].describe()} already produces; every tensor needs exactly "
                    "one producer",
                )
            if not made:
                for consumer in used:
                    if consumer.role is _Role.ENSEMBLE_OUTPUT:
                        self._at(
                            consumer, f"ensemble output '{tensor}' is not produced by any step"
                        )
                    else:
                        self._at(
                            consumer,
                            f"input '{consumer.name}' reads ensemble tensor '{tensor}', which is "
                            "neither an ensemble input nor produced by any step",
                        )
                continue
            if not used:
                producer = made[0]
                if producer.role is _Role.ENSEMBLE_INPUT:
                    self._at(producer, f"ensemble input '{tensor}' is not used by any step")
                else:
                    self._at(
                        producer,
                        f"output '{producer.name}' produces ensemble tensor '{tensor}', which no "
                        "later step uses and which is not an ensemble output",
                    )
                continue
            for consumer in used:
                self._edge(made[0], consumer)

    def _at(self, end: _End, message: str) -> None:
        if end.step_number is None:
            self.add(message)
        else:
            self.add(message, step=end.model, number=end.step_number)

    def _edge(self, producer: _End, consumer: _End) -> None:
        what = (
            f"input '{consumer.name}'"
            if consumer.role is _Role.STEP_INPUT
            else f"ensemble output '{consumer.name}'"
        )
        origin = f"from '{producer.tensor}' ({producer.describe()})"
        if producer.dtype is not None and consumer.dtype is not None:
            if producer.dtype != consumer.dtype:
                self._at(
                    consumer,
                    f"{what} dtype {_dtype_name(consumer.dtype)} != "
                    f"{_dtype_name(producer.dtype)} {origin}",
                )
        if producer.dims is None or consumer.dims is None:
            return
        mine: Shape | None
        theirs: Shape | None
        if producer.batching == consumer.batching:
            mine, theirs = consumer.dims, producer.dims
            note = ""
        else:
            if {producer.step_number, consumer.step_number} & self.unbatched_steps:
                return  # already reported once for the whole step
            mine, theirs = consumer.full_dims(), producer.full_dims()
            note = " (full shapes: one side batches, the other does not)"
        if mine is not None and theirs is not None and not _dims_agree(mine, theirs):
            self._at(
                consumer,
                f"{what} shape {_shape_text(mine)} != {_shape_text(theirs)} {origin}{note}",
            )


def _names(tensors: Mapping[str, object]) -> str:
    return ", ".join(f"'{n}'" for n in tensors) or "(none)"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def validate_ensemble(
    ensemble: model_config_pb2.ModelConfig, models: Mapping[str, model_config_pb2.ModelConfig]
) -> list[EnsembleProblem]:
    """All wiring problems of `ensemble`; `models` maps every model name in the repository to
    its config. An empty list means the ensemble is wired correctly."""
    problems = _Checker(ensemble, models).run()
    log.debug("ensemble %s: %d problem(s)", ensemble.name, len(problems))
    return problems
