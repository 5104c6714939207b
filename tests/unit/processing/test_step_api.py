from __future__ import annotations

import numpy as np
import pytest

from processing.step_api import (
    StepInputError,
    decode_utf8,
    element_size_problem,
    non_finite_problem,
)


def test_non_finite_names_kind_and_rows() -> None:
    x = np.zeros((3, 2), np.float32)
    assert non_finite_problem("X", x) is None
    x[1, 0], x[2, 1] = np.nan, np.inf
    assert non_finite_problem("X", x) == (
        "input 'X' contains NaN and Inf in row(s) 1, 2; only finite values are accepted")
    assert non_finite_problem("I", np.ones(3, np.int32)) is None


def test_element_size_limit() -> None:
    array = np.array([[b"ab"], [b"x" * 10]], dtype=object)
    assert element_size_problem("IMAGE", array, 10) is None
    assert "element 1 is 10 bytes, above the limit of 9" in str(
        element_size_problem("IMAGE", array, 9))


def test_decode_utf8() -> None:
    assert decode_utf8("TEXT", np.array([b"caf\xc3\xa9"], dtype=object)) == ["café"]
    with pytest.raises(StepInputError, match="element 1 is not valid UTF-8"):
        decode_utf8("TEXT", np.array([b"ok", b"\xff"], dtype=object))
