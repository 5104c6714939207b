from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format

from harness.reliability.load_driver import LoadResult, RequestRecord
from harness.reliability.version_swap import (
    error_messages,
    python_stubs_wanted,
    steps_of,
    version_busy,
    with_versions,
)
from tritonkit.repository.config_io import CONFIG_NAME, read_config

REPO_ROOT = Path(__file__).resolve().parents[4]
EXAMPLE = REPO_ROOT / "model_repository"


def _config_json(model: str) -> dict[str, object]:
    """A model config of the example repository in the JSON form the server answers with."""
    return json_format.MessageToDict(read_config(EXAMPLE / model / CONFIG_NAME),
                                     preserving_proto_field_name=True)


def test_steps_of_the_digits_ensemble() -> None:
    assert steps_of(_config_json("digits")) == ["digits_preprocess", "digits_classifier"]
    assert steps_of(_config_json("digits_preprocess")) == []


def test_python_stubs_wanted_counts_instances_of_python_models_only() -> None:
    config = {"backend": "python", "instance_group": [{"count": 2, "kind": "KIND_CPU"},
                                                      {"kind": "KIND_CPU"}]}
    assert python_stubs_wanted(config) == 3
    assert python_stubs_wanted({"backend": "onnxruntime", "instance_group": [{"count": 2}]}) is None
    assert python_stubs_wanted({"platform": "ensemble"}) is None


def test_with_versions_keeps_the_config_and_sets_a_specific_policy() -> None:
    config = _config_json("digits_classifier")
    loaded = json.loads(with_versions(config, [1, 2]))
    assert loaded["version_policy"] == {"specific": {"versions": [1, 2]}}
    assert {k: v for k, v in loaded.items() if k != "version_policy"} == {
        k: v for k, v in config.items() if k != "version_policy"}
    assert config["version_policy"] == {"latest": {"num_versions": 1}}  # not modified


def test_error_messages_groups_failures_and_wrong_answers() -> None:
    dead = "in ensemble 'digits', Stub process 'digits_preprocess_0_1' is not healthy."
    records = (
        RequestRecord(sent_at=0.0, seconds=0.01, status="OK"),
        RequestRecord(sent_at=0.1, seconds=0.01, status="INTERNAL", message=dead),
        RequestRecord(sent_at=0.2, seconds=0.01, status="INTERNAL", message=dead),
        RequestRecord(sent_at=0.3, seconds=0.01, status="OK", wrong_answer=True),
    )
    found = error_messages(LoadResult(records=records, seconds=1.0))
    assert [(m.message, m.count) for m in found] == [
        (f"INTERNAL: {dead}", 2), ("WRONG_ANSWER: ", 1)]


def test_version_busy_until_the_index_says_unloaded() -> None:
    unloading = [{"name": "m", "version": "1", "state": "UNLOADING"},
                 {"name": "m", "version": "2", "state": "READY"}]
    unloaded = [{"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
                {"name": "m", "version": "2", "state": "READY"}]
    assert version_busy(unloading, "m", "1") and version_busy(unloaded, "m", "2")
    assert not version_busy(unloaded, "m", "1")
    assert not version_busy(unloading, "other", "1")
