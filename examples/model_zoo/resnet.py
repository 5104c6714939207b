"""The heavy example: a ResNet-18-style CNN on 224x224 RGB with random weights, exported to ONNX.

No training and no downloads: convolution and linear weights are drawn from a seeded
`torch.Generator` (Kaiming init); the BatchNorm statistics and the classifier bias are
estimated from synthetic images, so activations stay well-scaled and the predicted class
varies from image to image. The exporter folds every BatchNorm into its convolution.
Inputs are synthetic JPEGs (smooth colour fields plus shapes, drawn from a seed) put
through the serving preprocessing (`tritonkit.processing.images.preprocess_images` with the
`resnet_preprocess` parameters). Everything is deterministic: a forced rebuild writes the
same bytes, and a matching stamp skips the rebuild altogether.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image, ImageDraw
from torch import nn

from examples import model_zoo
from examples.model_zoo import ModelZooError, export, stamp
from examples.model_zoo.export import (
    deterministic_torch,
    export_onnx,
    verify_dynamic_batch,
    with_probabilities,
    write_npz,
)
from examples.model_zoo.stamp import (
    STAMP_FILE,
    is_up_to_date,
    make_stamp,
    write_atomic,
    write_stamp,
)
from tritonkit.processing import images as processing_images

log = logging.getLogger(__name__)

SEED = 20240
CLASSES = 1000
# Must equal the `resnet_preprocess` parameters in models.yaml (a unit test checks).
HEIGHT = 224
WIDTH = 224
CHANNELS = 3
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

IMAGE_SIZE = 256  # synthetic JPEGs are larger than the model input, so the resize runs
JPEG_QUALITY = 90
HOLDOUT_SEED = 1  # benchmarks use seed 0 (the default of `synthetic_images`)
HOLDOUT_ROWS = 32
STATS_SEED = 2
STATS_ROWS = 32
DYNAMIC_BATCH_SIZES = (1, 3, 8)
LOGIT_STD = 2.0
MAX_EXPORT_ABS_DIFF = 1e-3  # torch vs ONNX Runtime on the holdout probabilities

STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = (2, 2, 2, 2)

ONNX_FILE = "resnet18.onnx"
LABELS_FILE = "labels.txt"
HOLDOUT_FILE = "holdout.npz"
METRICS_FILE = "metrics.json"
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"


@dataclass(frozen=True, kw_only=True)
class ResNetArtifacts:
    """Where the build wrote its files, and whether it was cached."""

    directory: Path
    onnx: Path
    labels: Path
    holdout: Path
    metrics: Path
    stamp: Path
    parameters: int
    cached: bool


def artifact_paths(out_dir: Path) -> dict[str, Path]:
    return {
        "onnx": out_dir / ONNX_FILE,
        "labels": out_dir / LABELS_FILE,
        "holdout": out_dir / HOLDOUT_FILE,
        "metrics": out_dir / METRICS_FILE,
    }


def class_labels() -> list[str]:
    """The 1000 class names: class_000 .. class_999."""
    return [f"class_{i:03d}" for i in range(CLASSES)]


# --- data ---------------------------------------------------------------------------------


def _synthetic_image(rng: np.random.Generator, size: int) -> bytes:
    """A smooth random colour field with a few filled shapes and mild noise, as JPEG bytes."""
    grid = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(grid, mode="RGB").resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = (int(v) for v in rng.integers(-size // 4, size, size=2))
        w, h = (int(v) for v in rng.integers(size // 8, size // 2, size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = (x0, y0, x0 + w, y0 + h)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    noise = rng.normal(0.0, 6.0, size=(size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def synthetic_images(count: int, *, seed: int = 0, size: int = IMAGE_SIZE) -> list[bytes]:
    """`count` deterministic RGB JPEGs of `size` x `size` (quality 90).

    Image i depends only on (seed, i, size): a longer list starts with the shorter one.
    """
    if count < 0:
        raise ModelZooError(f"count must be >= 0, got {count}")
    if size < 8:
        raise ModelZooError(f"size must be >= 8 pixels, got {size}")
    return [_synthetic_image(np.random.default_rng((seed, index)), size)
            for index in range(count)]


def preprocess(blobs: Sequence[bytes]) -> np.ndarray:
    """The serving preprocessing with the resnet parameters; float32 [B, 3, 224, 224]."""
    return export.serving_pixels(blobs, height=HEIGHT, width=WIDTH, channels=CHANNELS,
                                 mean=MEAN, std=STD, what="synthetic")


# --- model --------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (1x1 conv-BN when the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 layout: 7x7 stem, 4 stages of 2 basic blocks, global pool, linear.

    [B, 3, 224, 224] -> [B, 1000]; about 11.7 M parameters and 1.8 GMAC per image.
    """

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(CHANNELS, STAGE_WIDTHS[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(STAGE_WIDTHS[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        in_channels = STAGE_WIDTHS[0]
        for index, (width, blocks) in enumerate(zip(STAGE_WIDTHS, BLOCKS_PER_STAGE,
                                                    strict=True)):
            stride = 1 if index == 0 else 2
            layers = [BasicBlock(in_channels, width, stride)]
            layers += [BasicBlock(width, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(features, 1))


def init_weights(model: ResNet18, generator: torch.Generator) -> None:
    """Kaiming-normal convolutions, unit BatchNorm, a 1/sqrt(fan_in) normal classifier."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu",
                                        generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, module.in_features ** -0.5,
                                generator=generator)
                nn.init.zeros_(module.bias)


def estimate_statistics(model: ResNet18, pixels: np.ndarray) -> None:
    """Fit the data-dependent constants of a random network to `pixels` (one pass each).

    Every BatchNorm's running mean/var becomes the statistics of `pixels`; the classifier
    bias cancels the mean logit, so the argmax follows what differs between images rather
    than one class shared by all (pooled ReLU features are all positive), and the classifier
    is scaled to logits of standard deviation LOGIT_STD, so softmax scores are not all ~1/1000.
    """
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in batch_norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one pass, exactly the batch statistics
    x = torch.from_numpy(pixels)
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        centered = logits - logits.mean(dim=0)
        scale = LOGIT_STD / float(centered.std())
        model.fc.bias.copy_((model.fc.bias - logits.mean(dim=0)) * scale)
        model.fc.weight.mul_(scale)


def make_model(*, seed: int = SEED, stats_pixels: np.ndarray | None = None) -> ResNet18:
    """The seeded ResNet-18 in eval mode (statistics estimated from `stats_pixels` if given)."""
    with deterministic_torch(seed) as generator:
        model = ResNet18()
        init_weights(model, generator)
        if stats_pixels is not None:
            estimate_statistics(model, stats_pixels)
        model.eval()
    return model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- build --------------------------------------------------------------------------------


def tool_versions() -> dict[str, str]:
    return export.tool_versions()


def build_stamp(*, seed: int = SEED) -> stamp.Stamp:
    """Everything the artifacts depend on: these sources, tool versions, seeds, settings."""
    settings = {f"version.{k}": v for k, v in tool_versions().items() if k != "python"}
    settings.update({
        "seed": str(seed), "opset": str(export.OPSET), "holdout_seed": str(HOLDOUT_SEED),
        "holdout_rows": str(HOLDOUT_ROWS), "stats_seed": str(STATS_SEED),
        "stats_rows": str(STATS_ROWS), "logit_std": str(LOGIT_STD), "image_size": str(IMAGE_SIZE),
        "jpeg_quality": str(JPEG_QUALITY),
    })
    modules = [model_zoo, export, stamp, processing_images, sys.modules[__name__]]
    return make_stamp(modules=modules, settings=settings)


def _check_export(model: torch.nn.Module, path: Path, pixels: np.ndarray) -> tuple[float, float]:
    """Largest |torch - ONNX Runtime| over the outputs of `pixels`, and their top-1 agreement."""
    with deterministic_torch(SEED), torch.no_grad():  # one thread: the same bits every run
        expected = model(torch.from_numpy(pixels)).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: pixels})[0]
    max_abs_diff = float(np.max(np.abs(got - expected)))
    agreement = float(np.mean(np.argmax(got, axis=1) == np.argmax(expected, axis=1)))
    if max_abs_diff > MAX_EXPORT_ABS_DIFF:
        raise ModelZooError(f"{path}: ONNX Runtime outputs differ from torch by {max_abs_diff:.2e} "
                            f"(allowed {MAX_EXPORT_ABS_DIFF:.0e}); the export is wrong")
    return max_abs_diff, agreement


def build_resnet(out_dir: Path, *, force: bool = False, seed: int = SEED) -> ResNetArtifacts:
    """Initialize, export and write the resnet artifacts into `out_dir` (skipped when up to date).

    Writes resnet18.onnx, labels.txt, holdout.npz (key "pixels", also the warmup samples),
    metrics.json and, last, stamp.json. Raises ModelZooError when the export is wrong.
    """
    paths = artifact_paths(out_dir)
    stamp_path = out_dir / STAMP_FILE
    wanted = build_stamp(seed=seed)
    if not force and is_up_to_date(stamp_path, wanted, list(paths.values())):
        metrics = json.loads(paths["metrics"].read_text(encoding="utf-8"))
        log.info("resnet: artifacts in %s are up to date (stamp %s); skipping",
                 out_dir, wanted.digest[:12])
        return ResNetArtifacts(directory=out_dir, stamp=stamp_path, cached=True,
                               parameters=int(metrics["parameters"]), **paths)
    stamp_path.unlink(missing_ok=True)  # no stale stamp may vouch for half-written outputs

    stats_pixels = preprocess(synthetic_images(STATS_ROWS, seed=STATS_SEED))
    holdout = preprocess(synthetic_images(HOLDOUT_ROWS, seed=HOLDOUT_SEED))
    log.info("resnet: initializing from seed %d, statistics from %d images",
             seed, len(stats_pixels))
    model = make_model(seed=seed, stats_pixels=stats_pixels)
    parameters = parameter_count(model)

    classifier = with_probabilities(model)
    onnx_bytes = export_onnx(classifier, torch.from_numpy(holdout[:2]), paths["onnx"],
                             input_name=INPUT_NAME, output_name=OUTPUT_NAME)
    verify_dynamic_batch(paths["onnx"], holdout[:max(DYNAMIC_BATCH_SIZES)],
                         batch_sizes=DYNAMIC_BATCH_SIZES)
    max_abs_diff, agreement = _check_export(classifier, paths["onnx"], holdout[:8])
    log.info("resnet: torch vs ONNX Runtime max |diff| %.2e, top-1 agreement %.3f",
             max_abs_diff, agreement)

    write_atomic(paths["labels"], "".join(f"{name}\n" for name in class_labels()).encode())
    write_npz(paths["holdout"], {INPUT_NAME: holdout})
    metrics = {
        "model": "resnet18",
        "parameters": parameters,
        "seed": seed,
        "classes": CLASSES,
        "holdout_rows": HOLDOUT_ROWS,
        "export_max_abs_diff": max_abs_diff,
        "export_top1_agreement": agreement,
        "preprocessing": {"height": HEIGHT, "width": WIDTH, "channels": CHANNELS,
                          "mean": list(MEAN), "std": list(STD)},
        "synthetic_images": {"size": IMAGE_SIZE, "jpeg_quality": JPEG_QUALITY,
                             "holdout_seed": HOLDOUT_SEED, "stats_seed": STATS_SEED,
                             "stats_rows": STATS_ROWS},
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "opset": export.OPSET,
        "versions": tool_versions(),
        "stamp": wanted.digest,
    }
    write_atomic(paths["metrics"], (json.dumps(metrics, indent=2, sort_keys=True) + "\n")
                 .encode())
    write_stamp(stamp_path, wanted)
    return ResNetArtifacts(directory=out_dir, stamp=stamp_path, cached=False,
                           parameters=parameters, **paths)
