"""The result dataclasses: model states and the health report."""

from __future__ import annotations

from tritonkit_client.results import HealthReport, ModelReadiness, ModelState, ModelStatus


def test_model_state_parse() -> None:
    assert ModelState.parse("ready") is ModelState.READY
    assert ModelState.parse("") is ModelState.NOT_LOADED
    assert ModelState.parse(None) is ModelState.NOT_LOADED
    assert ModelState.parse("SOMETHING_NEW") is ModelState.UNKNOWN
    assert ModelStatus(name="m", version="1", state=ModelState.READY).ready
    assert not ModelStatus(name="m", version="", state=ModelState.LOADING).ready


def test_health_report() -> None:
    report = HealthReport(
        url="http://h:1",
        live=True,
        ready=True,
        models=(ModelReadiness(name="a", ready=True), ModelReadiness(name="b", ready=False)),
    )
    assert not report.ok
    assert report.models_not_ready == ("b",)
    assert HealthReport(url="u", live=True, ready=True).ok
    assert not HealthReport(url="u", live=True, ready=False).ok
