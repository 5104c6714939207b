"""tritonkit_client.upscale: response parsing and where the CLI writes results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tritonkit_client import InvalidInputError, ServerError
from tritonkit_client.cli import upscaled_paths
from tritonkit_client.upscale import parse_upscaled


def _outputs(png: object, size: list[int]) -> dict[str, np.ndarray]:
    image = np.empty((1, 1), dtype=np.object_)
    image[0, 0] = png
    return {"PNG": image, "SIZE": np.asarray([size], dtype=np.int32)}


def test_parse_upscaled_reads_png_and_size() -> None:
    result = parse_upscaled(_outputs(b"\x89PNG...", [20, 30]))
    assert (result.png, result.height, result.width) == (b"\x89PNG...", 20, 30)


@pytest.mark.parametrize(("outputs", "match"), [
    ({"PNG": np.empty((1, 1), dtype=np.object_)}, "did not return output 'SIZE'"),
    (_outputs(b"png", [1, 2, 3]), "unexpected super-resolution output shapes"),
    (_outputs(b"", [2, 2]), "empty image"),
])
def test_parse_upscaled_rejects_malformed_responses(outputs: dict[str, np.ndarray],
                                                    match: str) -> None:
    with pytest.raises(ServerError, match=match):
        parse_upscaled(outputs)


def test_upscaled_paths_file_for_one_image_directory_for_several(tmp_path: Path) -> None:
    assert upscaled_paths([Path("a.jpg")], tmp_path / "out.png") == [tmp_path / "out.png"]
    assert upscaled_paths([Path("x/a.jpg"), Path("b.png")], tmp_path) == [
        tmp_path / "a.upscaled.png", tmp_path / "b.upscaled.png"]
    assert upscaled_paths([Path("a.jpg")], tmp_path) == [tmp_path / "a.upscaled.png"]
    with pytest.raises(InvalidInputError, match="share a file name stem"):
        upscaled_paths([Path("x/a.jpg"), Path("y/a.png")], tmp_path)
