"""System shared memory for one inference: region layouts, the regions themselves, the request
that points into them and the outputs read back from them.

Creating, writing, reading and destroying regions happens here, on this host. Registering
and unregistering them with the server is the clients' I/O (sync or asyncio).
"""

from __future__ import annotations

import importlib
import logging
import os
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tritonclient.utils import serialize_byte_tensor, serialized_byte_size, triton_to_np_dtype

from tritonkit_client._batching import batch_size_of
from tritonkit_client._requests import InferArgs, InferRequest
from tritonkit_client._tensors import (
    read_outputs,
    requested_output,
    triton_datatype,
    tritonclient_module,
)
from tritonkit_client.errors import ClientError, InvalidInputError, ServerError, SharedMemoryError
from tritonkit_client.options import NO_RETRY, call_with_retry
from tritonkit_client.options import Protocol as WireProtocol
from tritonkit_client.results import ModelMetadata

logger = logging.getLogger(__name__)


def shared_memory_module() -> Any:
    """`tritonclient.utils.shared_memory`, imported on first use.

    tritonclient 2.50 loads its `libcshm.so` through `pkg_resources`, which setuptools >= 81
    no longer ships; without it system shared memory is unavailable (SharedMemoryError).
    """
    try:
        with warnings.catch_warnings():  # tritonclient 2.50 imports the deprecated pkg_resources
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return importlib.import_module("tritonclient.utils.shared_memory")
    except (ImportError, OSError) as e:
        raise SharedMemoryError(
            f"system shared memory is unavailable here: {e!r} "
            "(tritonclient.utils.shared_memory needs Linux and setuptools' pkg_resources, "
            "i.e. setuptools < 81)"
        ) from e


@dataclass(frozen=True, kw_only=True)
class ShmSlot:
    """One tensor's place in a region."""

    name: str
    offset: int
    byte_size: int
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ShmLayout:
    """A system shared-memory region: Triton's name for it, its key, size and tensors."""

    region: str
    key: str
    byte_size: int
    slots: tuple[ShmSlot, ...]


def _region_names(kind: str) -> tuple[str, str]:
    token = f"clients_{os.getpid()}_{uuid.uuid4().hex[:16]}_{kind}"
    return token, f"/{token}"


def plan_input_region(arrays: Mapping[str, NDArray[Any]]) -> tuple[ShmLayout, list[NDArray[Any]]]:
    """The input region's layout and the payloads to write into it, in order."""
    slots: list[ShmSlot] = []
    payloads: list[NDArray[Any]] = []
    offset = 0
    for name, array in arrays.items():
        datatype = triton_datatype(array)
        if datatype == "BYTES":
            payload = serialize_byte_tensor(array)
            size = int(serialized_byte_size(payload))
        else:
            payload, size = array, int(array.nbytes)
        slots.append(
            ShmSlot(name=name, offset=offset, byte_size=size, datatype=datatype, shape=array.shape)
        )
        payloads.append(payload)
        offset += size
    if offset == 0:
        raise InvalidInputError("shared memory needs at least one non-empty input")
    region, key = _region_names("in")
    return ShmLayout(region=region, key=key, byte_size=offset, slots=tuple(slots)), payloads


def plan_output_region(
    metadata: ModelMetadata, names: Sequence[str], *, batch: int | None
) -> ShmLayout | None:
    """The output region's layout, or None when an output's size is not known in advance
    (BYTES, a variable dim, an unknown name); then outputs come back in the response."""
    slots: list[ShmSlot] = []
    offset = 0
    for name in names:
        tensor = metadata.output(name)
        if tensor is None or tensor.datatype == "BYTES":
            return None
        shape = list(tensor.shape)
        if batch is not None:
            if not shape:
                return None
            shape[0] = batch
        np_dtype = triton_to_np_dtype(tensor.datatype)
        if np_dtype is None or any(d < 0 for d in shape):
            return None
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(np_dtype).itemsize
        slots.append(
            ShmSlot(
                name=name,
                offset=offset,
                byte_size=size,
                datatype=tensor.datatype,
                shape=tuple(shape),
            )
        )
        offset += size
    if offset == 0:
        return None
    region, key = _region_names("out")
    return ShmLayout(region=region, key=key, byte_size=offset, slots=tuple(slots))


def build_shm_request(
    protocol: WireProtocol, inputs: ShmLayout, outputs: ShmLayout | None, names: Sequence[str]
) -> tuple[list[Any], list[Any]]:
    """InferInputs that point into the input region, requested outputs that point into the
    output region (or plain binary outputs when there is none)."""
    module = tritonclient_module(protocol)
    infer_inputs = []
    for slot in inputs.slots:
        infer_input = module.InferInput(slot.name, list(slot.shape), slot.datatype)
        infer_input.set_shared_memory(inputs.region, slot.byte_size, slot.offset)
        infer_inputs.append(infer_input)
    requested = []
    if outputs is None:
        requested = [requested_output(protocol, name) for name in names]
    else:
        for slot in outputs.slots:
            output = requested_output(protocol, slot.name)
            output.set_shared_memory(outputs.region, slot.byte_size, slot.offset)
            requested.append(output)
    return infer_inputs, requested


