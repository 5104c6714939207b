"""KServe v2 inference bodies with Triton's binary tensor data extension, both directions.

A body is a JSON header followed by the tensors' raw bytes, in the order the header lists
them; the HTTP header `Inference-Header-Content-Length` gives the JSON header's length (absent:
the whole body is JSON). Numeric tensors are raw little-endian, row-major; a BYTES tensor is,
per element, a 4-byte little-endian length followed by the element's bytes. Inputs and outputs
may also be carried as JSON `data` (flattened, row-major), which this codec reads and writes
too.

The one codec of the project: the benchmarks' load generators send the bodies `encode_request`
makes and their FastAPI peer reads them with `decode_request` (so Triton and the peer receive
identical bytes); the reliability harness frames hand-built (deliberately inconsistent) requests
with `join_body` and reads every answer with `decode_response` / `tensor_from_bytes`. JSON dicts
stay inside this module: callers get `InferRequest` / `InferResponse`.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from tritonkit_client.errors import ClientError

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"

_LENGTH = struct.Struct("<I")


class CodecError(ClientError):
    """A body (or tensor) that is not a valid KServe v2 binary-data message."""


class Datatype(str, Enum):
    """KServe v2 tensor datatypes (BF16 is not supported)."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


_NUMPY_TYPES: dict[Datatype, np.dtype] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype("<u1"),
    Datatype.UINT16: np.dtype("<u2"),
    Datatype.UINT32: np.dtype("<u4"),
    Datatype.UINT64: np.dtype("<u8"),
    Datatype.INT8: np.dtype("<i1"),
    Datatype.INT16: np.dtype("<i2"),
    Datatype.INT32: np.dtype("<i4"),
    Datatype.INT64: np.dtype("<i8"),
    Datatype.FP16: np.dtype("<f2"),
    Datatype.FP32: np.dtype("<f4"),
    Datatype.FP64: np.dtype("<f8"),
}
_BY_KIND_SIZE: dict[tuple[str, int], Datatype] = {
    (dtype.kind, dtype.itemsize): datatype for datatype, dtype in _NUMPY_TYPES.items()
}


def datatype_of(array: np.ndarray) -> Datatype:
    """The KServe datatype of a numpy array (object, bytes and str arrays are BYTES)."""
    if array.dtype.kind in "OSU":
        return Datatype.BYTES
    try:
        return _BY_KIND_SIZE[(array.dtype.kind, array.dtype.itemsize)]
    except KeyError as e:
        raise CodecError(f"numpy dtype {array.dtype} has no KServe v2 datatype") from e


def _parse_datatype(value: object, where: str) -> Datatype:
    try:
        return Datatype(value)
    except ValueError as e:
        known = ", ".join(d.value for d in Datatype)
        raise CodecError(f"{where}: unsupported datatype {value!r} (supported: {known})") from e


@dataclass(frozen=True, kw_only=True)
class RequestedOutput:
    """An output the client asks for, in binary (raw bytes after the header) or JSON form;
    `class_count` > 0 asks for its top classes instead (the classification extension)."""

    name: str
    binary_data: bool = True
    class_count: int = 0


@dataclass(frozen=True, kw_only=True)
class InferRequest:
    """A decoded inference request.

    `outputs` empty means "every output"; those come back binary when `binary_data_output`.
    """

    inputs: Mapping[str, np.ndarray]
    outputs: tuple[RequestedOutput, ...] = ()
    request_id: str = ""
    binary_data_output: bool = False

    def resolve_outputs(self, available: Sequence[str]) -> tuple[RequestedOutput, ...]:
        """The outputs to send, in order, given the model's outputs; unknown names fail."""
        if not self.outputs:
            return tuple(RequestedOutput(name=name, binary_data=self.binary_data_output)
                         for name in available)
        unknown = [o.name for o in self.outputs if o.name not in available]
        if unknown:
            raise CodecError(f"unexpected inference output(s) {unknown}; the model has "
                             f"{list(available)}")
        return self.outputs


@dataclass(frozen=True, kw_only=True)
class InferResponse:
    """A decoded (or to-be-encoded) inference response."""

    model_name: str
    outputs: Mapping[str, np.ndarray]
    model_version: str = ""
    request_id: str = ""


