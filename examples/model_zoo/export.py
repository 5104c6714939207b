"""Shared export helpers: torch -> ONNX (deterministic, dynamic batch), proof of the dynamic
batch axis with ONNX Runtime, and byte-for-byte reproducible .npz files."""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import PIL
import torch

from examples.model_zoo import ModelZooError
from examples.model_zoo.stamp import write_atomic
from tritonkit.processing import images

log = logging.getLogger(__name__)

OPSET = 17
BATCH_AXIS = "batch"
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def with_probabilities(model: torch.nn.Module) -> torch.nn.Module:
    """`model` followed by a softmax over classes: the served classifier outputs probabilities,
    so Triton's classification extension answers top-k with probabilities as scores."""
    return torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval()


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    input_name: str,
    output_name: str,
    opset: int = OPSET,
) -> bytes:
    """Export `model` with a dynamic batch axis (axis 0 of input and output), check, write.

    Uses the TorchScript exporter (`dynamo=False`): the dynamo exporter needs onnxscript,
    which the project does not depend on, and this path gives identical bytes run after run.
    """
    model.eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=r".*(legacy TorchScript-based ONNX export|"
                                        r"feature will be removed).*")
        torch.onnx.export(
            model, (example,), buffer,  # type: ignore[arg-type]
            dynamo=False,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: BATCH_AXIS}, output_name: {0: BATCH_AXIS}},
            opset_version=opset,
            do_constant_folding=True,
        )
    data = buffer.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelZooError(f"exported ONNX model fails the checker: {e}") from e
    write_atomic(path, data)
    log.info("exported %s (%d bytes, opset %d)", path, len(data), opset)
    return data


def verify_dynamic_batch(
    path: Path, sample: np.ndarray, *, batch_sizes: Sequence[int] = (1, 2, 7, 64),
) -> None:
    """Run the model at several batch sizes; each must agree with one run over all rows.

    Catches a batch size baked into Reshape constants, which a declared symbolic axis hides.
    """
    rows = max(batch_sizes)
    repeats = -(-rows // len(sample))
    data = np.concatenate([sample] * repeats)[:rows]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    try:
        full = session.run(None, {input_name: data})[0]
        for size in batch_sizes:
            part = session.run(None, {input_name: data[:size]})[0]
            if part.shape[0] != size or not np.allclose(part, full[:size], atol=1e-5):
                raise ModelZooError(f"{path}: batch {size} gives outputs {part.shape} that do "
                                    "not match the full batch; the batch axis is not dynamic")
    except ModelZooError:
        raise
    except Exception as e:  # ORT raises its own pybind exception types
        raise ModelZooError(f"{path}: ONNX Runtime failed at a batch size in "
                            f"{list(batch_sizes)}: {e}") from e
    log.info("%s: dynamic batch verified at sizes %s", path, list(batch_sizes))


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz archive (readable by np.load) without timestamps: same arrays, same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]),
                                          allow_pickle=False)
    return buffer.getvalue()


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    write_atomic(path, npz_bytes(arrays))


@contextlib.contextmanager
def deterministic_torch(seed: int, *, threads: int = 1) -> Iterator[torch.Generator]:
    """Seeded, deterministic torch on a fixed number of threads; restores the old settings.

    Yields a generator seeded with `seed` for data shuffling.
    """
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.set_num_threads(previous_threads)


def tool_versions(**extra: str) -> dict[str, str]:
    """Versions of the tools an exported model depends on (plus `extra` ones)."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        **extra,
        "pillow": PIL.__version__,
    }


def serving_pixels(blobs: Sequence[bytes], *, height: int, width: int, channels: int,
                   mean: float | tuple[float, ...], std: float | tuple[float, ...],
                   what: str) -> np.ndarray:
    """The serving preprocessing of encoded images; raises ModelZooError naming bad rows."""
    pixels, errors = images.preprocess_images(
        blobs, height=height, width=width, channels=channels, mean=mean, std=std)
    if errors:
        raise ModelZooError(f"{len(errors)} {what} images failed to preprocess: "
                            f"{dict(list(errors.items())[:3])}")
    return pixels
