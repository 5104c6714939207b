"""tritonkit.runtime.python_step: request parameters that override step parameters per request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.unit.runtime import pb_utils_standin as standin
from tritonkit.runtime import python_step


@dataclass
class ParamRequest(standin.InferenceRequest):
    params: str = "{}"

    def parameters(self) -> str:
        return self.params


def with_params(params: dict[str, object], **arrays: np.ndarray) -> ParamRequest:
    return ParamRequest([standin.Tensor(n, np.asarray(a)) for n, a in arrays.items()],
                        json.dumps(params))


@pytest.fixture
def pb(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = standin.load()
    monkeypatch.setattr(python_step, "pb_utils", module)
    return module


def test_overrides_keep_only_allowed_names() -> None:
    allowed = python_step.allowed_request_parameters({"request_parameters": " a, b ,"})
    assert allowed == frozenset({"a", "b"})
    request = with_params({"a": 0.5, "c": 1, "b": True})
    assert python_step.request_overrides(request, allowed) == (("a", "0.5"), ("b", "true"))
    assert python_step.request_overrides(with_params({}), allowed) == ()
    assert python_step.request_overrides(standin.request(), allowed) == ()  # no parameters()


def test_detection_thresholds_follow_each_request(pb: ModuleType, tmp_path: Path) -> None:
    config = {"name": "post", "backend": "python", "max_batch_size": 8,
              "input": [{"name": "PREDICTIONS", "data_type": "TYPE_FP32", "dims": [-1, -1]},
                        {"name": "LETTERBOX", "data_type": "TYPE_FP32", "dims": [5]}],
              "output": [{"name": "NUM_DETECTIONS", "data_type": "TYPE_INT32", "dims": [1]}],
              "parameters": {k: {"string_value": v} for k, v in {
                  "function": "tritonkit.processing.steps:detect_postprocess",
                  "max_detections": "4",
                  "conf_threshold": "0.25",
                  "request_parameters": "conf_threshold,iou_threshold"}.items()}}
    model = python_step.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path),
                      "model_version": "1", "model_name": "post"})
    raw = np.zeros((1, 5, 4), dtype=np.float32)
    raw[0, :4, 0] = (10, 10, 4, 4)
    raw[0, 4, 0] = 0.5
    geometry = np.array([[1, 0, 0, 32, 32]], dtype=np.float32)
    requests = [with_params({}, PREDICTIONS=raw, LETTERBOX=geometry),
                with_params({"conf_threshold": 0.9}, PREDICTIONS=raw, LETTERBOX=geometry),
                with_params({"conf_threshold": 0.1, "max_detections": 1},
                            PREDICTIONS=raw, LETTERBOX=geometry)]
    responses = model.execute(requests)
    assert [r.as_dict()["NUM_DETECTIONS"].tolist() for r in responses] == [[[1]], [[0]], [[1]]]
