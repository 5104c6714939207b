"""Send hand-built inference requests over HTTP and gRPC, exactly as given.

The typed client (`clients`) refuses many bad requests before sending them; the corpus needs
the server's own answer, so requests are built here at the wire level: KServe v2 JSON header
plus binary data over `http.client`, and `ModelInferRequest` protobufs over a gRPC stub.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonkit_client import Protocol
from tritonkit_client.kserve_codec import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    CodecError,
    decode_response,
    join_body,
    tensor_from_bytes,
)

from harness.reliability.errors import ReliabilityError

MAX_MESSAGE_BYTES = 512 * 1024 * 1024
__all__ = ["MAX_MESSAGE_BYTES", "Protocol", "RawRequest", "RawTensor", "WireAnswer", "WireClient"]


@dataclass(frozen=True, kw_only=True)
class RawTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes  # the raw binary form, sent as is (may disagree with shape on purpose)


@dataclass(frozen=True, kw_only=True)
class RawRequest:
    model: str
    inputs: tuple[RawTensor, ...]
    outputs: tuple[str, ...] = ()  # none: every output
    version: str = ""
    # request parameters (priority, timeout, sequence_id, anything) and per-output ones
    # (classification, binary_data), sent as given: any JSON value over HTTP
    parameters: Mapping[str, object] = field(default_factory=dict)
    output_parameters: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


class NotRepresentable(ReliabilityError):
    """A parameter value the protocol cannot carry (gRPC has no null, list or object)."""


def set_grpc_parameter(parameters: Any, name: str, value: object) -> None:
    """Put `value` into a gRPC InferParameter map entry, by its Python type."""
    if isinstance(value, bool):
        parameters[name].bool_param = value
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise NotRepresentable(f"{name}={value} does not fit gRPC's int64")
        parameters[name].int64_param = value
    elif isinstance(value, float):
        parameters[name].double_param = value
    elif isinstance(value, str):
        parameters[name].string_param = value
    else:
        raise NotRepresentable(f"gRPC parameters carry no {type(value).__name__} ({name})")


@dataclass(frozen=True, kw_only=True)
class WireAnswer:
    ok: bool
    status: str  # HTTP status ("400") or gRPC code name ("INVALID_ARGUMENT")
    message: str  # the server's error text ("" on success)
    seconds: float
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def _hostport(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    return host, int(port)


class WireClient:
    """One HTTP connection target and one gRPC channel to the same server."""

    def __init__(self, *, http_url: str, grpc_url: str, timeout_s: float = 120.0) -> None:
        self.http_host, self.http_port = _hostport(http_url)
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(
            grpc_url.split("://", 1)[-1],
            options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def send(self, request: RawRequest, protocol: Protocol) -> WireAnswer:
        if protocol is Protocol.HTTP:
            return self.send_http(request)
        return self.send_grpc(request)

    # ------------------------------------------------------------------ HTTP
    def http_get(self, path: str) -> int:
        """Status of a GET (health checks); 0 when the server cannot be reached."""
        connection = http.client.HTTPConnection(self.http_host, self.http_port, timeout=10)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except OSError:
            return 0
        finally:
            connection.close()

    def send_http(self, request: RawRequest) -> WireAnswer:
        header: dict[str, object] = {
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape),
                        "parameters": {"binary_data_size": len(t.data)}}
                       for t in request.inputs],
        }
        if request.outputs:
            header["outputs"] = [
                {"name": n, "parameters": {"binary_data": True,
                                           **request.output_parameters.get(n, {})}}
                for n in request.outputs]
        else:
            header["parameters"] = {"binary_data_output": True}
        if request.parameters:
            header["parameters"] = {**dict(header.get("parameters") or {}),  # type: ignore[call-overload]
                                    **request.parameters}
        body, head_length = join_body(header, [t.data for t in request.inputs])
        path = f"/v2/models/{request.model}"
        if request.version:
            path += f"/versions/{request.version}"
        connection = http.client.HTTPConnection(self.http_host, self.http_port,
                                                timeout=self.timeout_s)
        started = time.monotonic()
        try:
            connection.request("POST", f"{path}/infer", body=body, headers={
                "Content-Type": BINARY_CONTENT_TYPE,
                HEADER_LENGTH: str(head_length),
            })
            response = connection.getresponse()
            payload = response.read()
            length = response.getheader(HEADER_LENGTH)
        except OSError as e:
            return WireAnswer(ok=False, status="CONNECTION", message=f"{type(e).__name__}: {e}",
                              seconds=time.monotonic() - started)
        finally:
            connection.close()
        seconds = time.monotonic() - started
        if response.status == 200:
            try:
                answer = decode_response(payload, int(length) if length else None)
            except (CodecError, ValueError) as e:
                return WireAnswer(ok=False, status="200", seconds=seconds,
                                  message=f"undecodable answer: {e}")
            return WireAnswer(ok=True, status="200", message="", seconds=seconds,
                              outputs=dict(answer.outputs))
        text = payload[: int(length)] if length else payload
        try:
            parsed = json.loads(text) if text else {}
        except (ValueError, UnicodeDecodeError):
            parsed = {"error": text[:500].decode("utf-8", errors="replace")}
        error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        return WireAnswer(ok=False, status=str(response.status), message=str(error),
                          seconds=seconds)

    # ------------------------------------------------------------------ gRPC
    def send_grpc(self, request: RawRequest) -> WireAnswer:
        message = service_pb2.ModelInferRequest(model_name=request.model,
                                                model_version=request.version)
        for tensor in request.inputs:
            entry = message.inputs.add()
            entry.name = tensor.name
            entry.datatype = tensor.datatype
            entry.shape.extend(tensor.shape)
            message.raw_input_contents.append(tensor.data)
        for name in request.outputs:
            output = message.outputs.add()
            output.name = name
            for key, value in request.output_parameters.get(name, {}).items():
                if key != "binary_data":  # gRPC outputs are always raw bytes
                    set_grpc_parameter(output.parameters, key, value)
        for key, value in request.parameters.items():
            set_grpc_parameter(message.parameters, key, value)
        started = time.monotonic()
        try:
            response = self._stub.ModelInfer(message, timeout=self.timeout_s)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            return WireAnswer(ok=False, status=getattr(code, "name", str(code)),
                              message=str(details), seconds=time.monotonic() - started)
        outputs = {o.name: tensor_from_bytes(raw, o.datatype, tuple(o.shape), name=o.name)
                   for o, raw in zip(response.outputs, response.raw_output_contents,
                                     strict=True)}
        return WireAnswer(ok=True, status="OK", message="", seconds=time.monotonic() - started,
                          outputs=outputs)

    def grpc_ready(self) -> bool:
        try:
            return bool(self._stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready)
        except grpc.RpcError:
            return False


def require_reachable(client: WireClient) -> None:
    if client.http_get("/v2/health/live") != 200:
        raise ReliabilityError(f"no live server at {client.http_host}:{client.http_port}")
