"""Object detection around a YOLO-format model: letterbox in, decode + NMS out, and mAP@0.5.

The model output follows current YOLO releases: `[N, 4 + C, anchors]`, rows 0-3 the box as
(cx, cy, w, h) in model-input pixels, rows 4.. the per-class scores (already sigmoid; no
objectness row). Everything here is plain numpy and PIL, vectorized across the batch:

- `letterbox_images`: encoded images -> float32 NCHW in [0, 1], resized with the aspect ratio
  kept and padded, plus a [N, 5] LETTERBOX tensor (scale, pad_x, pad_y, width, height) that
  carries the geometry forward so boxes go back to original-image pixels.
- `decode_detections`: confidence threshold, class-aware greedy NMS (batched: one pass over
  candidate ranks serves every image at once), and the inverse letterbox.
- `mean_average_precision`: VOC-style all-point AP per class at one IoU, averaged over classes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tritonkit.processing.images import DEFAULT_MAX_PIXELS, InvalidImageError, decode_image, to_mode
from tritonkit.processing.step_api import StepInputError

log = logging.getLogger(__name__)

LETTERBOX_FIELDS = ("scale", "pad_x", "pad_y", "width", "height")
DEFAULT_PAD_VALUE = 114
DEFAULT_CONF_THRESHOLD = 0.25
DEFAULT_IOU_THRESHOLD = 0.45
DEFAULT_MAX_DETECTIONS = 100
PRE_NMS_TOP_K = 300  # candidates per image that enter NMS (highest scores first)


@dataclass(frozen=True, kw_only=True)
class Letterbox:
    """Where a letterboxed image sits in the model input: x_model = x_orig * scale + pad."""

    scale: float
    pad_x: int
    pad_y: int
    width: int  # original image size
    height: int

    def resized_size(self, *, target_width: int, target_height: int) -> tuple[int, int]:
        """The (width, height) the image is resized to before padding."""
        return (max(1, min(target_width, round(self.width * self.scale))),
                max(1, min(target_height, round(self.height * self.scale))))

    def as_row(self) -> np.ndarray:
        return np.array([self.scale, self.pad_x, self.pad_y, self.width, self.height],
                        dtype=np.float32)


def letterbox_geometry(width: int, height: int, *, target_width: int,
                       target_height: int) -> Letterbox:
    """The scale (aspect kept, fit inside the target) and the centring pads of one image."""
    scale = min(target_width / width, target_height / height)
    box = Letterbox(scale=scale, pad_x=0, pad_y=0, width=width, height=height)
    new_w, new_h = box.resized_size(target_width=target_width, target_height=target_height)
    return Letterbox(scale=scale, pad_x=(target_width - new_w) // 2,
                     pad_y=(target_height - new_h) // 2, width=width, height=height)


def letterbox_images(
    blobs: Sequence[bytes], *, height: int, width: int, pad_value: int = DEFAULT_PAD_VALUE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Encoded images -> (float32 [B, 3, H, W] in [0, 1], float32 [B, 5] LETTERBOX, errors).

    Each image is decoded (PNG/JPEG, with the bomb guards of tritonkit.processing.images),
    converted to
    RGB, resized bilinearly to fit (height, width) with its aspect ratio kept, and pasted
    centred on a `pad_value` canvas. Failed rows are filled with the pad value, their
    LETTERBOX row is (1, 0, 0, width, height), and they are reported as `{row: message}`.
    The float conversion runs once over the stacked uint8 batch.
    """
    if height <= 0 or width <= 0:
        raise StepInputError(f"height and width must be positive, got {height}x{width}")
    if not 0 <= pad_value <= 255:
        raise StepInputError(f"pad_value must be 0..255, got {pad_value}")
    canvas = np.full((len(blobs), height, width, 3), pad_value, dtype=np.uint8)
    geometry = np.tile(np.array([1.0, 0.0, 0.0, width, height], dtype=np.float32),
                       (len(blobs), 1))
    errors: dict[int, str] = {}
    for row, blob in enumerate(blobs):
        try:
            image = to_mode(decode_image(blob, max_pixels=max_pixels), 3)
        except InvalidImageError as e:
            errors[row] = str(e)
            continue
        box = letterbox_geometry(image.width, image.height, target_width=width,
                                 target_height=height)
        new_w, new_h = box.resized_size(target_width=width, target_height=height)
        if (new_w, new_h) != image.size:
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        canvas[row, box.pad_y:box.pad_y + new_h, box.pad_x:box.pad_x + new_w] = \
            np.asarray(image)
        geometry[row] = box.as_row()
    pixels = np.empty((len(blobs), 3, height, width), dtype=np.float32)
    np.multiply(canvas.transpose(0, 3, 1, 2), np.float32(1.0 / 255.0), out=pixels)
    return pixels, geometry, errors


