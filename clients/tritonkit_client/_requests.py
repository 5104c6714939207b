"""Inference requests: the arguments of `infer`, checked before any I/O, and the request that
tritonclient sends for them (tensors as binary data in the body here; through shared memory
in `tritonkit_client._shm`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from numpy.typing import NDArray

from tritonkit_client._tensors import build_request, prepare_inputs
from tritonkit_client.errors import InvalidInputError
from tritonkit_client.options import Protocol as WireProtocol

#: Request parameters (Triton's `parameters` field); reserved names are refused by tritonclient.
Parameters = Mapping[str, str | int | float | bool]


@dataclass(frozen=True, kw_only=True)
class InferRequest:
    """One inference request as tritonclient's `infer` takes it."""

    model: str
    version: str
    inputs: list[Any]  # tritonclient InferInput
    outputs: list[Any] | None  # tritonclient InferRequestedOutput; None: every output
    parameters: dict[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class InferArgs:
    """The arguments of one `infer` call, checked and converted."""

    model: str
    version: str
    arrays: dict[str, NDArray[Any]]  # from `prepare_inputs`
    outputs: list[str] | None  # None: every output
    parameters: dict[str, Any] | None
    # output -> top-k through Triton's classification extension (class_count)
    class_counts: dict[str, int] = field(default_factory=dict)

    def request(self, inputs: list[Any], outputs: list[Any] | None) -> InferRequest:
        """The request with these arguments and the given tritonclient tensors."""
        return InferRequest(
            model=self.model,
            version=self.version,
            inputs=inputs,
            outputs=outputs,
            parameters=self.parameters,
        )


def infer_args(
    model: str,
    inputs: Mapping[str, Any],
    *,
    outputs: Sequence[str] | None,
    version: str,
    parameters: Parameters | None,
    class_counts: Mapping[str, int] | None = None,
) -> InferArgs:
    """Check and convert the arguments of `infer` (raises InvalidInputError). Outputs named in
    `class_counts` are requested too."""
    counts = dict(class_counts or {})
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidInputError(f"class count of output {name!r} must be an integer >= 1, "
                                    f"got {count!r}")
    wanted = None if outputs is None else list(outputs)
    if wanted is not None:
        wanted += [name for name in counts if name not in wanted]
    elif counts:
        raise InvalidInputError("name the outputs to return when asking for classification "
                                "(class_counts)")
    return InferArgs(
        model=model,
        version=version,
        arrays=prepare_inputs(inputs),
        outputs=wanted,
        parameters=None if parameters is None else dict(parameters),
        class_counts=counts,
    )


def binary_request(protocol: WireProtocol, args: InferArgs) -> InferRequest:
    """The request carrying every tensor as binary data."""
    return args.request(*build_request(protocol, args.arrays, args.outputs,
                                       class_counts=args.class_counts))
