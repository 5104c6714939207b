"""Inference requests: the arguments of `infer`, checked before any I/O, and the request that
tritonclient sends for them (tensors as binary data in the body here; through shared memory
in `tritonkit_client._shm`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from numpy.typing import NDArray

from tritonkit_client._tensors import build_request, prepare_inputs
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
) -> InferArgs:
    """Check and convert the arguments of `infer` (raises InvalidInputError)."""
    return InferArgs(
        model=model,
        version=version,
        arrays=prepare_inputs(inputs),
        outputs=None if outputs is None else list(outputs),
        parameters=None if parameters is None else dict(parameters),
    )


def binary_request(protocol: WireProtocol, args: InferArgs) -> InferRequest:
    """The request carrying every tensor as binary data."""
    return args.request(*build_request(protocol, args.arrays, args.outputs))
