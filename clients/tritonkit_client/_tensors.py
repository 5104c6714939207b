"""numpy arrays to and from tritonclient's request and response objects.

Tensors always travel as binary data (never JSON). Dtypes come from
`tritonclient.utils.np_to_triton_dtype`; str/bytes/object arrays become BYTES.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from numpy.typing import NDArray
from tritonclient.utils import np_to_triton_dtype

from tritonkit_client.errors import InvalidInputError, ServerError
from tritonkit_client.options import Protocol as WireProtocol


def _as_bytes(name: str, item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    raise InvalidInputError(
        f"input {name!r}: a BYTES tensor holds bytes or str, got {type(item).__name__}"
    )


def _as_triton_array(name: str, value: Any) -> NDArray[Any]:
    array = np.asarray(value)
    if array.dtype.kind in ("U", "S", "O"):
        # Object arrays of bytes: numpy's fixed-width "S" would drop trailing NUL bytes.
        items = [_as_bytes(name, item) for item in array.reshape(-1).tolist()]
        converted = np.empty(len(items), dtype=np.object_)
        converted[:] = items
        array = converted.reshape(array.shape)
    if array.ndim == 0:
        raise InvalidInputError(
            f"input {name!r} is a scalar; Triton tensors have at least one dimension"
        )
    if np_to_triton_dtype(array.dtype) is None:
        raise InvalidInputError(f"input {name!r}: numpy dtype {array.dtype} has no Triton type")
    return np.ascontiguousarray(array)


def triton_datatype(array: NDArray[Any]) -> str:
    """Triton's name for the array's dtype (BYTES for object arrays)."""
    datatype = np_to_triton_dtype(array.dtype)
    if datatype is None:
        raise InvalidInputError(f"numpy dtype {array.dtype} has no Triton type")
    return str(datatype)


def prepare_inputs(inputs: Mapping[str, Any]) -> dict[str, NDArray[Any]]:
    """Contiguous arrays with Triton dtypes; str/bytes arrays become object arrays of bytes."""
    if not inputs:
        raise InvalidInputError("at least one input tensor is needed")
    return {name: _as_triton_array(name, value) for name, value in inputs.items()}


def tritonclient_module(protocol: WireProtocol) -> Any:
    """`tritonclient.http` or `tritonclient.grpc`, whose InferInput/InferRequestedOutput the
    protocol's clients (sync and aio) take."""
    return httpclient if protocol is WireProtocol.HTTP else grpcclient


def requested_output(protocol: WireProtocol, name: str, class_count: int = 0) -> Any:
    """A tritonclient InferRequestedOutput; over HTTP it asks for binary data. `class_count`
    > 0 asks for the top-k classes of it (Triton's classification extension)."""
    module = tritonclient_module(protocol)
    if protocol is WireProtocol.HTTP:
        return module.InferRequestedOutput(name, binary_data=True, class_count=class_count)
    return module.InferRequestedOutput(name, class_count=class_count)


def build_request(
    protocol: WireProtocol, arrays: Mapping[str, NDArray[Any]], outputs: Sequence[str] | None,
    *, class_counts: Mapping[str, int] | None = None,
) -> tuple[list[Any], list[Any] | None]:
    """tritonclient InferInputs (binary data) and requested outputs (binary data over HTTP;
    None asks for all outputs, which tritonclient.http also requests as binary)."""
    module = tritonclient_module(protocol)
    infer_inputs = []
    for name, array in arrays.items():
        infer_input = module.InferInput(name, list(array.shape), triton_datatype(array))
        if protocol is WireProtocol.HTTP:
            infer_input.set_data_from_numpy(array, binary_data=True)
        else:
            infer_input.set_data_from_numpy(array)
        infer_inputs.append(infer_input)
    counts = class_counts or {}
    requested = None if outputs is None else [
        requested_output(protocol, n, counts.get(n, 0)) for n in outputs]
    return infer_inputs, requested


def response_output_names(result: Any) -> list[str]:
    """Output names in an HTTP (dict) or gRPC (ModelInferResponse) InferResult."""
    response = result.get_response()
    if isinstance(response, Mapping):
        return [str(o["name"]) for o in response.get("outputs", ())]
    return [o.name for o in response.outputs]


def read_outputs(
    result: Any, names: Sequence[str] | None, *, context: str
) -> dict[str, NDArray[Any]]:
    """The outputs named `names` (None: every output in the response) of an InferResult."""
    wanted = list(names) if names is not None else response_output_names(result)
    outputs: dict[str, NDArray[Any]] = {}
    for name in wanted:
        array = result.as_numpy(name)
        if array is None:
            raise ServerError(f"{context}: the response has no output {name!r}")
        outputs[name] = array
    return outputs
