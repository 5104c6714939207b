"""The bad-input corpus: cases generated per model from its config, plus cases chosen by what
an input carries (encoded images, text, floats, BYTES).

Every case breaks one thing and names the words a clear error message must contain
(`expect`, regular expressions, any one suffices). `Origin.STEP` cases are the toolkit's own
to reject and must be answered HTTP 400 / gRPC INVALID_ARGUMENT; `Origin.CORE` cases are
answered by Triton's core, whose status is recorded as it is.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from harness.reliability.payloads import broken_images, numpy_dtype, raw_bytes, valid_array
from harness.reliability.targets import InputKind, ModelTarget, TensorInfo
from harness.reliability.wire import RawRequest, RawTensor
from tritonkit.processing import DEFAULT_MAX_ELEMENT_BYTES

OVERSIZED_BODY_BYTES = 32 * 1024 * 1024


class Origin(str, Enum):
    STEP = "step"  # the toolkit's Python steps reject it: must be 400 / INVALID_ARGUMENT
    CORE = "core"  # Triton's core rejects it before any step runs: status recorded


@dataclass(frozen=True, kw_only=True)
class BadInputCase:
    case: str  # the kind of breakage, e.g. "nan"; one kind runs against many models
    model: str
    description: str
    request: RawRequest
    expect: tuple[str, ...]  # regexes; the error message must match one (case-insensitive)
    origin: Origin


def _rows(target: ModelTarget, rows: int = 1) -> int | None:
    return rows if target.batched else None


def raw_tensor(tensor: TensorInfo, array: np.ndarray, *, name: str | None = None,
               datatype: str | None = None, shape: tuple[int, ...] | None = None,
               data: bytes | None = None) -> RawTensor:
    return RawTensor(name=name or tensor.name, datatype=datatype or tensor.datatype,
                     shape=tuple(array.shape) if shape is None else shape,
                     data=raw_bytes(array) if data is None else data)


def valid_tensors(target: ModelTarget, rows: int = 1, *, seed: int = 0) -> tuple[RawTensor, ...]:
    return tuple(raw_tensor(t, valid_array(t, _rows(target, rows), seed=seed))
                 for t in target.inputs)


def valid_request(target: ModelTarget, rows: int = 1) -> RawRequest:
    return RawRequest(model=target.name, inputs=valid_tensors(target, rows))


def _replace(target: ModelTarget, tensor: RawTensor) -> tuple[RawTensor, ...]:
    others = valid_tensors(target)
    return tuple(tensor if t.name == tensor.name else t for t in others)


def with_element(target: ModelTarget, tensor: TensorInfo, element: bytes) -> RawRequest:
    array = valid_array(tensor, _rows(target))
    array.reshape(-1)[0] = element
    return RawRequest(model=target.name, inputs=_replace(target, raw_tensor(tensor, array)))


# ------------------------------------------------------------------ generic (every model)

def _generic(target: ModelTarget) -> list[BadInputCase]:
    first = target.inputs[0]
    valid = valid_array(first, _rows(target))
    rows = _rows(target) or 1
    name = target.name
    cases: list[tuple[str, str, RawRequest, tuple[str, ...], Origin]] = []

    def add(case: str, description: str, request: RawRequest, expect: tuple[str, ...],
            origin: Origin = Origin.CORE) -> None:
        cases.append((case, description, request, expect, origin))

    add("missing_input", f"no {first.name!r}",
        RawRequest(model=name, inputs=tuple(t for t in valid_tensors(target)
                                            if t.name != first.name)),
        (r"expected \d+ inputs? but got", r"missing", rf"'{first.name}'"))
    add("unknown_input", "an input the model does not have",
        RawRequest(model=name, inputs=(*valid_tensors(target),
                                       raw_tensor(first, valid, name="NOT_AN_INPUT"))),
        (r"unexpected inference input 'NOT_AN_INPUT'", r"NOT_AN_INPUT"))
    add("unknown_output", "an output the model does not have",
        RawRequest(model=name, inputs=valid_tensors(target), outputs=("NOT_AN_OUTPUT",)),
        (r"unexpected inference output 'NOT_AN_OUTPUT'", r"NOT_AN_OUTPUT"))
    add("unknown_model_version", "version 999 of the model",
        RawRequest(model=name, inputs=valid_tensors(target), version="999"),
        (r"version 999", r"unknown model"))
    wrong = "FP32" if first.datatype in ("BYTES", "INT64", "INT32") else "INT64"
    wrong_array = np.zeros(valid.shape, dtype=numpy_dtype(wrong))
    add("wrong_dtype", f"{first.name!r} sent as {wrong} instead of {first.datatype}",
        RawRequest(model=name, inputs=_replace(target, raw_tensor(first, wrong_array,
                                                                  datatype=wrong))),
        (rf"data-type.*{first.datatype}|{first.datatype}.*{wrong}|expected.*{first.datatype}",
         r"datatype|data type|dtype"))
    add("unknown_datatype", f"{first.name!r} with the made-up datatype FP7",
        RawRequest(model=name, inputs=_replace(target, raw_tensor(first, valid,
                                                                  datatype="FP7"))),
        (r"FP7", r"invalid datatype|data-?type"))
    extra_rank = (*valid.shape, 1)
    add("wrong_rank_extra_dim", f"{first.name!r} with one dim too many {list(extra_rank)}",
        RawRequest(model=name, inputs=_replace(target, raw_tensor(
            first, valid.reshape(extra_rank)))),
        (r"unexpected shape", r"shape"))
    fewer = valid.reshape(valid.shape[:-1]) if valid.shape[-1] == 1 else valid.reshape(-1)
    add("wrong_rank_missing_dim", f"{first.name!r} with a dim missing {list(fewer.shape)}",
        RawRequest(model=name, inputs=_replace(target, raw_tensor(first, fewer))),
        # Without a dim, Triton reads the next one as the batch axis: it names the batch size.
        (r"unexpected shape", r"shape", r"batch.?size"))
    zero_shape = (*valid.shape[:-1], 0)
    # A 0 on a variable (-1) axis passes Triton's shape check; on the ONNX Runtime backend the
    # model itself then fails in its first op that needs data (HTTP 500, ORT's own message).
    add("zero_dim", f"{first.name!r} with a 0 dim {list(zero_shape)}",
        RawRequest(model=name, inputs=_replace(target, raw_tensor(
            first, valid, shape=zero_shape, data=b""))),
        (r"unexpected shape", r"shape", r"byte size|element count",
         *(() if target.python_backend or target.ensemble or first.dims[-1:] != (-1,)
           else (r"onnx runtime error \d+: Non-zero status code returned while running",))))
    negative = (*valid.shape[:-1], -1)
    add("negative_dim", f"{first.name!r} with -1 in the request shape {list(negative)}",
        RawRequest(model=name, inputs=_replace(target, raw_tensor(first, valid, shape=negative))),
        (r"unexpected shape", r"shape", r"-1", r"negative"))
    if target.batched:
        add("zero_batch", f"{first.name!r} with batch size 0",
            RawRequest(model=name, inputs=tuple(
                raw_tensor(t, valid_array(t, 1), shape=(0, *t.concrete_dims()), data=b"")
                for t in target.inputs)),
            (r"batch.?size", r"shape", r"byte size mismatch", r"expected \d+ string elements"))
        over = target.max_batch_size + 1
        add("batch_above_max", f"{over} rows, above max_batch_size {target.max_batch_size}",
            valid_request(target, over),
            (rf"batch.?size must be <= {target.max_batch_size}", r"batch.?size"))
    doubled = (rows * 2, *valid.shape[1:]) if target.batched else (valid.shape[0] * 2,
                                                                   *valid.shape[1:])
    add("data_shorter_than_shape", f"{first.name!r} claims {list(doubled)} but carries "
        f"{list(valid.shape)}",
        RawRequest(model=name, inputs=_replace(target, raw_tensor(first, valid, shape=doubled))),
        (r"expected \d+ (?:string elements|bytes)|unexpected (?:total )?byte size|"
         r"unexpected number of string elements|byte size|element count|batch size",))
    add("oversized_body", f"a {OVERSIZED_BODY_BYTES // 2**20} MiB request body",
        _oversized(target, first),
        (r"batch.?size must be <=", rf"above the limit of {DEFAULT_MAX_ELEMENT_BYTES}",
         r"too large|exceeds|limit"),
        Origin.STEP if first.datatype == "BYTES" and not target.batched else Origin.CORE)
    return [BadInputCase(case=c, model=name, description=d, request=r, expect=e, origin=o)
            for c, d, r, e, o in cases]


def _oversized(target: ModelTarget, tensor: TensorInfo) -> RawRequest:
    if tensor.datatype == "BYTES":  # one element above the per-element limit
        return with_element(target, tensor, b"\x00" * (DEFAULT_MAX_ELEMENT_BYTES + 1024))
    row_bytes = max(1, math.prod(tensor.concrete_dims()) * numpy_dtype(tensor.datatype).itemsize)
    rows = max(target.max_batch_size + 1, OVERSIZED_BODY_BYTES // row_bytes)
    return RawRequest(model=target.name, inputs=valid_tensors(target, rows))


# ------------------------------------------------------------------ by input kind

def _float_cases(target: ModelTarget, tensor: TensorInfo) -> list[BadInputCase]:
    cases = []
    for case, value, words in (("nan", math.nan, r"NaN"), ("positive_inf", math.inf, r"Inf"),
                               ("negative_inf", -math.inf, r"Inf")):
        array = valid_array(tensor, _rows(target))
        array.reshape(-1)[-1] = value
        cases.append(BadInputCase(
            case=case, model=target.name, description=f"{tensor.name!r} holds {value}",
            request=RawRequest(model=target.name,
                               inputs=_replace(target, raw_tensor(tensor, array))),
            expect=(rf"'{tensor.name}' contains {words}",), origin=Origin.STEP))
    return cases


def _bytes_cases(target: ModelTarget, tensor: TensorInfo) -> list[BadInputCase]:
    array = valid_array(tensor, _rows(target))
    data = raw_bytes(array)
    claims_more = struct.pack("<I", len(data) + 1000) + data[4:]
    return [
        BadInputCase(
            case="bytes_length_prefix_too_long", model=target.name,
            description=f"{tensor.name!r} element claims {len(data) + 1000} bytes",
            request=RawRequest(model=target.name, inputs=_replace(
                target, raw_tensor(tensor, array, data=claims_more))),
            expect=(r"string elements|byte size|element|length",), origin=Origin.CORE),
        BadInputCase(
            case="bytes_length_prefix_truncated", model=target.name,
            description=f"{tensor.name!r} raw data ends inside a 4-byte length prefix",
            request=RawRequest(model=target.name, inputs=_replace(
                target, raw_tensor(tensor, array, data=data[:2]))),
            expect=(r"string elements|byte size|element|length",), origin=Origin.CORE),
        BadInputCase(
            case="bytes_extra_element", model=target.name,
            description=f"{tensor.name!r} raw data holds one element more than its shape",
            request=RawRequest(model=target.name, inputs=_replace(
                target, raw_tensor(tensor, array, data=data + data))),
            expect=(r"string elements|byte size|element|length",), origin=Origin.CORE),
    ]


_IMAGE_EXPECT: dict[str, tuple[str, ...]] = {
    "image_empty": (r"image is empty",),
    "image_truncated_png": (r"PNG .*truncated or corrupt",),
    "image_corrupt_png": (r"PNG .*(truncated or corrupt|crc|broken|decompress)",),
    "image_huge_header": (r"20000x20000|above the limit|decompression bomb",),
    "image_decompression_bomb": (r"6000x6000|above the limit|decompression bomb",),
    "image_zero_size_header": (r"empty dimensions|truncated or corrupt",),
    "image_truncated_jpeg": (r"JPEG .*truncated or corrupt",),
    "image_unsupported_gif": (r"unsupported image format GIF",),
    "image_unsupported_bmp": (r"unsupported image format BMP",),
    "image_unsupported_webp": (r"unsupported image format WEBP",),
    "image_random_bytes": (r"unrecognized image data",),
    "image_text_instead": (r"unrecognized image data",),
}


def _image_cases(target: ModelTarget, tensor: TensorInfo) -> list[BadInputCase]:
    return [BadInputCase(case=case, model=target.name,
                         description=f"{tensor.name!r}: {case.removeprefix('image_')}",
                         request=with_element(target, tensor, blob),
                         expect=_IMAGE_EXPECT[case], origin=Origin.STEP)
            for case, blob in broken_images().items()]


def _text_cases(target: ModelTarget, tensor: TensorInfo) -> list[BadInputCase]:
    blobs = {"text_invalid_utf8": b"caf\xe9 \xff\xfe", "text_utf16_surrogate": b"\xed\xa0\x80x"}
    return [BadInputCase(case=case, model=target.name,
                         description=f"{tensor.name!r}: {case.removeprefix('text_')}",
                         request=with_element(target, tensor, blob),
                         expect=(r"not valid UTF-8", r"utf-?8"), origin=Origin.STEP)
            for case, blob in blobs.items()]


_BY_KIND: dict[InputKind, tuple[Callable[[ModelTarget, TensorInfo], list[BadInputCase]], ...]] = {
    InputKind.FLOAT: (_float_cases,),
    InputKind.IMAGE: (_bytes_cases, _image_cases),
    InputKind.TEXT: (_bytes_cases, _text_cases),
    InputKind.BYTES: (_bytes_cases,),
}


def cases_for(target: ModelTarget) -> list[BadInputCase]:
    """Every case for one model: the generic ones and those of its inputs' kinds. Non-finite
    floats are bad input only for the Python steps, which refuse them; a model on Triton's
    ONNX Runtime (or TensorRT) backend computes on them as IEEE arithmetic does, as in any
    deployment (Triton does not screen tensor values)."""
    cases = _generic(target) if target.inputs else []
    for tensor in target.inputs:
        for make in _BY_KIND.get(tensor.kind, ()):
            if make is _float_cases and not target.python_backend:
                continue
            cases.extend(make(target, tensor))
    return cases


def corpus(targets: tuple[ModelTarget, ...]) -> list[BadInputCase]:
    return [case for target in targets for case in cases_for(target)]
