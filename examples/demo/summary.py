"""The demo's closing summary: one line per pipeline per protocol, each OK only when the served
figure equals the in-process one and clears its bar."""

from __future__ import annotations

from examples.demo.detection import DetectionReport
from examples.demo.digits import DigitsReport
from examples.demo.embeddings import EmbeddingReport
from examples.demo.super_resolution import TOLERANCE_DB, SuperResolutionReport
from examples.model_zoo.super_resolution import MIN_PSNR_GAIN_DB

MIN_MAP50 = 0.8
MIN_COSINE = 0.999


def summary_lines(digits: DigitsReport, detection: DetectionReport,
                  embeddings: EmbeddingReport,
                  super_resolution: SuperResolutionReport) -> list[tuple[str, bool]]:
    """(text, ok) per pipeline per protocol."""
    same_digits = {r.protocol: bool((r.top1 == digits.reference_top1).all()) for r in digits.runs}
    lines = []
    for run in digits.runs:
        lines.append((f"classification accuracy {run.protocol:<4} {run.accuracy:.4f} "
                      f"(in-process {digits.reference_accuracy:.4f})", same_digits[run.protocol]))
    for d in detection.runs:
        ok = abs(d.map50 - detection.reference_map50) <= 1e-4 and d.map50 >= MIN_MAP50
        lines.append((f"detection mAP@0.5       {d.protocol:<4} {d.map50:.4f} "
                      f"(in-process {detection.reference_map50:.4f}, bar {MIN_MAP50})", ok))
    for e in embeddings.runs:
        ok = abs(e.min_cosine - embeddings.reference_min_cosine) <= 1e-5 and \
            e.min_cosine >= MIN_COSINE
        lines.append((f"embedding cosine        {e.protocol:<4} {e.min_cosine:.6f} "
                      f"(in-process {embeddings.reference_min_cosine:.6f}, bar {MIN_COSINE})",
                      ok))
    lines.extend(super_resolution_lines(super_resolution))
    return lines


def super_resolution_lines(report: SuperResolutionReport) -> list[tuple[str, bool]]:
    """OK when served >= bicubic + MIN_PSNR_GAIN_DB and |served - in-process| <= 0.01 dB."""
    lines = []
    for s in report.runs:
        gain = s.psnr - report.bicubic_psnr
        ok = abs(s.psnr - report.reference_psnr) <= TOLERANCE_DB and gain >= MIN_PSNR_GAIN_DB
        lines.append((f"super-resolution PSNR   {s.protocol:<4} {s.psnr:.2f} dB "
                      f"(in-process {report.reference_psnr:.2f}, bicubic "
                      f"{report.bicubic_psnr:.2f}, {gain:+.2f} dB, bar +{MIN_PSNR_GAIN_DB})", ok))
    return lines