def _output_shape_and_type(result: Any, name: str) -> tuple[tuple[int, ...], str] | None:
    output = result.get_output(name)
    if output is None:
        return None
    if isinstance(output, Mapping):
        return tuple(int(d) for d in output["shape"]), str(output["datatype"])
    return tuple(int(d) for d in output.shape), str(output.datatype)


def read_shm_outputs(
    result: Any, layout: ShmLayout, handle: Any, *, context: str
) -> dict[str, NDArray[Any]]:
    """Copy each output out of the output region (the region is destroyed afterwards)."""
    shm = shared_memory_module()
    outputs: dict[str, NDArray[Any]] = {}
    for slot in layout.slots:
        found = _output_shape_and_type(result, slot.name)
        if found is None:
            raise ServerError(f"{context}: the response has no output {slot.name!r}")
        shape, datatype = found
        np_dtype = triton_to_np_dtype(datatype)
        if np_dtype is None:
            raise ServerError(f"{context}: output {slot.name!r} has unknown datatype {datatype}")
        needed = int(np.prod(shape, dtype=np.int64)) * np.dtype(np_dtype).itemsize
        if needed > slot.byte_size:
            raise ServerError(
                f"{context}: output {slot.name!r} needs {needed} bytes, "
                f"its shared-memory slot has {slot.byte_size}"
            )
        outputs[slot.name] = np.array(
            call_with_retry(
                partial(
                    shm.get_contents_as_numpy,
                    handle,
                    np_dtype,
                    list(shape),
                    offset=slot.offset,
                ),
                policy=NO_RETRY,
                context=context,
            ),
            copy=True,
        )
    return outputs


class RegionSet:
    """System shared-memory regions created for one call; `destroy_all` removes them."""

    def __init__(self, *, context: str) -> None:
        self._context = context
        self._handles: list[tuple[str, Any]] = []

    def create(self, layout: ShmLayout, payloads: Sequence[NDArray[Any]] | None) -> Any:
        shm = shared_memory_module()
        handle = call_with_retry(
            lambda: shm.create_shared_memory_region(layout.region, layout.key, layout.byte_size),
            policy=NO_RETRY,
            context=self._context,
        )
        self._handles.append((layout.region, handle))
        if payloads:
            call_with_retry(
                lambda: shm.set_shared_memory_region(handle, list(payloads)),
                policy=NO_RETRY,
                context=self._context,
            )
        return handle

    def destroy_all(self) -> None:
        if not self._handles:
            return
        shm = shared_memory_module()
        while self._handles:
            region, handle = self._handles.pop()
            try:
                call_with_retry(
                    partial(shm.destroy_shared_memory_region, handle),
                    policy=NO_RETRY,
                    context=self._context,
                )
            except ClientError as e:
                logger.warning("could not destroy shared memory region %s: %s", region, e)


class ShmInference:
    """One inference through system shared memory, all but the calls to the server.

    The inputs, and the outputs when all have a size known in advance (fixed-shape, not
    BYTES), get a region each. A client creates each of `layouts` (`create`) and registers
    it, sends `request()`, reads the outputs with `read`, unregisters what it registered and
    calls `destroy`.
    """

    def __init__(
        self,
        *,
        protocol: WireProtocol,
        args: InferArgs,
        metadata: ModelMetadata,
        batched: bool,
        context: str,
    ) -> None:
        self._protocol = protocol
        self._args = args
        self._context = context
        self._names = (
            args.outputs if args.outputs is not None else [t.name for t in metadata.outputs]
        )
        self._inputs, self._payloads = plan_input_region(args.arrays)
        self._outputs = plan_output_region(
            metadata, self._names, batch=batch_size_of(args.arrays) if batched else None
        )
        self._regions = RegionSet(context=context)
        self._handles: dict[str, Any] = {}

    @property
    def layouts(self) -> list[ShmLayout]:
        """The regions to create and register, inputs first."""
        return [self._inputs] if self._outputs is None else [self._inputs, self._outputs]

    def create(self, layout: ShmLayout) -> None:
        """Create the region here (the input region with its data written into it)."""
        payloads = self._payloads if layout is self._inputs else None
        self._handles[layout.region] = self._regions.create(layout, payloads)

    def request(self) -> InferRequest:
        return self._args.request(
            *build_shm_request(self._protocol, self._inputs, self._outputs, self._names)
        )

    def read(self, result: Any) -> dict[str, NDArray[Any]]:
        """The outputs: copied out of the output region, or from the response without one."""
        if self._outputs is None:
            return read_outputs(result, self._names, context=self._context)
        handle = self._handles[self._outputs.region]
        return read_shm_outputs(result, self._outputs, handle, context=self._context)

    def destroy(self) -> None:
        """Remove the regions created here."""
        self._regions.destroy_all()
