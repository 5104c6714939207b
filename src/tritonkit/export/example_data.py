"""Seeded example data for a PyTorch source's inputs: at the example shapes, or with the axes
of one dimension name resized (a probe). Floats are uniform in [0, 1), integers in
[0, high) (high 2 unless the spec gives one), booleans 0/1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tritonkit.spec import DataType, ExampleInput

NUMPY_TYPES: dict[DataType, type[np.generic]] = {
    DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT8: np.int8,
    DataType.INT32: np.int32, DataType.INT64: np.int64, DataType.FP16: np.float16,
    DataType.FP32: np.float32, DataType.FP64: np.float64,
}
DEFAULT_HIGH = 2


def shape_with(tensor: ExampleInput, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """The example shape with every axis whose name is in `sizes` set to that size."""
    return tuple(sizes.get(tensor.dynamic_axes[axis].name, size)
                 if axis in tensor.dynamic_axes else size
                 for axis, size in enumerate(tensor.shape))


def example_arrays(inputs: Sequence[ExampleInput], sizes: Mapping[str, int] | None = None,
                   *, seed: int = 0) -> dict[str, np.ndarray]:
    """Input name -> seeded data at the example shape (with `sizes`' named axes resized)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for tensor in inputs:
        shape = shape_with(tensor, sizes or {})
        dtype = NUMPY_TYPES[tensor.dtype]
        if tensor.dtype in (DataType.FP16, DataType.FP32, DataType.FP64):
            data = rng.random(shape, dtype=np.float64).astype(dtype)
        else:
            high = 2 if tensor.dtype is DataType.BOOL else tensor.high or DEFAULT_HIGH
            data = rng.integers(0, high, shape, dtype=np.int64).astype(dtype)
        arrays[tensor.name] = data
    return arrays


def tiled_rows(arrays: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Each array's rows (axis 0) repeated to `rows` rows: row i is row i % len(array)."""
    return {name: np.take(a, np.arange(rows) % a.shape[0], axis=0)
            for name, a in arrays.items()}
