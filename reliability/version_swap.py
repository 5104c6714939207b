"""Swap model versions under load with explicit model control, and load a broken model.

Version swap: version 2 of the model is added to the repository, loaded next to version 1
(config override: specific [1, 2]), smoke-tested directly, then version 1 is unloaded
(specific [2]); the pipeline's `-1` (latest) step switches to version 2 when it loads. All of
it runs while clients drive the pipeline; every failed request is counted.

Broken model: a copy of a step whose function does not exist is loaded; the load must fail
with the reason, and the pipeline must keep serving.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass

import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from build_scripts.config_io import CONFIG_NAME, read_config, write_config
from build_scripts.local_server.local_triton import LocalTriton
from reliability.errors import ReliabilityError
from reliability.load_driver import LoadDriver, LoadResult, image_request, output_check
from reliability.payloads import valid_png


@dataclass(frozen=True, kw_only=True)
class VersionSwapResult:
    model: str
    requests: int
    failed_requests: int
    wrong_answers: int
    smoke_test_ok: bool
    served_versions_after: tuple[str, ...]
    seconds: float
    error_kinds: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class LoadFailureResult:
    model: str
    load_failed: bool
    reason: str
    others_ready: bool
    pipeline_serves: bool


def _policy_config(client: httpclient.InferenceServerClient, model: str,
                   versions: list[int]) -> str:
    config = client.get_model_config(model)
    config["version_policy"] = {"specific": {"versions": versions}}
    return json.dumps(config)


def swap_versions_under_load(
    server: LocalTriton, *, model: str = "digits_classifier", pipeline: str = "digits",
    smoke_input: str = "pixels", concurrency: int = 8,
) -> VersionSwapResult:
    """Needs a server started with model_control='explicit' and the pipeline loaded."""
    model_dir = server.model_repository / model
    if not (model_dir / "1").is_dir():
        raise ReliabilityError(f"{model_dir}/1 is missing")
    if not (model_dir / "2").exists():
        shutil.copytree(model_dir / "1", model_dir / "2")
    client = httpclient.InferenceServerClient(server.urls.http_hostport, network_timeout=300)
    driver = LoadDriver(server.urls.grpc, timeout_s=60.0)
    request = image_request(pipeline, "IMAGE", valid_png())
    started = time.monotonic()
    try:
        expected = driver.infer(request)
        stop = threading.Event()
        results: list[LoadResult] = []
        worker = threading.Thread(target=lambda: results.append(driver.run(
            request, concurrency=concurrency, stop=stop,
            check=output_check(expected, "CLASS_INDICES"))), name="swap-load")
        worker.start()
        time.sleep(1.0)
        client.load_model(model, config=_policy_config(client, model, [1, 2]))
        pixels = httpclient.InferInput(smoke_input, [1, 1, 8, 8], "FP32")
        import numpy as np  # noqa: PLC0415

        pixels.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32))
        smoke_ok = client.infer(model, [pixels], model_version="2").as_numpy(
            client.get_model_config(model)["output"][0]["name"]) is not None
        time.sleep(1.0)
        client.load_model(model, config=_policy_config(client, model, [2]))
        time.sleep(1.0)
        stop.set()
        worker.join()
        result = results[0]
        index = client.get_model_repository_index()
        served = tuple(str(e.get("version")) for e in index
                       if e.get("name") == model and e.get("state") == "READY")
    finally:
        driver.close()
        client.close()
    return VersionSwapResult(
        model=model, requests=result.sent, failed_requests=result.errors,
        wrong_answers=result.wrong_answers, smoke_test_ok=smoke_ok,
        served_versions_after=served, seconds=round(time.monotonic() - started, 2),
        error_kinds=result.error_kinds())


def load_broken_model(server: LocalTriton, *, template: str = "digits_postprocess",
                      pipeline: str = "digits") -> LoadFailureResult:
    """Copy `template` as `broken_step` with a function that does not exist, and load it."""
    name = "broken_step"
    target = server.model_repository / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(server.model_repository / template, target)
    config = read_config(target / CONFIG_NAME)
    config.name = name
    config.parameters["function"].string_value = "processing.steps:no_such_function"
    write_config(config, target / CONFIG_NAME)
    client = httpclient.InferenceServerClient(server.urls.http_hostport, network_timeout=120)
    reason = ""
    failed = False
    try:
        try:
            client.load_model(name)
        except InferenceServerException as e:
            failed, reason = True, str(e.message() or e)
        others = all(client.is_model_ready(m) for m in (pipeline, template))
        driver = LoadDriver(server.urls.grpc)
        try:
            driver.infer(image_request(pipeline, "IMAGE", valid_png()))
            serves = True
        except Exception:
            serves = False
        finally:
            driver.close()
    finally:
        client.close()
        shutil.rmtree(target, ignore_errors=True)
    return LoadFailureResult(model=name, load_failed=failed, reason=reason[:300],
                             others_ready=others, pipeline_serves=serves)