@dataclass(frozen=True, kw_only=True)
class DetectionBatch:
    """Padded per-image detections: rows beyond `counts[i]` are zeros (class -1)."""

    boxes: np.ndarray  # float32 [B, K, 4] x1, y1, x2, y2 in original-image pixels
    scores: np.ndarray  # float32 [B, K]
    classes: np.ndarray  # int32 [B, K], -1 for padding
    counts: np.ndarray  # int32 [B]

    def image(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = int(self.counts[row])
        return self.boxes[row, :n], self.scores[row, :n], self.classes[row, :n]


def _pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """IoU of every pair within each image: boxes [B, N, 4] xyxy -> [B, N, N]."""
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    iw = np.clip(np.minimum(x2[:, :, None], x2[:, None, :])
                 - np.maximum(x1[:, :, None], x1[:, None, :]), 0, None)
    ih = np.clip(np.minimum(y2[:, :, None], y2[:, None, :])
                 - np.maximum(y1[:, :, None], y1[:, None, :]), 0, None)
    inter = iw * ih
    union = area[:, :, None] + area[:, None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                valid: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy class-aware NMS for every image at once; inputs sorted by score, descending.

    boxes [B, N, 4], scores/classes/valid [B, N]. Returns the keep mask [B, N]. The loop runs
    over candidate ranks (at most N), each step vectorized over the batch.
    """
    iou = _pairwise_iou(boxes.astype(np.float64))
    same_class = classes[:, :, None] == classes[:, None, :]
    suppresses = (iou > iou_threshold) & same_class
    keep = valid.copy()
    n = boxes.shape[1]
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    suppresses &= upper[None]
    for rank in range(n):
        active = keep[:, rank]
        if not active.any():
            if not keep[:, rank:].any():
                break
            continue
        keep &= ~(suppresses[:, rank, :] & active[:, None])
    return keep


def decode_detections(
    predictions: np.ndarray, letterbox: np.ndarray, *,
    conf_threshold: float = DEFAULT_CONF_THRESHOLD, iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = DEFAULT_MAX_DETECTIONS, pre_nms_top_k: int = PRE_NMS_TOP_K,
) -> DetectionBatch:
    """YOLO output [B, 4 + C, A] + LETTERBOX [B, 5] -> padded detections in original pixels.

    Per image: best class per anchor, score > conf_threshold, the `pre_nms_top_k` best
    candidates, class-aware NMS at iou_threshold, the `max_detections` best kept; boxes are
    mapped back through the letterbox and clipped to the original image.
    """
    predictions = np.asarray(predictions, dtype=np.float32)
    letterbox = np.asarray(letterbox, dtype=np.float32)
    if predictions.ndim != 3 or predictions.shape[1] < 5:
        raise StepInputError(f"predictions must have shape [batch, 4 + classes, anchors], got "
                             f"{list(predictions.shape)}")
    if letterbox.shape != (predictions.shape[0], len(LETTERBOX_FIELDS)):
        raise StepInputError(f"letterbox must have shape [{predictions.shape[0]}, "
                             f"{len(LETTERBOX_FIELDS)}], got {list(letterbox.shape)}")
    if not 0.0 <= conf_threshold <= 1.0 or not 0.0 <= iou_threshold <= 1.0:
        raise StepInputError(f"conf_threshold and iou_threshold must be in [0, 1], got "
                             f"{conf_threshold} and {iou_threshold}")
    if max_detections < 1:
        raise StepInputError(f"max_detections must be >= 1, got {max_detections}")
    batch, _, anchors = predictions.shape
    class_scores = predictions[:, 4:, :]
    best_class = np.argmax(class_scores, axis=1)  # [B, A]
    best_score = np.take_along_axis(class_scores, best_class[:, None, :], axis=1)[:, 0]
    best_score = np.where(np.isfinite(best_score), best_score, -np.inf)
    k = min(pre_nms_top_k, anchors)
    top = np.argsort(-best_score, axis=1, kind="stable")[:, :k]  # [B, k]
    scores = np.take_along_axis(best_score, top, axis=1)
    classes = np.take_along_axis(best_class, top, axis=1)
    cxcywh = np.take_along_axis(predictions[:, :4, :], top[:, None, :], axis=2)  # [B, 4, k]
    cx, cy, w, h = cxcywh[:, 0], cxcywh[:, 1], cxcywh[:, 2], cxcywh[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    valid = (scores > conf_threshold) & np.isfinite(boxes).all(axis=-1)
    keep = batched_nms(boxes, scores, classes, valid, iou_threshold)

    # Kept candidates are already in score order: their rank among kept ones is the slot.
    slot = np.cumsum(keep, axis=1) - 1
    keep &= slot < max_detections
    counts = keep.sum(axis=1).astype(np.int32)
    out_boxes = np.zeros((batch, max_detections, 4), dtype=np.float32)
    out_scores = np.zeros((batch, max_detections), dtype=np.float32)
    out_classes = np.full((batch, max_detections), -1, dtype=np.int32)
    rows, cols = np.nonzero(keep)
    slots = slot[rows, cols]
    scale = letterbox[:, 0:1]
    pad = letterbox[:, 1:3]
    size = letterbox[:, 3:5]
    original = (boxes - np.concatenate([pad, pad], axis=1)[:, None, :]) / np.where(
        scale > 0, scale, 1.0)[:, :, None]
    limit = np.concatenate([size, size], axis=1)[:, None, :]
    original = np.clip(original, 0.0, limit)
    out_boxes[rows, slots] = original[rows, cols]
    out_scores[rows, slots] = scores[rows, cols]
    out_classes[rows, slots] = classes[rows, cols]
    return DetectionBatch(boxes=out_boxes, scores=out_scores, classes=out_classes,
                          counts=counts)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` [N, 4] with every box in `b` [M, 4] (xyxy) -> [N, M]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass(frozen=True, kw_only=True)
class ImageDetections:
    """Detections (or ground truth, scores ignored) of one image."""

    boxes: np.ndarray  # [N, 4] xyxy
    classes: np.ndarray  # [N] int
    scores: np.ndarray  # [N]; ones for ground truth


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (area under the monotone precision envelope)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def mean_average_precision(
    predictions: Sequence[ImageDetections], ground_truth: Sequence[ImageDetections], *,
    iou_threshold: float = 0.5,
) -> float:
    """mAP@iou_threshold: mean over the classes present in the ground truth of VOC AP.

    A prediction is a true positive when it overlaps a not-yet-matched ground-truth box of
    its class by >= iou_threshold (greedy, highest score first). Images without ground truth
    still count their predictions as false positives. With no ground truth at all: 1.0 when
    nothing was predicted either, else 0.0.
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} prediction sets for {len(ground_truth)} images")
    gt_classes = sorted({int(c) for g in ground_truth for c in np.asarray(g.classes)})
    if not gt_classes:
        return 1.0 if all(len(p.classes) == 0 for p in predictions) else 0.0
    aps = []
    for cls in gt_classes:
        total_gt = 0
        records: list[tuple[float, bool]] = []
        for pred, gt in zip(predictions, ground_truth, strict=True):
            g_boxes = np.asarray(gt.boxes).reshape(-1, 4)[np.asarray(gt.classes) == cls]
            total_gt += len(g_boxes)
            mask = np.asarray(pred.classes) == cls
            p_boxes = np.asarray(pred.boxes).reshape(-1, 4)[mask]
            p_scores = np.asarray(pred.scores)[mask]
            if not len(p_boxes):
                continue
            order = np.argsort(-p_scores, kind="stable")
            ious = box_iou(p_boxes[order], g_boxes)
            matched = np.zeros(len(g_boxes), dtype=bool)
            for i, row in enumerate(order):
                hit = False
                if len(g_boxes):
                    candidates = np.where(matched, -1.0, ious[i])
                    j = int(np.argmax(candidates))
                    if candidates[j] >= iou_threshold:
                        matched[j] = True
                        hit = True
                records.append((float(p_scores[row]), hit))
        if not records:
            aps.append(0.0)
            continue
        records.sort(key=lambda r: -r[0])
        hits = np.array([h for _, h in records], dtype=np.float64)
        tp = np.cumsum(hits)
        fp = np.cumsum(1.0 - hits)
        aps.append(_average_precision(tp / max(total_gt, 1), tp / np.maximum(tp + fp, 1e-12)))
    return float(np.mean(aps))


def detections_from_batch(batch: DetectionBatch) -> list[ImageDetections]:
    """The per-image, unpadded form of a DetectionBatch."""
    out = []
    for row in range(len(batch.counts)):
        boxes, scores, classes = batch.image(row)
        out.append(ImageDetections(boxes=boxes, classes=classes, scores=scores))
    return out