@dataclass(frozen=True, kw_only=True)
class _Encoded:
    header: dict[str, Any]
    blob: bytes | None = None


# --------------------------------------------------------------------------- tensor bytes


def _element_bytes(element: object) -> bytes:
    if isinstance(element, bytes):
        return element
    if isinstance(element, str):
        return element.encode("utf-8")
    if isinstance(element, (bytearray, memoryview)):
        return bytes(element)
    raise CodecError(f"BYTES elements must be bytes or str, got {type(element).__name__}")


def serialize_bytes(elements: Iterable[object]) -> bytes:
    """BYTES elements as <4-byte LE length><bytes>, concatenated."""
    parts: list[bytes] = []
    for element in elements:
        raw = _element_bytes(element)
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def deserialize_bytes(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Exactly `count` length-prefixed elements filling `raw`, as a 1-D object array."""
    view = memoryview(raw)
    elements = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + _LENGTH.size > len(view):
            raise CodecError(f"BYTES data ends inside the length of element {i} of {count}")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            raise CodecError(f"BYTES element {i} claims {length} bytes; only "
                             f"{len(view) - offset} remain")
        elements[i] = bytes(view[offset:offset + length])
        offset += length
    if offset != len(view):
        raise CodecError(f"BYTES data holds {len(view) - offset} bytes after its {count} "
                         f"elements")
    return elements


def _tensor_bytes(array: np.ndarray, datatype: Datatype) -> bytes:
    if datatype is Datatype.BYTES:
        return serialize_bytes(array.reshape(-1).tolist())
    return np.ascontiguousarray(array, dtype=_NUMPY_TYPES[datatype]).tobytes()


def _tensor_from_bytes(raw: bytes | memoryview, datatype: Datatype, shape: tuple[int, ...],
                       where: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype is Datatype.BYTES:
        try:
            return deserialize_bytes(raw, count).reshape(shape)
        except CodecError as e:
            raise CodecError(f"{where}: {e}") from e
    dtype = _NUMPY_TYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise CodecError(f"{where}: {datatype.value} shape {list(shape)} needs "
                         f"{count * dtype.itemsize} bytes, got {len(raw)}")
    # a copy: the caller's body buffer is not kept alive, and the array is writable
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def tensor_from_bytes(raw: bytes | memoryview, datatype: str, shape: Sequence[int], *,
                      name: str = "tensor") -> np.ndarray:
    """One tensor from its binary form (a gRPC raw content or an HTTP binary-data slice)."""
    where = f"output {name!r}"
    return _tensor_from_bytes(raw, _parse_datatype(datatype, where),
                              _shape(list(shape), where), where)


def _tensor_from_json(data: object, datatype: Datatype, shape: tuple[int, ...],
                      where: str) -> np.ndarray:
    try:
        flat = np.asarray(data, dtype=object).reshape(-1)
    except ValueError as e:
        raise CodecError(f"{where}: JSON data is not a (nested) list: {e}") from e
    if flat.size != math.prod(shape):
        raise CodecError(f"{where}: shape {list(shape)} needs {math.prod(shape)} elements, "
                         f"JSON data holds {flat.size}")
    if datatype is Datatype.BYTES:
        elements = np.empty(flat.size, dtype=object)
        elements[:] = [_element_bytes(e) for e in flat.tolist()]
        return elements.reshape(shape)
    try:
        return np.asarray(flat.tolist(), dtype=_NUMPY_TYPES[datatype]).reshape(shape)
    except (TypeError, ValueError) as e:
        raise CodecError(f"{where}: JSON data is not {datatype.value}: {e}") from e


def _json_data(array: np.ndarray, datatype: Datatype) -> list[Any]:
    flat = array.reshape(-1)
    if datatype is Datatype.BYTES:
        return [_element_bytes(e).decode("utf-8", errors="replace") for e in flat.tolist()]
    values: list[Any] = flat.tolist()
    return values


def _shape(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise CodecError(f"{where}: shape must be a list of non-negative integers, got "
                         f"{value!r}")
    return tuple(value)


# --------------------------------------------------------------------------- message framing


def _split_body(body: bytes, header_length: int | None) -> tuple[dict[str, Any], memoryview]:
    if header_length is None:
        header_length = len(body)
    if not 0 < header_length <= len(body):
        raise CodecError(f"{HEADER_LENGTH} is {header_length}, but the body holds "
                         f"{len(body)} bytes")
    try:
        header = json.loads(body[:header_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CodecError(f"the JSON header (first {header_length} bytes) is not valid JSON: "
                         f"{e}") from e
    if not isinstance(header, dict):
        raise CodecError(f"the JSON header must be an object, got {type(header).__name__}")
    return header, memoryview(body)[header_length:]


def join_body(header: Mapping[str, Any], blobs: Sequence[bytes]) -> tuple[bytes, int]:
    """A body of `header` (JSON, compact) then `blobs`, and the header's length."""
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return b"".join([encoded, *blobs]), len(encoded)


def _tensors(header: dict[str, Any], key: str, binary: memoryview) -> dict[str, np.ndarray]:
    entries = header.get(key)
    if not isinstance(entries, list):
        raise CodecError(f"the JSON header needs a list {key!r}, got {entries!r}")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CodecError(f"{key}[{index}] must be an object with a string 'name'")
        name = entry["name"]
        where = f"{key[:-1]} {name!r}"
        if name in tensors:
            raise CodecError(f"{where} appears twice")
        datatype = _parse_datatype(entry.get("datatype"), where)
        shape = _shape(entry.get("shape"), where)
        parameters = entry.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0:
                raise CodecError(f"{where}: binary_data_size must be a non-negative integer, "
                                 f"got {size!r}")
            if offset + size > len(binary):
                raise CodecError(f"{where}: binary_data_size {size} overruns the body (only "
                                 f"{len(binary) - offset} binary bytes remain)")
            tensors[name] = _tensor_from_bytes(binary[offset:offset + size], datatype, shape,
                                               where)
            offset += size
        elif "data" in entry:
            tensors[name] = _tensor_from_json(entry["data"], datatype, shape, where)
        else:
            raise CodecError(f"{where} has neither 'data' nor parameters.binary_data_size")
    if offset != len(binary):
        raise CodecError(f"{len(binary) - offset} bytes follow the last binary tensor")
    return tensors


def _tensor_entry(name: str, array: np.ndarray, *, binary: bool) -> _Encoded:
    datatype = datatype_of(array)
    # key order as tritonclient writes it, so equal requests are equal bytes
    entry: dict[str, Any] = {"name": name, "shape": [int(d) for d in array.shape],
                             "datatype": datatype.value}
    if not binary:
        entry["data"] = _json_data(array, datatype)
        return _Encoded(header=entry)
    blob = _tensor_bytes(array, datatype)
    entry["parameters"] = {"binary_data_size": len(blob)}
    return _Encoded(header=entry, blob=blob)


# --------------------------------------------------------------------------- requests


def encode_request(
    inputs: Mapping[str, np.ndarray], outputs: Sequence[str], *,
    request_id: str = "", binary_outputs: bool = True,
    class_counts: Mapping[str, int] | None = None,
) -> tuple[bytes, int]:
    """The request body and its JSON header length (send it as `Inference-Header-Content-Length`).

    Every input travels as binary data; each named output is asked for in binary form (or
    JSON when `binary_outputs` is False), as its top classes when `class_counts` names it. No
    `outputs` asks for all of them.
    """
    entries = [_tensor_entry(name, np.asarray(array), binary=True)
               for name, array in inputs.items()]
    header: dict[str, Any] = {}
    if request_id:
        header["id"] = request_id
    header["inputs"] = [e.header for e in entries]
    if outputs:
        counts = class_counts or {}
        header["outputs"] = [
            {"name": name, "parameters": {"binary_data": binary_outputs,
                                          **({"classification": counts[name]}
                                             if counts.get(name) else {})}}
            for name in outputs]
    else:
        header["parameters"] = {"binary_data_output": binary_outputs}
    return join_body(header, [e.blob for e in entries if e.blob is not None])


def classification_strings(values: np.ndarray, class_count: int,
                           labels: Sequence[str] = ()) -> np.ndarray:
    """What Triton answers for the classification extension: per row, the `class_count`
    largest values as BYTES `value:index[:label]`, largest first ([N, k] for [N, classes])."""
    array = np.asarray(values)
    rows = array.reshape(1, -1) if array.ndim == 1 else array.reshape(array.shape[0], -1)
    k = min(class_count, rows.shape[1])
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    answer = np.empty((rows.shape[0], k), dtype=object)
    for r, row in enumerate(order):
        for c, index in enumerate(row):
            label = f":{labels[index]}" if index < len(labels) else ""
            answer[r, c] = f"{float(rows[r, index]):f}:{int(index)}{label}".encode()
    return answer if array.ndim > 1 else answer[0]


def request_headers(header_length: int) -> dict[str, str]:
    """HTTP headers that go with a body from `encode_request`."""
    return {HEADER_LENGTH: str(header_length), "Content-Type": BINARY_CONTENT_TYPE}


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse a request body; `header_length` None means the body is JSON only."""
    header, binary = _split_body(body, header_length)
    inputs = _tensors(header, "inputs", binary)
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise CodecError(f"request 'parameters' must be an object, got {parameters!r}")
    default_binary = bool(parameters.get("binary_data_output", False))
    requested: list[RequestedOutput] = []
    for index, entry in enumerate(header.get("outputs") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CodecError(f"outputs[{index}] must be an object with a string 'name'")
        output_parameters = entry.get("parameters") or {}
        if not isinstance(output_parameters, dict):
            raise CodecError(f"outputs[{index}].parameters must be an object")
        binary_flag = output_parameters.get("binary_data", default_binary)
        class_count = output_parameters.get("classification", 0)
        if isinstance(class_count, bool) or not isinstance(class_count, int) or class_count < 0:
            raise CodecError(f"outputs[{index}].parameters.classification must be a "
                             f"non-negative integer, got {class_count!r}")
        requested.append(RequestedOutput(name=entry["name"], binary_data=bool(binary_flag),
                                         class_count=class_count))
    request_id = header.get("id", "")
    return InferRequest(inputs=inputs, outputs=tuple(requested),
                        request_id=str(request_id) if request_id is not None else "",
                        binary_data_output=default_binary)


# --------------------------------------------------------------------------- responses


def encode_response(
    response: InferResponse, requested: Sequence[RequestedOutput],
) -> tuple[bytes, int | None]:
    """The response body for the `requested` outputs (in that order) and its JSON header length.

    The length is None when no output is binary: the body is plain JSON and Triton then sends
    no `Inference-Header-Content-Length`.
    """
    entries: list[_Encoded] = []
    for output in requested:
        if output.name not in response.outputs:
            raise CodecError(f"the response has no output {output.name!r}; it has "
                             f"{sorted(response.outputs)}")
        entries.append(_tensor_entry(output.name, np.asarray(response.outputs[output.name]),
                                     binary=output.binary_data))
    header: dict[str, Any] = {"model_name": response.model_name,
                              "model_version": response.model_version}
    if response.request_id:
        header["id"] = response.request_id
    header["outputs"] = [e.header for e in entries]
    blobs = [e.blob for e in entries if e.blob is not None]
    body, length = join_body(header, blobs)
    return body, (length if blobs else None)


def decode_response(body: bytes, header_length: int | None) -> InferResponse:
    """Parse a response body; `header_length` None means the body is JSON only."""
    header, binary = _split_body(body, header_length)
    if "error" in header:
        raise CodecError(f"the body is an error response: {header['error']}")
    outputs = _tensors(header, "outputs", binary)
    return InferResponse(model_name=str(header.get("model_name", "")), outputs=outputs,
                         model_version=str(header.get("model_version", "")),
                         request_id=str(header.get("id", "")))


def encode_error(message: str) -> bytes:
    """A KServe v2 error body: {"error": message}."""
    return json.dumps({"error": message}).encode("utf-8")


def decode_error(body: bytes) -> str:
    """The message of an error body from Triton or the peer."""
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CodecError(f"error body is not JSON: {body[:200]!r}") from e
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), str):
        raise CodecError(f"error body has no 'error' string: {parsed!r}")
    return parsed["error"]
