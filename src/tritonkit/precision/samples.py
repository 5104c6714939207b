"""Sample sets (`.npz` keyed by model input name) for calibration, accuracy holdout and warmup.

Every sample file is a NumPy `.npz` archive: one array per model input, rows along the leading
(batch) axis, already preprocessed exactly like serving traffic. Files are read with
`allow_pickle=False`, so an archive can never execute code. Extra keys (labels, for example) are
ignored; only the requested input names are returned.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper

from tritonkit.errors import PrecisionError

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64


class SamplePurpose(str, Enum):
    """What a sample file is for; only used to make error messages say which file failed."""

    CALIBRATION = "calibration"
    HOLDOUT = "holdout"
    WARMUP = "warmup"


@dataclass(frozen=True, kw_only=True)
class ModelInput:
    """One graph input of an ONNX model: name, numpy dtype and shape (str/None = symbolic)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]

    @property
    def fixed_batch(self) -> int | None:
        """The leading dim when the model fixes it (e.g. 1), None when it is symbolic."""
        if self.shape and isinstance(self.shape[0], int):
            return self.shape[0]
        return None


def _purpose_label(purpose: SamplePurpose | str) -> str:
    return purpose.value if isinstance(purpose, SamplePurpose) else str(purpose)


def read_model_inputs(model_path: Path) -> tuple[ModelInput, ...]:
    """The real graph inputs of an ONNX model (initializers listed as inputs are skipped)."""
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except (OSError, ValueError, DecodeError) as e:
        raise PrecisionError(f"{model_path}: cannot read the ONNX model: {e}") from e
    initializers = {t.name for t in model.graph.initializer}
    inputs: list[ModelInput] = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            raise PrecisionError(f"{model_path}: input {value.name!r} is not a tensor")
        dims: list[int | str | None] = []
        for d in tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
        inputs.append(ModelInput(
            name=value.name,
            dtype=np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)),
            shape=tuple(dims),
        ))
    return tuple(inputs)


def load_samples(
    path: Path, input_names: Sequence[str], *, purpose: SamplePurpose | str,
) -> dict[str, np.ndarray]:
    """Read `path` (.npz) and return one array per name in `input_names`, in that order.

    Raises PrecisionError naming the file and the purpose when the file is missing or not an
    .npz, a name is missing, an array is a scalar or holds Python objects, or the arrays do not
    share one leading (batch) length >= 1.
    """
    label = _purpose_label(purpose)
    where = f"{label} samples {path}"
    if not input_names:
        raise PrecisionError(f"{where}: no input names were requested")
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError as e:
        raise PrecisionError(f"{where}: file not found") from e
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise PrecisionError(f"{where}: is not a NumPy .npz archive ({e})") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise PrecisionError(f"{where}: holds a single array (.npy), not an .npz archive keyed "
                             f"by input name; save it with np.savez(path, {input_names[0]}=...)")
    with archive:
        present = sorted(archive.files)
        missing = [n for n in input_names if n not in archive.files]
        if missing:
            raise PrecisionError(f"{where}: missing key(s) {missing}; the archive has {present} "
                                 f"but the model needs {list(input_names)}")
        samples: dict[str, np.ndarray] = {}
        for name in input_names:
            try:
                array = archive[name]
            except (ValueError, OSError, zipfile.BadZipFile) as e:
                raise PrecisionError(f"{where}: array {name!r} cannot be read without pickle "
                                     f"(object arrays are refused): {e}") from e
            if array.ndim == 0:
                raise PrecisionError(f"{where}: array {name!r} is a scalar; it needs a leading "
                                     "batch axis")
            samples[name] = array
    rows = {name: int(a.shape[0]) for name, a in samples.items()}
    if len(set(rows.values())) != 1:
        raise PrecisionError(f"{where}: arrays disagree on the leading (batch) length: {rows}")
    if next(iter(rows.values())) < 1:
        raise PrecisionError(f"{where}: holds 0 samples; it needs at least 1 row")
    log.debug("loaded %d %s samples from %s", next(iter(rows.values())), label, path)
    return samples


def sample_count(samples: Mapping[str, np.ndarray]) -> int:
    """The shared leading length of `samples` (PrecisionError if they disagree or are empty)."""
    if not samples:
        raise PrecisionError("no sample arrays were given")
    rows = {name: int(np.shape(a)[0]) if np.ndim(a) else 0 for name, a in samples.items()}
    if len(set(rows.values())) != 1:
        raise PrecisionError(f"sample arrays disagree on the leading (batch) length: {rows}")
    return next(iter(rows.values()))


def iter_batches(
    samples: Mapping[str, np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield consecutive row slices of every array (views, not copies); the last may be short."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = sample_count(samples)
    for start in range(0, total, batch_size):
        yield {name: a[start:start + batch_size] for name, a in samples.items()}


def conform_samples(
    samples: Mapping[str, np.ndarray], inputs: Sequence[ModelInput], *, model: str,
    purpose: SamplePurpose | str,
) -> dict[str, np.ndarray]:
    """Check `samples` against a model's inputs; return them keyed and ordered like the model.

    Names must all be present, dtypes must match exactly (no silent casts: feeding float64 where
    serving sends float32 would calibrate or gate on different data), and non-batch dims that the
    model fixes must match.
    """
    label = _purpose_label(purpose)
    missing = [i.name for i in inputs if i.name not in samples]
    if missing:
        raise PrecisionError(f"{model}: {label} samples lack input(s) {missing} "
                             f"(got {sorted(samples)})")
    out: dict[str, np.ndarray] = {}
    for i in inputs:
        array = np.asarray(samples[i.name])
        if array.dtype != i.dtype:
            raise PrecisionError(f"{model}: {label} samples for input {i.name!r} are "
                                 f"{array.dtype}, the model expects {i.dtype}; preprocess them "
                                 "exactly like serving traffic")
        if i.shape and array.ndim != len(i.shape):
            raise PrecisionError(f"{model}: {label} samples for input {i.name!r} have shape "
                                 f"{array.shape}, the model expects rank {len(i.shape)} "
                                 f"{list(i.shape)}")
        for axis, dim in enumerate(i.shape[1:], start=1):
            if isinstance(dim, int) and array.shape[axis] != dim:
                raise PrecisionError(f"{model}: {label} samples for input {i.name!r} have shape "
                                     f"{array.shape}, the model expects {list(i.shape)}")
        out[i.name] = array
    sample_count(out)
    return out


def batch_size_for(inputs: Sequence[ModelInput], total: int, *, model: str) -> int:
    """The batch size to run a model with: its fixed leading dim if it has one, else 64."""
    fixed = {i.fixed_batch for i in inputs if i.fixed_batch is not None}
    if not fixed:
        return DEFAULT_BATCH_SIZE
    if len(fixed) > 1:
        raise PrecisionError(f"{model}: inputs fix different leading dims {sorted(fixed)}")
    size = fixed.pop()
    if total % size:
        raise PrecisionError(f"{model}: the model fixes its leading dim to {size}, but the "
                             f"samples hold {total} rows (not a multiple of {size})")
    return size
