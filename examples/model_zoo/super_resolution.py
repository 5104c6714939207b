"""The super-resolution example: a small ESPCN-style x2 network on the luma, trained on real
photographs.

Data: scikit-image's bundled sample photographs (only those inside the wheel: nothing is
downloaded) and scikit-learn's two sample images. Whole images are held out (`HOLDOUT`, one
or more from each source) and never trained on. Degradation: HR = the image cropped to even
size, LR = PIL bicubic (antialiased) downscale by 2 of the RGB image; the network sees Y of
PIL's YCbCr in [0, 1] and is trained on random LR/HR patch pairs (flips, transposes) with Adam.

The held-out figures go through the serving functions (tritonkit.processing.super_resolution):
LR PNG -> decode_ycbcr -> network -> encode_upscaled -> PSNR on Y (2 px border crop) against
the HR image, next to the PIL bicubic baseline. The build fails (ModelZooError) unless the mean
gain over bicubic is at least MIN_PSNR_GAIN_DB. Seeded and deterministic; a matching stamp
skips the rebuild.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import skimage.data
import sklearn
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torch import nn

from examples import model_zoo
from examples.model_zoo import ModelZooError, espcn, export, stamp
from examples.model_zoo.espcn import espcn_x2
from examples.model_zoo.export import deterministic_torch, write_npz
from examples.model_zoo.stamp import (
    STAMP_FILE,
    is_up_to_date,
    make_stamp,
    write_atomic,
    write_stamp,
)
from tritonkit.processing import images as processing_images
from tritonkit.processing import super_resolution as sr

log = logging.getLogger(__name__)

SEED = 20250117
SCALE = sr.SCALE
MIN_PSNR_GAIN_DB = 1.0

WEIGHTS_FILE = "espcn_x2.pt"
HOLDOUT_FILE = "holdout.npz"
HOLDOUT_DIR = "holdout"
METRICS_FILE = "metrics.json"
LOW_RES_KEY = "low_res"  # holdout.npz: LR luma tiles [N, 1, h, w] float32 in [0, 1]
TARGET_KEY = "target"  # holdout.npz: HR luma tiles [N, 1, 2h, 2w] float32 in [0, 1]

# Real photographs that load offline from the installed wheels (no pooch download).
SKIMAGE_TRAIN = ("camera", "chelsea", "coins", "page", "text", "rocket",
                 "hubble_deep_field", "immunohistochemistry", "grass", "gravel", "brick")
SKLEARN_TRAIN = ("china",)
TRAIN = (*(("skimage", n) for n in SKIMAGE_TRAIN), *(("sklearn", n) for n in SKLEARN_TRAIN))
HOLDOUT = (("skimage", "astronaut"), ("skimage", "coffee"), ("sklearn", "flower"))
HOLDOUT_SIZE = 256  # HR center crop (pixels a side) of each held-out image
HOLDOUT_TILE = 64  # LR tile size (pixels a side) in holdout.npz


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    steps: int = 500
    batch_size: int = 16
    patch: int = 48  # LR patch size; HR patches are SCALE times larger
    learning_rate: float = 3e-3
    threads: int = 2
    seed: int = SEED


@dataclass(frozen=True, kw_only=True)
class SuperResolutionArtifacts:
    """Where the build wrote its files, the held-out PSNR figures, and whether it was cached."""

    directory: Path
    weights: Path
    holdout: Path
    holdout_images: tuple[Path, ...]
    metrics: Path
    stamp: Path
    psnr_model: float  # mean over held-out images, dB
    psnr_bicubic: float
    train_seconds: float
    cached: bool


# --- data ---------------------------------------------------------------------------------


def _skimage_rgb(name: str) -> np.ndarray:
    loader: Callable[[], np.ndarray] = getattr(skimage.data, name)
    image = np.asarray(loader())
    if image.dtype != np.uint8:
        raise ModelZooError(f"skimage.data.{name}() is {image.dtype}, expected uint8")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


@functools.cache
def _sklearn_images() -> dict[str, np.ndarray]:
    bundle = load_sample_images()  # decodes every bundled JPEG
    return {Path(path).stem: image
            for path, image in zip(bundle.filenames, bundle.images, strict=True)}


def _sklearn_rgb(name: str) -> np.ndarray:
    images = _sklearn_images()
    if name not in images:
        raise ModelZooError(f"scikit-learn has no sample image {name!r}")
    return np.ascontiguousarray(images[name])


def load_photo(source: str, name: str) -> np.ndarray:
    """A sample photograph as uint8 RGB [H, W, 3] cropped to even size (the HR image)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rgb = _skimage_rgb(name) if source == "skimage" else _sklearn_rgb(name)
    except (ImportError, OSError, ValueError, AttributeError) as e:  # e.g. needs a download
        raise ModelZooError(f"{source} sample image {name!r} does not load offline: {e}") from e
    return sr.crop_to_multiple(rgb, SCALE)


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    height, width = (min(size, rgb.shape[0]) // SCALE * SCALE,
                     min(size, rgb.shape[1]) // SCALE * SCALE)
    top, left = (rgb.shape[0] - height) // 2, (rgb.shape[1] - width) // 2
    return np.ascontiguousarray(rgb[top:top + height, left:left + width])


def luma_pair(hr_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(LR Y, HR Y) float32 in [0, 1] of an even-sized HR image."""
    scale = np.float32(1.0 / 255.0)
    return (sr.luma(sr.downscale(hr_rgb, SCALE)).astype(np.float32) * scale,
            sr.luma(hr_rgb).astype(np.float32) * scale)


def training_pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(LR Y, HR Y) of every training photograph; never a held-out one."""
    pairs = []
    for source, name in TRAIN:
        low, high = luma_pair(load_photo(source, name))
        pairs.append((torch.from_numpy(low), torch.from_numpy(high)))
    return pairs


def _batch(pairs: list[tuple[torch.Tensor, torch.Tensor]], config: TrainingConfig,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    p, hp = config.patch, config.patch * SCALE
    picks = torch.randint(len(pairs), (config.batch_size,), generator=generator).tolist()
    lows, highs = [], []
    for index in picks:
        low, high = pairs[index]
        top = int(torch.randint(low.shape[0] - p + 1, (1,), generator=generator))
        left = int(torch.randint(low.shape[1] - p + 1, (1,), generator=generator))
        lows.append(low[top:top + p, left:left + p])
        highs.append(high[top * SCALE:top * SCALE + hp, left * SCALE:left * SCALE + hp])
    x, y = torch.stack(lows)[:, None], torch.stack(highs)[:, None]
    flips = torch.randint(2, (3,), generator=generator).tolist()
    if flips[0]:
        x, y = x.flip(-1), y.flip(-1)
    if flips[1]:
        x, y = x.flip(-2), y.flip(-2)
    if flips[2]:
        x, y = x.transpose(-1, -2), y.transpose(-1, -2)
    return x.contiguous(), y.contiguous()


def train(pairs: list[tuple[torch.Tensor, torch.Tensor]], config: TrainingConfig) -> nn.Module:
    """Adam on the MSE, cosine-decayed learning rate; seeded and deterministic."""
    with deterministic_torch(config.seed, threads=config.threads) as generator:
        model = espcn_x2()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.learning_rate, total_steps=config.steps, pct_start=0.1)
        model.train()
        running = 0.0
        for step in range(config.steps):
            x, y = _batch(pairs, config, generator)
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            value = float(loss.detach())
            running = 0.98 * running + 0.02 * value if step else value
            if (step + 1) % 250 == 0:
                log.debug("step %d/%d: loss %.6f", step + 1, config.steps, running)
        model.eval()
    return model


# --- evaluation ---------------------------------------------------------------------------


def upscale_served(model: nn.Module, low_res_png: bytes, *, max_height: int,
                   max_width: int) -> np.ndarray:
    """The served pipeline in process: LR PNG -> decode_ycbcr (with the step's size bound)
    -> model -> encode_upscaled -> uint8 RGB at twice the size."""
    luma_lr, chroma, errors = sr.decode_ycbcr([low_res_png], max_height=max_height,
                                              max_width=max_width)
    if errors:
        raise ModelZooError(f"the served decode refused a held-out image: {errors}")
    with torch.no_grad():
        upscaled = model(torch.from_numpy(luma_lr)).numpy()
    encoded, _, errors = sr.encode_upscaled(upscaled, chroma)
    if errors:
        raise ModelZooError(f"the served encode failed on a held-out image: {errors}")
    return np.asarray(Image.open(io.BytesIO(encoded[0, 0])).convert("RGB"))


def evaluate(model: nn.Module, holdout: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """PSNR on Y (border crop) of the model and of bicubic, per held-out HR image."""
    figures = {}
    for name, hr in holdout.items():
        low = sr.downscale(hr, SCALE)
        served = upscale_served(model, sr.encode_png(low), max_height=low.shape[0],
                                max_width=low.shape[1])
        model_psnr = sr.psnr_y(served, hr)
        baseline = sr.bicubic_upscale(low, SCALE)
        bicubic_psnr = sr.psnr_y(baseline, hr)
        figures[name] = {"model_psnr": round(model_psnr, 4),
                         "bicubic_psnr": round(bicubic_psnr, 4),
                         "gain": round(model_psnr - bicubic_psnr, 4)}
        log.info("super-resolution: %s: model %.2f dB, bicubic %.2f dB (%+.2f dB)", name,
                 model_psnr, bicubic_psnr, model_psnr - bicubic_psnr)
    return figures


def holdout_tiles(holdout: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """LR/HR luma tiles of the held-out images, all HOLDOUT_TILE (LR) a side."""
    t, ht = HOLDOUT_TILE, HOLDOUT_TILE * SCALE
    lows, highs = [], []
    for hr in holdout.values():
        low, high = luma_pair(hr)
        for top in range(0, low.shape[0] - t + 1, t):
            for left in range(0, low.shape[1] - t + 1, t):
                lows.append(low[top:top + t, left:left + t])
                highs.append(high[top * SCALE:top * SCALE + ht, left * SCALE:left * SCALE + ht])
    return {LOW_RES_KEY: np.stack(lows)[:, None], TARGET_KEY: np.stack(highs)[:, None]}


# --- build --------------------------------------------------------------------------------


def tool_versions() -> dict[str, str]:
    return export.tool_versions(**{"scikit-image": version("scikit-image"),
                                   "scikit-learn": sklearn.__version__})


def build_stamp(config: TrainingConfig) -> stamp.Stamp:
    """Everything the artifacts depend on: these sources, tool versions, seed, settings."""
    settings = {f"version.{k}": v for k, v in tool_versions().items() if k != "python"}
    settings.update({f"training.{k}": str(v) for k, v in asdict(config).items()})
    settings.update({"holdout": repr(HOLDOUT), "holdout_size": str(HOLDOUT_SIZE),
                     "holdout_tile": str(HOLDOUT_TILE), "min_gain_db": str(MIN_PSNR_GAIN_DB)})
    modules = [model_zoo, espcn, export, stamp, processing_images, sr,
               sys.modules[__name__]]
    return make_stamp(modules=modules, settings=settings)


def holdout_paths(out_dir: Path) -> tuple[Path, ...]:
    """The HR PNGs `build_super_resolution(out_dir)` writes (whole photographs never trained
    on)."""
    return tuple(out_dir / HOLDOUT_DIR / f"{name}.png" for _, name in HOLDOUT)


def state_dict_bytes(model: nn.Module) -> bytes:
    """torch.save of the state_dict to memory (record names do not depend on the file name)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
               buffer)
    return buffer.getvalue()


def build_super_resolution(
    out_dir: Path, *, force: bool = False, config: TrainingConfig | None = None,
) -> SuperResolutionArtifacts:
    """Train, evaluate and write the super-resolution artifacts into `out_dir` (skipped when
    up to date).

    Writes espcn_x2.pt (state_dict of espcn_x2()), holdout.npz (low_res, target),
    holdout/<name>.png (HR), metrics.json and, last, stamp.json. Raises ModelZooError when the
    mean held-out PSNR gain over bicubic is below MIN_PSNR_GAIN_DB.
    """
    config = config or TrainingConfig()
    weights, holdout_npz = out_dir / WEIGHTS_FILE, out_dir / HOLDOUT_FILE
    metrics_path, stamp_path = out_dir / METRICS_FILE, out_dir / STAMP_FILE
    pngs = holdout_paths(out_dir)
    wanted = build_stamp(config)
    if not force and is_up_to_date(stamp_path, wanted, [weights, holdout_npz, metrics_path,
                                                        *pngs]):
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        log.info("super-resolution: artifacts in %s are up to date (stamp %s); skipping",
                 out_dir, wanted.digest[:12])
        return SuperResolutionArtifacts(
            directory=out_dir, weights=weights, holdout=holdout_npz, holdout_images=pngs,
            metrics=metrics_path, stamp=stamp_path, cached=True,
            psnr_model=float(metrics["mean"]["model_psnr"]),
            psnr_bicubic=float(metrics["mean"]["bicubic_psnr"]),
            train_seconds=float(metrics["train_seconds"]))
    stamp_path.unlink(missing_ok=True)  # no stale stamp may vouch for half-written outputs

    pairs = training_pairs()
    holdout = {name: center_crop(load_photo(source, name), HOLDOUT_SIZE)
               for source, name in HOLDOUT}
    log.info("super-resolution: training on %d photographs (%d LR pixels), %d held out",
             len(pairs), sum(int(low.numel()) for low, _ in pairs), len(holdout))
    started, cpu_started = time.monotonic(), time.process_time()
    model = train(pairs, config)
    train_seconds = time.monotonic() - started
    train_cpu_seconds = time.process_time() - cpu_started
    figures = evaluate(model, holdout)
    mean_model = float(np.mean([f["model_psnr"] for f in figures.values()]))
    mean_bicubic = float(np.mean([f["bicubic_psnr"] for f in figures.values()]))
    gain = mean_model - mean_bicubic
    log.info("super-resolution: trained in %.0fs (%.0f CPU seconds); mean PSNR %.2f dB vs "
             "bicubic %.2f dB (%+.2f dB)", train_seconds, train_cpu_seconds, mean_model,
             mean_bicubic, gain)
    if gain < MIN_PSNR_GAIN_DB:
        raise ModelZooError(f"ESPCN x2 beats bicubic by {gain:.2f} dB on the held-out images "
                            f"(model {mean_model:.2f} dB, bicubic {mean_bicubic:.2f} dB), below "
                            f"the bar of {MIN_PSNR_GAIN_DB} dB")

    data = state_dict_bytes(model)
    write_atomic(weights, data)
    write_npz(holdout_npz, holdout_tiles(holdout))
    for path, hr in zip(pngs, holdout.values(), strict=True):
        write_atomic(path, sr.encode_png(hr))
    metrics = {
        "model": "espcn_x2",
        "scale": SCALE,
        "psnr": "dB on Y (PIL YCbCr) with a 2 px border crop, served pipeline vs PIL bicubic",
        "holdout": figures,
        "mean": {"model_psnr": round(mean_model, 4), "bicubic_psnr": round(mean_bicubic, 4),
                 "gain": round(gain, 4)},
        "train_images": [name for _, name in TRAIN],
        "train_seconds": round(train_seconds, 1),  # wall clock: noisy on a shared host
        "train_cpu_seconds": round(train_cpu_seconds, 1),  # all threads together
        "training": asdict(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "versions": tool_versions(),
        "stamp": wanted.digest,
    }
    write_atomic(metrics_path, (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    write_stamp(stamp_path, wanted)
    return SuperResolutionArtifacts(
        directory=out_dir, weights=weights, holdout=holdout_npz, holdout_images=pngs,
        metrics=metrics_path, stamp=stamp_path, cached=False, psnr_model=mean_model,
        psnr_bicubic=mean_bicubic, train_seconds=train_seconds)
