"""The digits example: scikit-learn's 8x8 digits as PNGs, a small CNN, exported to ONNX.

Training inputs come from the serving preprocessing itself
(`tritonkit.processing.images.preprocess_images` over the encoded PNGs), so the model sees exactly
what the `digits_preprocess` step produces. Everything is seeded and deterministic: a forced
rebuild writes the same bytes, and a matching stamp skips the rebuild altogether.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
import sklearn
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
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

SEED = 1234
TEST_FRACTION = 0.3
CLASSES = 10
# Must equal the `digits_preprocess` parameters in models.yaml (a unit test checks).
HEIGHT = 8
WIDTH = 8
CHANNELS = 1
MEAN = 0.0
STD = 1.0
MIN_TEST_ACCURACY = 0.97
CALIBRATION_SAMPLES = 300

ONNX_FILE = "digits_cnn.onnx"
LABELS_FILE = "labels.txt"
CALIBRATION_FILE = "calibration.npz"
HOLDOUT_FILE = "holdout.npz"
METRICS_FILE = "metrics.json"
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"

Split = Literal["train", "test"]


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = SEED


@dataclass(frozen=True, kw_only=True)
class DigitsArtifacts:
    """Where the build wrote its files, the holdout accuracy, and whether it was cached."""

    directory: Path
    onnx: Path
    labels: Path
    calibration: Path
    holdout: Path
    metrics: Path
    stamp: Path
    test_accuracy: float
    cached: bool


def artifact_paths(out_dir: Path) -> dict[str, Path]:
    return {
        "onnx": out_dir / ONNX_FILE,
        "labels": out_dir / LABELS_FILE,
        "calibration": out_dir / CALIBRATION_FILE,
        "holdout": out_dir / HOLDOUT_FILE,
        "metrics": out_dir / METRICS_FILE,
    }


# --- data ---------------------------------------------------------------------------------


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 grayscale image as PNG bytes (no metadata: same pixels, same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@lru_cache(maxsize=1)
def _encoded_dataset() -> tuple[tuple[bytes, ...], np.ndarray]:
    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    labels.setflags(write=False)
    return tuple(encode_png(image) for image in pixels), labels


@lru_cache(maxsize=1)
def _split_indices() -> dict[str, np.ndarray]:
    _, labels = _encoded_dataset()
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=SEED)
    return {"train": np.sort(train), "test": np.sort(test)}


def encoded_split(name: Split) -> tuple[list[bytes], np.ndarray]:
    """PNG-encoded images and their labels (int64) of the fixed, stratified train/test split."""
    if name not in ("train", "test"):
        raise ModelZooError(f"split must be 'train' or 'test', got {name!r}")
    blobs, labels = _encoded_dataset()
    indices = _split_indices()[name]
    return [blobs[i] for i in indices], labels[indices].copy()


def preprocess(blobs: Sequence[bytes]) -> np.ndarray:
    """The serving preprocessing with the digits parameters; float32 [B, 1, 8, 8]."""
    return export.serving_pixels(blobs, height=HEIGHT, width=WIDTH, channels=CHANNELS,
                                 mean=MEAN, std=STD, what="digits")


# --- model --------------------------------------------------------------------------------


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool and two linear layers: [B,1,8,8] -> [B,10]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(CHANNELS, 16, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2),
            nn.Linear(32 * (HEIGHT // 2) * (WIDTH // 2), 64), nn.ReLU(),
            nn.Linear(64, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train(pixels: np.ndarray, labels: np.ndarray, config: TrainingConfig) -> DigitsCNN:
    """Train deterministically (seeded, deterministic algorithms, one thread)."""
    with deterministic_torch(config.seed) as generator:
        model = DigitsCNN()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                      weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        x = torch.from_numpy(pixels)
        y = torch.from_numpy(labels.astype(np.int64))
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for epoch in range(config.epochs):
            order = torch.randperm(len(x), generator=generator)
            total = 0.0
            for start in range(0, len(x), config.batch_size):
                batch = order[start:start + config.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            scheduler.step()
            log.debug("epoch %d/%d: loss %.4f", epoch + 1, config.epochs, total / len(x))
        model.eval()
    return model


def onnx_accuracy(path: Path, blobs: Sequence[bytes], labels: np.ndarray) -> float:
    """Top-1 accuracy of the ONNX model on encoded images, through the serving preprocessing."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities = session.run([OUTPUT_NAME], {INPUT_NAME: preprocess(blobs)})[0]
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


