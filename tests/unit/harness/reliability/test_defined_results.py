from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.reliability.defined_results import (
    defined_result_cases,
    finite_outputs,
    no_detections,
)
from harness.reliability.targets import load_targets

REPO_ROOT = Path(__file__).resolve().parents[4]


def test_example_repository_gets_text_and_image_edge_cases() -> None:
    cases = defined_result_cases(load_targets(REPO_ROOT / "model_repository"))
    by_model = {(c.model, c.case) for c in cases}
    for model in ("embeddings", "text_tokenize"):
        assert {(model, "text_empty"), (model, "text_very_long")} <= by_model
    for model in ("detection", "detection_preprocess", "digits", "resnet"):
        assert (model, "image_without_objects") in by_model
    detection = next(c for c in cases
                     if c.model == "detection" and c.case == "image_without_objects")
    assert detection.check is no_detections
    long_text = next(c for c in cases if c.model == "embeddings" and c.case == "text_very_long")
    assert long_text.same_as is not None and long_text.same_as != long_text.request


def test_no_detections_counts_and_finite_outputs() -> None:
    none = {"NUM_DETECTIONS": np.array([[0]], np.int32), "BOXES": np.zeros((1, 100, 4))}
    assert no_detections(none) == ""
    assert "2 detections" in no_detections({"NUM_DETECTIONS": np.array([[2]], np.int32)})
    assert "NUM_DETECTIONS" in no_detections({"BOXES": np.zeros((1, 4))})
    assert "NaN" in finite_outputs({"EMBEDDING": np.array([[np.nan, 1.0]], np.float32)})
    assert finite_outputs({"LABELS": np.array([[b"x"]], object)}) == ""
