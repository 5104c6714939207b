"""Swap model versions under load with explicit model control, and load a broken model.

Version swap: version 2 of the model is added to the repository, loaded next to version 1
(config override: specific [1, 2]), smoke-tested directly, then version 1 is unloaded
(specific [2]); the pipeline's `-1` (latest) step switches to version 2 when it loads. All of
it runs while clients drive the pipeline; every failed request is counted, and the most
frequent error messages are kept. Before the swap the pipeline's Python-backend steps are
checked for dead stubs (`dead_stubs`): a stub killed by an earlier scenario and never
reloaded fails a share of the requests ("Stub process '<model>_0_1' is not healthy", gRPC
INTERNAL), which is not the swap's doing; `unhealthy_before` names it.

Broken model: a copy of a step whose function does not exist is loaded; the load must fail
with the reason, and the pipeline must keep serving.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from harness.reliability.errors import ReliabilityError
from harness.reliability.load_driver import LoadDriver, LoadResult, image_request, output_check
from harness.reliability.payloads import valid_png
from harness.reliability.server_processes import stub_pids
from harness.reliability.server_restart import MessageCount, distinct_messages
from tritonkit.repository import CONFIG_NAME, read_config, write_config
from tritonkit.server import LocalTriton

log = logging.getLogger(__name__)


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
    error_messages: tuple[MessageCount, ...] = ()  # the most frequent distinct ones
    # Python-backend steps of the pipeline with fewer live stubs than instances when the swap
    # began (a fault left over from an earlier scenario): their failures are not the swap's.
    unhealthy_before: tuple[str, ...] = ()
    version_1_unloaded: bool = False  # version 1 finished unloading while the load ran
    unload_s: float = 0.0  # from the request that drops version 1 until it was gone


@dataclass(frozen=True, kw_only=True)
class LoadFailureResult:
    model: str
    load_failed: bool
    reason: str
    others_ready: bool
    pipeline_serves: bool


def with_versions(config: Mapping[str, Any], versions: Sequence[int]) -> str:
    """A model config (JSON, as the server answers it) that serves exactly `versions`, as the
    `config` parameter of a load request."""
    return json.dumps({**config, "version_policy": {"specific": {"versions": list(versions)}}})


def _policy_config(client: httpclient.InferenceServerClient, model: str,
                   versions: list[int]) -> str:
    return with_versions(client.get_model_config(model), versions)


def steps_of(config: Mapping[str, Any]) -> list[str]:
    """The models an ensemble config's steps call (empty for a model that is no ensemble)."""
    return [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]


def python_stubs_wanted(config: Mapping[str, Any]) -> int | None:
    """How many stub processes a model config asks for (one per instance); None when the
    model does not run on the Python backend."""
    if config.get("backend") != "python":
        return None
    return sum(int(group.get("count", 1)) for group in config.get("instance_group", []))


def error_messages(result: LoadResult, *, limit: int = 5) -> tuple[MessageCount, ...]:
    """The most frequent distinct failures of a load run, as "STATUS: message"."""
    return distinct_messages(
        (f"{'WRONG_ANSWER' if r.wrong_answer else r.status}: {r.message}"
         for r in result.records if not r.ok), limit=limit)


def dead_stubs(server: LocalTriton, client: httpclient.InferenceServerClient,
               models: Sequence[str]) -> tuple[str, ...]:
    """Python-backend models among `models` with fewer live stubs than instances.

    Triton 2.51 does not restart a dead stub: such an instance fails its share of requests
    ("Stub process '<model>_0_1' is not healthy") until the model is loaded again.
    """
    problems = []
    for model in models:
        wanted = python_stubs_wanted(client.get_model_config(model))
        running = len(stub_pids(server, model))
        if wanted is not None and running < wanted:
            problems.append(f"{model}: {running} of {wanted} Python-backend stubs running")
    return tuple(problems)


_BUSY_STATES = frozenset({"READY", "LOADING", "UNLOADING"})


def version_busy(index: Sequence[Mapping[str, Any]], model: str, version: str) -> bool:
    """Whether the repository index shows `model` `version` loaded, loading or unloading."""
    return any(e.get("name") == model and str(e.get("version")) == version
               and e.get("state") in _BUSY_STATES for e in index)


def _wait_version_gone(client: httpclient.InferenceServerClient, model: str, version: str, *,
                       timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while version_busy(client.get_model_repository_index(), model, version):
        if time.monotonic() > deadline:
            log.warning("%s version %s was still unloading after %.0f s", model, version,
                        timeout_s)
            return False
        time.sleep(0.1)
    return True


def swap_versions_under_load(
    server: LocalTriton, *, model: str = "digits_classifier", pipeline: str = "digits",
    smoke_input: str = "pixels", concurrency: int = 8, unload_timeout_s: float = 60.0,
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
        unhealthy = dead_stubs(server, client,
                               steps_of(client.get_model_config(pipeline)) or [pipeline])
        if unhealthy:
            log.warning("the pipeline is not healthy before the version swap (%s); its failures "
                        "will be counted against the swap", "; ".join(unhealthy))
        try:
            expected = driver.infer(request)
        except grpc.RpcError as e:
            raise ReliabilityError(
                f"{pipeline!r} fails before the version swap: "
                f"{e.details() if isinstance(e, grpc.Call) else e} "
                f"(unhealthy: {'; '.join(unhealthy) or 'no dead stub found'})") from e
        stop = threading.Event()
        results: list[LoadResult] = []
        worker = threading.Thread(target=lambda: results.append(driver.run(
            request, concurrency=concurrency, stop=stop,
            check=output_check(expected, "PROBABILITIES"))), name="swap-load")
        worker.start()
        time.sleep(1.0)
        client.load_model(model, config=_policy_config(client, model, [1, 2]))
        pixels = httpclient.InferInput(smoke_input, [1, 1, 8, 8], "FP32")
        pixels.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32))
        smoke_ok = client.infer(model, [pixels], model_version="2").as_numpy(
            client.get_model_config(model)["output"][0]["name"]) is not None
        time.sleep(1.0)
        client.load_model(model, config=_policy_config(client, model, [2]))
        unloading = time.monotonic()
        # The load call returns while version 1 is still UNLOADING (its in-flight requests
        # finish, its stubs exit: ~2.5 s here); keep the load on until it is gone.
        gone = _wait_version_gone(client, model, "1", timeout_s=unload_timeout_s)
        unload_s = time.monotonic() - unloading
        time.sleep(1.0)
        stop.set()
        worker.join()
        result = results[0]
        served = tuple(str(e.get("version")) for e in client.get_model_repository_index()
                       if e.get("name") == model and e.get("state") == "READY")
    finally:
        driver.close()
        client.close()
    return VersionSwapResult(
        model=model, requests=result.sent, failed_requests=result.errors,
        wrong_answers=result.wrong_answers, smoke_test_ok=smoke_ok,
        served_versions_after=served, seconds=round(time.monotonic() - started, 2),
        error_kinds=result.error_kinds(),
        error_messages=error_messages(result),
        unhealthy_before=unhealthy, version_1_unloaded=gone, unload_s=round(unload_s, 2))


def load_broken_model(server: LocalTriton, *, template: str = "digits_preprocess",
                      pipeline: str = "digits") -> LoadFailureResult:
    """Copy `template` as `broken_step` with a function that does not exist, and load it."""
    name = "broken_step"
    target = server.model_repository / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(server.model_repository / template, target)
    config = read_config(target / CONFIG_NAME)
    config.name = name
    config.parameters["function"].string_value = "tritonkit.processing.steps:no_such_function"
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
