"""The arguments of `infer`, checked before any I/O, and the binary request built from them."""

from __future__ import annotations

import numpy as np
import pytest
from tritonkit_client._requests import binary_request, infer_args
from tritonkit_client.errors import InvalidInputError
from tritonkit_client.options import Protocol


def test_infer_args_convert_and_copy() -> None:
    outputs = ("Y",)
    parameters = {"priority": 1}
    args = infer_args(
        "m", {"X": np.array(["a"])}, outputs=outputs, version="2", parameters=parameters
    )
    assert args.arrays["X"].dtype == np.object_ and args.arrays["X"][0] == b"a"
    assert args.outputs == ["Y"] and args.parameters == {"priority": 1}
    assert args.parameters is not parameters
    everything = infer_args("m", {"X": np.zeros(1)}, outputs=None, version="", parameters=None)
    assert everything.outputs is None and everything.parameters is None
    with pytest.raises(InvalidInputError, match="scalar"):
        infer_args("m", {"X": np.float32(1)}, outputs=None, version="", parameters=None)


@pytest.mark.parametrize("protocol", [Protocol.HTTP, Protocol.GRPC])
def test_binary_request_carries_the_arguments(protocol: Protocol) -> None:
    args = infer_args(
        "m",
        {"A": np.zeros((2, 3), np.float32), "B": np.zeros((2, 1), np.int64)},
        outputs=["Y"],
        version="3",
        parameters={"p": "v"},
    )
    request = binary_request(protocol, args)
    assert (request.model, request.version, request.parameters) == ("m", "3", {"p": "v"})
    assert [(i.name(), i.datatype(), i.shape()) for i in request.inputs] == [
        ("A", "FP32", [2, 3]),
        ("B", "INT64", [2, 1]),
    ]
    assert request.outputs is not None and [o.name() for o in request.outputs] == ["Y"]
    args_all = infer_args("m", {"A": np.zeros(1)}, outputs=None, version="", parameters=None)
    assert binary_request(protocol, args_all).outputs is None