# --- build --------------------------------------------------------------------------------


def tool_versions() -> dict[str, str]:
    return export.tool_versions(**{"scikit-learn": sklearn.__version__})


def build_stamp(config: TrainingConfig) -> stamp.Stamp:
    """Everything the artifacts depend on: these sources, tool versions, seed, settings."""
    settings = {f"version.{k}": v for k, v in tool_versions().items() if k != "python"}
    settings.update({f"training.{k}": str(v) for k, v in asdict(config).items()})
    settings.update({"opset": str(export.OPSET), "test_fraction": str(TEST_FRACTION),
                     "calibration_samples": str(CALIBRATION_SAMPLES)})
    modules = [model_zoo, export, stamp, processing_images, sys.modules[__name__]]
    return make_stamp(modules=modules, settings=settings)


def build_digits(
    out_dir: Path, *, force: bool = False, config: TrainingConfig | None = None,
) -> DigitsArtifacts:
    """Train, export and write the digits artifacts into `out_dir` (skipped when up to date).

    Writes digits_cnn.onnx, labels.txt, calibration.npz / holdout.npz (key "pixels"),
    metrics.json and, last, stamp.json. Raises ModelZooError below the accuracy bar.
    """
    config = config or TrainingConfig()
    paths = artifact_paths(out_dir)
    stamp_path = out_dir / STAMP_FILE
    wanted = build_stamp(config)
    if not force and is_up_to_date(stamp_path, wanted, list(paths.values())):
        metrics = json.loads(paths["metrics"].read_text(encoding="utf-8"))
        log.info("digits: artifacts in %s are up to date (stamp %s); skipping",
                 out_dir, wanted.digest[:12])
        return DigitsArtifacts(directory=out_dir, stamp=stamp_path, cached=True,
                               test_accuracy=float(metrics["test_accuracy"]), **paths)
    stamp_path.unlink(missing_ok=True)  # no stale stamp may vouch for half-written outputs

    train_blobs, train_labels = encoded_split("train")
    test_blobs, test_labels = encoded_split("test")
    train_pixels = preprocess(train_blobs)
    test_pixels = preprocess(test_blobs)
    log.info("digits: training on %d images, testing on %d", len(train_blobs), len(test_blobs))
    model = train(train_pixels, train_labels, config)

    onnx_bytes = export_onnx(with_probabilities(model), torch.from_numpy(train_pixels[:2]),
                             paths["onnx"],
                             input_name=INPUT_NAME, output_name=OUTPUT_NAME)
    verify_dynamic_batch(paths["onnx"], test_pixels[:64])
    test_accuracy = onnx_accuracy(paths["onnx"], test_blobs, test_labels)
    train_accuracy = onnx_accuracy(paths["onnx"], train_blobs, train_labels)
    log.info("digits: ONNX accuracy test %.4f, train %.4f", test_accuracy, train_accuracy)
    if test_accuracy < MIN_TEST_ACCURACY:
        raise ModelZooError(f"digits CNN reached {test_accuracy:.4f} test accuracy, below "
                            f"the bar of {MIN_TEST_ACCURACY}")

    rng = np.random.default_rng(config.seed)
    calibration_rows = np.sort(rng.permutation(len(train_pixels))[:CALIBRATION_SAMPLES])
    write_atomic(paths["labels"], "".join(f"{c}\n" for c in range(CLASSES)).encode())
    write_npz(paths["calibration"], {"pixels": train_pixels[calibration_rows]})
    write_npz(paths["holdout"], {"pixels": test_pixels})
    metrics = {
        "model": "digits_cnn",
        "test_accuracy": test_accuracy,
        "train_accuracy": train_accuracy,
        "test_images": len(test_blobs),
        "train_images": len(train_blobs),
        "seed": config.seed,
        "training": asdict(config),
        "preprocessing": {"height": HEIGHT, "width": WIDTH, "channels": CHANNELS,
                          "mean": MEAN, "std": STD},
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "opset": export.OPSET,
        "versions": tool_versions(),
        "stamp": wanted.digest,
    }
    write_atomic(paths["metrics"], (json.dumps(metrics, indent=2, sort_keys=True) + "\n")
                 .encode())
    write_stamp(stamp_path, wanted)
    return DigitsArtifacts(directory=out_dir, stamp=stamp_path, cached=False,
                           test_accuracy=test_accuracy, **paths)
