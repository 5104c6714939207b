"""examples.model_zoo.espcn and .super_resolution: the network factory (shapes, torch.export
with dynamic axes), its bicubic start, the data split and the holdout tiles. No training here."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.export import Dim

from examples.model_zoo import ModelZooError
from examples.model_zoo import super_resolution as zoo
from examples.model_zoo.espcn import espcn_x2
from tritonkit.processing import super_resolution as sr


def test_factory_upscales_by_two_at_any_size() -> None:
    model = espcn_x2().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 5, 7))
        assert out.shape == (1, 1, 10, 14) and out.dtype == torch.float32
        assert model(torch.rand(3, 1, 1, 1)).shape == (3, 1, 2, 2)
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_factory_exports_with_dynamic_batch_height_and_width() -> None:
    model = espcn_x2().eval()
    x = torch.rand(2, 1, 6, 9)
    program = torch.export.export(
        model, (x,), dynamic_shapes={"x": {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")}})
    other = torch.rand(3, 1, 11, 4)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(other), model(other))


def test_factory_state_dict_round_trips_through_the_weights_format() -> None:
    trained = espcn_x2()
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.01)
    data = zoo.state_dict_bytes(trained)
    assert zoo.state_dict_bytes(trained) == data  # reproducible bytes
    fresh = espcn_x2()
    fresh.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained(x))


def test_untrained_network_is_the_bicubic_upscale_inside_the_border() -> None:
    rng = np.random.default_rng(0)
    low = np.clip(rng.normal(128, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
    with torch.no_grad():
        y = espcn_x2()(torch.from_numpy(sr.luma(low)[None, None] / 255.0).float())
    bicubic = sr.luma(sr.bicubic_upscale(low)).astype(np.float32) / 255
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(y.numpy()[0, 0][inner] - bicubic[inner]).max() < 3 / 255


def test_holdout_images_are_never_trained_on_and_both_sources_are_held_out() -> None:
    held = {name for _, name in zoo.HOLDOUT}
    assert not held & set(zoo.SKIMAGE_TRAIN + zoo.SKLEARN_TRAIN)
    assert {source for source, _ in zoo.HOLDOUT} == {"skimage", "sklearn"}


def test_holdout_paths_are_one_png_per_held_out_image(tmp_path: Path) -> None:
    paths = zoo.holdout_paths(tmp_path)
    assert [p.stem for p in paths] == [name for _, name in zoo.HOLDOUT]
    assert all(p.parent == tmp_path / zoo.HOLDOUT_DIR for p in paths)


def test_holdout_tiles_pair_low_and_high_resolution() -> None:
    hr = sr.crop_to_multiple(np.asarray(zoo.center_crop(zoo.load_photo("skimage", "coffee"),
                                                        zoo.HOLDOUT_SIZE)))
    tiles = zoo.holdout_tiles({"coffee": hr})
    low, target = tiles[zoo.LOW_RES_KEY], tiles[zoo.TARGET_KEY]
    side = zoo.HOLDOUT_TILE
    assert low.shape == (4, 1, side, side) and target.shape == (4, 1, 2 * side, 2 * side)
    assert low.dtype == target.dtype == np.float32
    assert 0.0 <= low.min() and target.max() <= 1.0
    # the target tile, downscaled, is close to its low-resolution tile (same place)
    assert float(np.abs(target[1, 0, ::2, ::2] - low[1, 0]).mean()) < 0.05


def test_offline_photographs_load() -> None:
    for source, name in [*(("skimage", n) for n in zoo.SKIMAGE_TRAIN),
                         *(("sklearn", n) for n in zoo.SKLEARN_TRAIN), *zoo.HOLDOUT]:
        image = zoo.load_photo(source, name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[0] % 2 == 0 and image.shape[1] % 2 == 0


def test_unknown_images_are_refused() -> None:
    with pytest.raises(ModelZooError, match="no_such_image"):
        zoo.load_photo("skimage", "no_such_image")
    with pytest.raises(ModelZooError, match="no_such_image"):
        zoo.load_photo("sklearn", "no_such_image")
